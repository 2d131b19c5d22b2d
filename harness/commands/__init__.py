"""The commands, as plain functions: the CLI parses arguments and calls these; so do the tests."""

from .convert import cmd_convert
from .demo import cmd_demo
from .devices import cmd_devices, cmd_purge, cmd_setup
from .doctor import cmd_doctor
from .results import cmd_export, cmd_gate, cmd_report
from .run import cmd_run
from .store import cmd_store_copy

__all__ = ["cmd_convert", "cmd_demo", "cmd_devices", "cmd_doctor", "cmd_export", "cmd_gate", "cmd_purge", "cmd_report",
           "cmd_run", "cmd_setup", "cmd_store_copy"]
