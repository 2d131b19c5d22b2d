"""edgebench device agent: measures TFLite models on the device it runs on.

Runs with only the standard library, numpy and one TFLite runtime
(ai_edge_litert, tflite_runtime or tensorflow.lite). Python 3.9+. It never
imports the host package: it is shipped to devices as a single zip file.

Wire protocol (version 1)
-------------------------
The host starts ``python3 AGENT.pyz serve`` and writes ONE frame on stdin: the
job. The agent writes frames on stdout and logs on stderr:

    frame  := b"EDGEBENCH1 " <decimal byte length> b"\\n" <UTF-8 JSON object> b"\\n"

Every JSON object carries ``schema_version`` (1) and ``type``:

    job    (host -> agent)  {"type": "job", "cells": [CELL...], "runtime": "auto"}
    hello  (agent -> host)  {"type": "hello", "agent_version", "runtime", "env"}
    cell   (agent -> host)  one per job cell, in job order, as soon as measured
    done   (agent -> host)  {"type": "done"}

A job CELL is {"id", "model_path", "runs", "min_seconds", "max_runs",
"warmup", "warmup_seconds", "threads", "delegate", "eval_inputs",
"cell_timeout_s"}; missing measurement fields take DEFAULTS. See
``measure.py`` for the result fields.

Frames are capped at MAX_FRAME_BYTES; NaN and Infinity are never written (the
host rejects them). The C runtime may print to fd 1, so the agent moves fd 1
to stderr at start and writes frames to a private duplicate of the original
stdout.
"""

AGENT_VERSION = "0.1.0"
PROTOCOL_VERSION = 1
SCHEMA_VERSION = 1
FRAME_MAGIC = b"EDGEBENCH1"
MAX_FRAME_BYTES = 64 * 1024 * 1024

# Measurement defaults for the host (edgebench run) and the agent (serve and standalone) alike:
# those of LiteRT's benchmark_model (at least 50 runs and 1 s; at least 1 warm-up run and 0.5 s).
DEFAULTS = {"runs": 50, "min_seconds": 1.0, "warmup": 1, "warmup_seconds": 0.5, "max_runs": 10000,
            "cell_timeout_s": 600.0}
