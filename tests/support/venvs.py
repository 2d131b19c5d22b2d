"""Device-side Python environments for the tests: numpy + one runtime, never TensorFlow.

Built from the package index once and cached under
~/.cache/edgebench/test-venvs/NAME-HASH (HASH of the Python version and the
requirements; $EDGEBENCH_TEST_VENVS moves the cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

VENV_CACHE = Path(os.environ.get("EDGEBENCH_TEST_VENVS") or Path.home() / ".cache" / "edgebench" / "test-venvs")
VENVS: dict[str, list[str]] = {
    "litert": ["ai-edge-litert==2.3.0"],
    "tflite": ["tflite-runtime==2.14.0", "numpy<2"],  # tflite-runtime is built against numpy 1.x
    "tflite-numpy2": ["tflite-runtime==2.14.0", "numpy>=2"],  # the broken combination users end up with
    "bare": [],  # a Python with nothing installed
}


def _base_python() -> str:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    assert found, "these tests need Python 3.11 (tflite-runtime has no wheel for newer Pythons): install python3.11"
    return found


def device_python(name: str) -> Path:
    """The cached environment's python; built (once) in a temporary directory, then renamed into place."""
    base = _base_python()
    version = subprocess.run([base, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    key = hashlib.sha256(json.dumps([version, VENVS[name]]).encode()).hexdigest()[:12]
    final = VENV_CACHE / f"{name}-{key}"
    if not (final / "bin" / "python").exists():
        VENV_CACHE.mkdir(parents=True, exist_ok=True)
        tmp = VENV_CACHE / f".tmp-{name}-{secrets.token_hex(4)}"
        try:
            subprocess.run([base, "-m", "venv", *([] if VENVS[name] else ["--without-pip"]), str(tmp)],
                           check=True, capture_output=True, timeout=300)
            if VENVS[name]:
                done = subprocess.run([str(tmp / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                       "--disable-pip-version-check", *VENVS[name]],
                                      capture_output=True, text=True, timeout=1200)
                assert done.returncode == 0, f"pip install {VENVS[name]} failed:\n{done.stderr[-3000:]}"
            try:
                tmp.rename(final)
            except OSError:  # another session finished the same environment first
                assert (final / "bin" / "python").exists()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    python = final / "bin" / "python"
    # The point of these environments: the agent runs where TensorFlow is not installed.
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('tensorflow'))"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "None", f"{name} environment has TensorFlow: {probe.stdout}"
    return python
