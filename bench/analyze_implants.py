"""Benchmark: implant analysis of a 512 x 512 x 400 phantom CT, seconds per stage.

Run: ``.venv/bin/python bench/analyze_implants.py [--seed N] [--hfs] [--no-streaks]``.
Prints one parseable line: ``implants shape=... screws=... <stage>=<s> ... total=<s>``.
"""

from __future__ import annotations

import argparse
import time

from fluoroplan.resources.phantom import make_phantom
from fluoroplan.segmentation.implants import find_implants


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hfs", action="store_true")
    ap.add_argument("--no-streaks", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ph = make_phantom(args.seed, shape_ijk=(512, 512, 400), pixel_mm=0.75, slice_mm=0.8,
                      patient_position="HFS" if args.hfs else "HFP",
                      streaks=not args.no_streaks, cage=("L3", "L4"))
    names = {v["index"]: v["label"] for v in ph.truth["vertebrae"]}
    best = None
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        imp = find_implants(ph.volume, vertebra_labels=ph.labels, label_names=names)
        wall = time.perf_counter() - t0
        if best is None or wall < best[0]:
            best = (wall, imp)
    wall, imp = best
    stages = " ".join(f"{k}={v:.3f}" for k, v in imp.timings_s.items() if k != "total")
    print(f"implants shape={'x'.join(map(str, ph.volume.shape_ijk))} screws={len(imp.screws)} "
          f"rods={len(imp.rods)} cages={len(imp.cages)} other={len(imp.other)} {stages} "
          f"total={wall:.3f}")


if __name__ == "__main__":
    main()
