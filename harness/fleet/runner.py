"""Jobs -> transport -> agent -> cells: measure model variants on devices.

Devices run in parallel, one measuring process per device for all its cells;
each cell is handed to ``on_cell`` (the store) as soon as it arrives. Any
failure becomes cells with a status: an unreachable device, a dead connection
(bounded reconnects, then the rest goes on), a hung agent (killed at the
timeout), garbage output. Ctrl-C is not a failure: every device thread stops
at its next wait, kills its agent and releases its labgrid place; the cells
settled before it stay stored, the others stay missing (run --resume).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..common.errors import EdgebenchError
from ..config.inventory import Device
from ..config.settings import MeasureSettings, RunPolicy
from ..results.record import DeviceRecord, Status, build_cell
from .jobs import ModelVariant
from .ledger import CellCallback, Ledger
from .lab import hold_place
from .measurers import Measurer, measurer_for
from .transport import Transport, TransportError, interrupted, make_transport, stop_if_interrupted

RECONNECT_BACKOFF_S = (1.0, 2.0, 4.0)

DeviceCallback = Callable[[DeviceRecord], None]
TransportFactory = Callable[[Device, RunPolicy], Transport]


def _default_transport(device: Device, policy: RunPolicy) -> Transport:
    return make_transport(device, trust_new_hosts=policy.trust_new_hosts)


def measure_device(device: Device, variants: list[ModelVariant], settings: MeasureSettings, policy: RunPolicy,
                   on_cell: CellCallback, on_device: DeviceCallback,
                   transport_factory: TransportFactory = _default_transport) -> None:
    """Measure every variant on one device; every variant ends as exactly one on_cell call."""
    record: DeviceRecord = {**device.describe(), "status": Status.OK, "error": None, "env": None,  # type: ignore[typeddict-item]
                            "agent_version": None, "bytes_shipped": 0, "files_shipped": 0}
    # A variant that failed on the host is not shipped, unless asked (another runtime may load it).
    measurable = [mv for mv in variants if mv.path is not None and mv.path.exists()
                  and (mv.status == Status.OK or policy.ship_failed)]
    for mv in variants:
        if mv not in measurable:
            on_cell(build_cell(device.name, mv, mv.status, mv.error))
    ledger = Ledger(device.name, measurable, settings.repeats, on_cell)
    measurer = measurer_for(device, settings, record)
    try:
        with hold_place(device, policy.lock_timeout_s) as target:  # a labgrid device: only while its place is held
            record.update(target.describe())  # type: ignore[typeddict-item]
            _attempts(target, ledger, measurer, record, policy, transport_factory)
    except TransportError as exc:  # the place stayed busy, or labgrid did not answer
        measurer.fail_device(ledger, exc.status, exc.message)
    except EdgebenchError as exc:
        measurer.fail_device(ledger, Status.ENVIRONMENT_ERROR, str(exc))
    finally:  # also on Ctrl-C: the environment of the cells measured so far
        on_device(record)


def _attempts(device: Device, ledger: Ledger, measurer: Measurer, record: DeviceRecord, policy: RunPolicy,
              transport_factory: TransportFactory) -> None:
    """Connect and measure until every cell is settled: each attempt settles at least one pending result
    or uses up one of the bounded reconnects, so the loop always ends."""
    reconnects = 0
    while ledger.pending:
        stop_if_interrupted()
        transport: Transport | None = None
        try:
            transport = transport_factory(device, policy)
            transport.connect()
            facts = transport.device_facts()  # model, SoC, SDK level, ABI, thermal status
            if facts is not None:
                record["android"] = facts
            measurer.measure(transport, ledger)
        except TransportError as exc:
            if exc.status == Status.CONNECTION_LOST and reconnects < len(RECONNECT_BACKOFF_S):
                time.sleep(RECONNECT_BACKOFF_S[reconnects])
                reconnects += 1
            elif exc.status in (Status.TIMEOUT, Status.INVALID_OUTPUT) and ledger.expected \
                    and transport is not None and transport.alive():
                ledger.fail_current(exc.status, exc.message)  # this cell hung or flooded; the device still answers
            else:  # a device that stopped answering altogether costs its remaining cells, not the run
                measurer.fail_device(ledger, exc.status, exc.message)
        except EdgebenchError as exc:  # e.g. no adb client on the host: this device's cells, not the whole run
            measurer.fail_device(ledger, Status.ENVIRONMENT_ERROR, str(exc))
        finally:
            if transport is not None:
                transport.close()


T = TypeVar("T")


def _serialised(fn: Callable[[T], None], lock: threading.Lock) -> Callable[[T], None]:
    def call(item: T) -> None:
        with lock:
            fn(item)
    return call


def measure_all(plan: list[tuple[Device, list[ModelVariant]]], settings: MeasureSettings, policy: RunPolicy,
                on_cell: CellCallback, on_device: DeviceCallback, **options: Any) -> None:
    """Every device in parallel; callbacks are serialised so the store sees one writer."""
    lock = threading.Lock()
    with ThreadPoolExecutor(max(1, len(plan))) as pool:
        futures = [pool.submit(measure_device, d, variants, settings, policy, _serialised(on_cell, lock),
                               _serialised(on_device, lock), **options) for d, variants in plan]
        try:
            for f in futures:
                f.result()
        except KeyboardInterrupt:
            with interrupted():  # every device thread kills its agent, releases its place and ends
                pool.shutdown(wait=True)
            raise
