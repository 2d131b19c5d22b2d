"""`edgebench demo`: the main job on the embedded default, in one command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TextIO

from ..common.errors import EdgebenchError, ExitCode
from .convert import cmd_convert
from .output import out
from .results import cmd_report
from .run import cmd_run


def cmd_demo(*, workdir: Path = Path(".edgebench") / "demo", report: Path = Path("reports") / "demo.html",
             store: Path | None = None, runs: int | None = None, stream: TextIO | None = None) -> int:
    """Bundled model -> five variants -> the local device -> report."""
    stream = out(stream)
    workdir.mkdir(parents=True, exist_ok=True)
    model = workdir / "mobilenet_v2_demo.keras"
    if not model.exists():
        print("building the bundled demo model (MobileNetV2 alpha 0.35, 96x96, seeded weights)", file=stream)
        done = subprocess.run([sys.executable, "-m", "harness.conversion.demo_model", str(model)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise EdgebenchError(f"could not build the demo model: {done.stderr.strip()[-500:]}",
                                 exit_code=ExitCode.HARNESS_ERROR)
    print("converting into fp32, fp16, dynamic, int8, int16x8 (each in its own process)", file=stream)
    converted = workdir / "mobilenet_v2_demo"
    cmd_convert(model, out_dir=converted, stream=stream)
    code = cmd_run(models=[converted], inventory=None, devices="local", label="demo", store=store,
                   measure={"runs": runs}, stream=stream)
    cmd_report(out_path=report, store=store, stream=stream)
    # Failed variants are expected results here (the report says why), not a failed demo.
    return ExitCode.OK if code in (ExitCode.OK, ExitCode.CELL_FAILURES) else code
