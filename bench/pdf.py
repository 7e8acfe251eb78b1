"""Benchmark: writing the PDF report of a five-trajectory plan on the full-size demo CT.

Usage: ``python bench/pdf.py`` (the default 512 x 512 x 300 phantom, planned on its ground
truth; the first five trajectories are kept). Prints one line:
``pdf trajectories=5 s=X.XX cpu_s=... load1=... pages=N mb=Y.Y`` (wall and CPU seconds, and
the machine's load, since the cores are shared). Never asserts a time.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    from fluoroplan.planner.propose import plan_case
    from fluoroplan.report.pdf import write_plan_pdf
    from fluoroplan.resources.phantom import make_phantom

    ph = make_phantom(0)
    plan = plan_case(ph.volume, ph.truth)
    plan = dataclasses.replace(plan, trajectories=plan.trajectories[:5])
    with tempfile.TemporaryDirectory() as tmp:
        cpu0 = time.process_time()
        info = write_plan_pdf(plan, ph.volume, Path(tmp) / "plan.pdf")
        cpu = time.process_time() - cpu0
        size_mb = info.path.stat().st_size / 1e6
    print(f"pdf trajectories={len(plan.trajectories)} s={info.seconds:.2f} cpu_s={cpu:.2f} "
          f"load1={os.getloadavg()[0]:.1f} pages={info.pages} "
          f"mb={size_mb:.1f}" + (f" note={info.notes[0]!r}" if info.notes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
