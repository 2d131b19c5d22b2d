"""A stand-in device runtime whose invoke sleeps: many loopback "devices" whose on-device work costs this
machine no CPU, for the fleet scale benchmark and the labgrid tests.

``sleepy_python(dir, invoke_ms)`` writes a package named ``tensorflow`` (one of the agent's runtimes,
``runtime: tensorflow``) and a ``python`` wrapper that puts it first on PYTHONPATH. Its Interpreter has one
float32 [1, 4] input and output, reads nothing of the model file, and sleeps ``invoke_ms`` per invoke; the
real agent does everything else (protocol, timing loop, statistics). Its version says what it is, so a
stored cell can never pass for a real measurement.
"""

from __future__ import annotations

import sys
from pathlib import Path

_PACKAGE = '''"""edgebench test stand-in for a TFLite runtime: invoke sleeps {invoke_ms} ms."""
import os
import time

import numpy as np

__version__ = "0+sleep{invoke_ms}ms-stand-in"
_DETAIL = {{"name": "x", "index": 0, "shape": np.array([1, 4]), "shape_signature": np.array([1, 4]),
           "dtype": np.float32, "quantization": (0.0, 0), "quantization_parameters": {{}}}}


class Interpreter(object):
    def __init__(self, model_path=None, num_threads=None, experimental_delegates=None, **_):
        self._value = np.zeros((1, 4), np.float32)

    def get_input_details(self):
        return [dict(_DETAIL)]

    def get_output_details(self):
        return [dict(_DETAIL, name="y", index=1)]

    def get_signature_list(self):
        return {{}}

    def allocate_tensors(self):
        pass

    def resize_tensor_input(self, index, shape):
        pass

    def set_tensor(self, index, value):
        self._value = np.asarray(value, np.float32)

    def get_tensor(self, index):
        return self._value.copy()

    def reset_all_variables(self):
        pass

    def invoke(self):
        start = time.time()
        time.sleep({invoke_ms} / 1000.0)
        if {log!r}:  # when each invoke ran, for tests that check two controllers never overlap
            with open({log!r}, "a") as f:
                f.write("%d %.6f %.6f\\n" % (os.getpid(), start, time.time()))


def _no_delegates(library, options=None):
    raise ValueError("the sleep stand-in runtime has no delegates")


class lite(object):
    Interpreter = Interpreter

    class experimental(object):
        load_delegate = staticmethod(_no_delegates)
'''


def sleepy_python(directory: Path, invoke_ms: float, log: Path | None = None) -> Path:
    """A python for device inventories whose ``tensorflow`` runtime is the stand-in; returns the wrapper.
    With ``log``, every invoke appends "PID START END" (seconds since the epoch) to that file."""
    package = directory / "tensorflow"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(_PACKAGE.format(invoke_ms=invoke_ms, log=str(log or "")))
    wrapper = directory / "python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{directory}" exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def stand_in_model(path: Path) -> Path:
    """A model file for the stand-in (its content is never read on the device; the host only hashes it)."""
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))
    return path
