"""Shared fixtures: small real models converted by real TensorFlow, once per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.sshd import free_port, ssh_home, sshd_servers  # noqa: F401  (fixtures for every test module)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Conversion cache and device cache of this test session only."""
    cache = tmp_path_factory.mktemp("edgebench-cache")
    old = os.environ.get("EDGEBENCH_CACHE")
    os.environ["EDGEBENCH_CACHE"] = str(cache)
    yield
    if old is None:
        os.environ.pop("EDGEBENCH_CACHE", None)
    else:
        os.environ["EDGEBENCH_CACHE"] = old


@pytest.fixture(scope="session")
def keras_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small Keras models saved as .keras files (built in a child process: no TensorFlow in pytest)."""
    out = tmp_path_factory.mktemp("keras")
    subprocess.run([sys.executable, str(Path(__file__).parent / "support" / "build_models.py"), str(out)], check=True,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True)
    return {p.stem: p for p in out.iterdir()}


@pytest.fixture(scope="session")
def converted(keras_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small CNN converted into all five variants by `edgebench convert`."""
    out = tmp_path_factory.mktemp("converted") / "cnn"
    result = run_cli("convert", keras_models["cnn"], "-o", out)
    assert result.code == 0, result.err + result.out
    # Every variant of this small CNN converts and prepares; the warnings are what the tests check for.
    variants = json.loads((out / "manifest.json").read_text())["variants"]
    assert {v: (e["status"], e["warnings"]) for v, e in variants.items()} == {
        "fp32": ("ok", []), "fp16": ("ok", []), "dynamic": ("ok", ["same_as_fp32"]),
        "int8": ("ok", ["random_calibration"]), "int16x8": ("ok", ["random_calibration"])}
    return out


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    return tmp_path / "results.sqlite"


@pytest.fixture(scope="session")
def native_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """External-delegate libraries that crash or hang inside the real runtime: a model that kills its process."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed for the crash tests: apt-get install gcc"
    out = tmp_path_factory.mktemp("native")
    src = out / "bad_delegate.c"
    src.write_text(
        """
        #include <stdlib.h>
        #include <string.h>
        #include <unistd.h>
        void* tflite_plugin_create_delegate(char** keys, char** values, size_t n, void (*err)(const char*)) {
          const char* mode = n > 0 ? values[0] : "segv";
          if (strcmp(mode, "hang") == 0) { for (;;) sleep(1); }
          if (strcmp(mode, "abort") == 0) abort();
          return (void*)(long)*(volatile int*)0;
        }
        void tflite_plugin_destroy_delegate(void* d) {}
        """
    )
    lib = out / "libbad_delegate.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


@pytest.fixture(scope="module")
def adb_server() -> Iterator[str]:
    """A private adb server (ANDROID_ADB_SERVER_PORT), killed at teardown: a user's own adb is never touched."""
    adb = shutil.which("adb")
    if adb is None:
        pytest.fail("the adb client is needed for these tests: apt-get install adb")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANDROID_ADB_SERVER_PORT", str(free_port()))
        subprocess.run([adb, "start-server"], check=True, capture_output=True, timeout=30)
        try:
            yield os.environ["ANDROID_ADB_SERVER_PORT"]
        finally:
            subprocess.run([adb, "kill-server"], capture_output=True, timeout=30)
