"""Benchmark: the whole analysis (anatomy + implants) of a 512 x 512 x 400 CT, per stage.

Usage: ``python bench/analyze.py [PATH]`` (default: a generated 512x512x400 phantom, prone,
with streaks and a cage). Prints one line:
``analyze shape=512x512x400 total_s=X vertebrae_s=Y implants_s=Z`` followed by the anatomy and
implant sub-stages, and what was found.
"""

from __future__ import annotations

import sys
import time


def main() -> int:
    from fluoroplan.segmentation.analysis import analyze

    if len(sys.argv) > 1:
        from fluoroplan.io import load_ct

        volume = load_ct(sys.argv[1])
    else:
        from fluoroplan.resources.phantom import make_phantom

        volume = make_phantom(0, shape_ijk=(512, 512, 400), pixel_mm=0.75, slice_mm=0.8,
                              streaks=True, cage=("L3", "L4")).volume
    t0 = time.perf_counter()
    result = analyze(volume)
    total = time.perf_counter() - t0
    ni, nj, nk = volume.shape_ijk
    print(f"analyze shape={ni}x{nj}x{nk} total_s={total:.2f} "
          f"vertebrae_s={result.timings_s['vertebrae']:.2f} "
          f"implants_s={result.timings_s['implants']:.2f}")
    stages = {**{f"anatomy.{k}": v for k, v in result.anatomy.timings_s.items()},
              **{f"implants.{k}": v for k, v in result.implants.timings_s.items()}}
    print("stages " + " ".join(f"{k}={v:.2f}" for k, v in stages.items()))
    print(f"found vertebrae={[v.label for v in result.anatomy.vertebrae]} "
          f"screws={len(result.implants.screws)} rods={len(result.implants.rods)} "
          f"cages={len(result.implants.cages)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
