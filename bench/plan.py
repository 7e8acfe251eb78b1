"""Benchmark: proposing every applicable approach for every target of a case.

Usage: ``python bench/plan.py [PATH]`` (default: the demo phantom, planned on its ground truth
so the segmentation's time is not counted). Prints one line per target and a summary line:
``plan targets=N median_s_per_target=X max_s_per_target=Y``.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main() -> int:
    from fluoroplan.planner.approaches import applicable
    from fluoroplan.planner.case import PlanningCase
    from fluoroplan.planner.propose import propose
    from fluoroplan.planner.targets import targets_from_analysis

    if len(sys.argv) > 1:
        from fluoroplan.io import load_ct
        from fluoroplan.io.analysis_json import analysis_json
        from fluoroplan.segmentation.analysis import analyze

        volume = load_ct(sys.argv[1])
        analysis = analysis_json(analyze(volume))
    else:
        from fluoroplan.resources.phantom import make_phantom

        ph = make_phantom(0, cage=("L3", "L4"), cage_subsidence_mm=3.0)
        volume, analysis = ph.volume, ph.truth
    t0 = time.perf_counter()
    case = PlanningCase(volume, analysis)
    setup = time.perf_counter() - t0
    per_target = []
    for target in targets_from_analysis(case):
        t = time.perf_counter()
        jobs = applicable(case, target)
        for approach, side in jobs:
            propose(case, target, approach, side)
        dt = time.perf_counter() - t
        per_target.append(dt)
        print(f"target {target.id} approaches={len(jobs)} s={dt:.2f}")
    print(f"plan targets={len(per_target)} setup_s={setup:.2f} "
          f"median_s_per_target={np.median(per_target):.2f} "
          f"max_s_per_target={np.max(per_target):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
