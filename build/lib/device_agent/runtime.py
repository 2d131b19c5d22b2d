"""Find the TFLite runtime on this device, once, before any model is measured."""

import importlib
import sys

# Preference order: the maintained LiteRT wheel, the legacy tflite-runtime
# wheel, then full TensorFlow as a last resort.
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")


class EnvironmentProblem(Exception):
    """The device cannot measure anything: no runtime, or a broken one."""


class Runtime(object):
    def __init__(self, name, version, interpreter_cls, load_delegate):
        self.name = name
        self.version = version
        self.interpreter_cls = interpreter_cls
        self.load_delegate = load_delegate

    def describe(self):
        return {"name": self.name, "version": self.version}


def _dist_version(dist):
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8 cannot host the agent anyway
        return None
    try:
        return metadata.version(dist)
    except Exception:
        return None


def _load(name):
    if name == "ai_edge_litert":
        mod = importlib.import_module("ai_edge_litert.interpreter")
        return Runtime(name, _dist_version("ai-edge-litert"), mod.Interpreter, mod.load_delegate)
    if name == "tflite_runtime":
        mod = importlib.import_module("tflite_runtime.interpreter")
        import tflite_runtime

        version = getattr(tflite_runtime, "__version__", None) or _dist_version("tflite-runtime")
        _check_numpy_abi(version)
        return Runtime(name, version, mod.Interpreter, mod.load_delegate)
    if name == "tensorflow":
        tf = importlib.import_module("tensorflow")
        return Runtime(name, tf.__version__, tf.lite.Interpreter, tf.lite.experimental.load_delegate)
    raise EnvironmentProblem("unknown runtime %r (choose from %s)" % (name, ", ".join(RUNTIMES)))


def _check_numpy_abi(version):
    # tflite-runtime wheels (last release 2.14) are built against numpy 1.x and
    # fail at interpreter creation with an obscure "_ARRAY_API not found".
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        raise EnvironmentProblem(
            "tflite-runtime %s is built for numpy 1.x but numpy %s is installed; "
            "run: pip install 'numpy<2'" % (version, numpy.__version__)
        )


def find_runtime(preferred="auto"):
    """Return the preferred runtime, or the first importable one."""
    names = RUNTIMES if preferred in (None, "", "auto") else (preferred,)
    errors = []
    for name in names:
        try:
            return _load(name)
        except EnvironmentProblem:
            raise
        except ImportError as exc:
            errors.append("%s: %s" % (name, exc))
        except Exception as exc:  # a broken install is an environment problem too
            errors.append("%s: %s: %s" % (name, type(exc).__name__, exc))
    raise EnvironmentProblem(
        "no TFLite runtime importable with %s (%s); install one: pip install ai-edge-litert"
        % (sys.executable, "; ".join(errors))
    )
