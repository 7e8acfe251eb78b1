"""Benchmark: writing the PDF report of a five-trajectory plan on the full-size demo CT.

Usage: ``python bench/pdf.py`` (the default 512 x 512 x 300 phantom, planned on its ground
truth; the first five trajectories are kept). Prints one line:
``pdf trajectories=5 s=X.XX pages=N mb=Y.Y``. Never asserts a time.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path


def main() -> int:
    from fluoroplan.planner.propose import plan_case
    from fluoroplan.planner.report import write_plan_pdf
    from fluoroplan.resources.phantom import make_phantom

    ph = make_phantom(0)
    plan = plan_case(ph.volume, ph.truth)
    plan = dataclasses.replace(plan, trajectories=plan.trajectories[:5])
    with tempfile.TemporaryDirectory() as tmp:
        info = write_plan_pdf(plan, ph.volume, Path(tmp) / "plan.pdf")
        size_mb = info.path.stat().st_size / 1e6
    print(f"pdf trajectories={len(plan.trajectories)} s={info.seconds:.2f} pages={info.pages} "
          f"mb={size_mb:.1f}" + (f" note={info.notes[0]!r}" if info.notes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
