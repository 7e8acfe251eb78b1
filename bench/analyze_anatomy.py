"""Benchmark: anatomy analysis time per stage. Prints one parseable line per case.

Usage: .venv/bin/python bench/analyze_anatomy.py [--phantom-shape 512 512 400]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from fluoroplan.resources.phantom import make_phantom
from fluoroplan.segmentation.anatomy import analyze_anatomy
from fluoroplan.segmentation.errors import AnatomyError


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phantom-shape", type=int, nargs=3, default=(512, 512, 400))
    ap.add_argument("--pixel-mm", type=float, default=0.75)
    ap.add_argument("--slice-mm", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t = time.perf_counter()
    ph = make_phantom(
        args.seed, shape_ijk=tuple(args.phantom_shape), pixel_mm=args.pixel_mm, slice_mm=args.slice_mm
    )
    t_make = time.perf_counter() - t
    t = time.perf_counter()
    try:
        an = analyze_anatomy(ph.volume, metal_mask=ph.metal)
        result = {
            "stages_s": {k: round(v, 3) for k, v in an.timings_s.items()},
            "vertebrae": [v.label for v in an.vertebrae],
            "truth": [v["label"] for v in ph.truth["vertebrae"]],
        }
    except AnatomyError as err:
        result = {"error": str(err)}
    total = time.perf_counter() - t
    print(
        "bench analyze_anatomy",
        json.dumps(
            {
                "shape_ijk": list(ph.volume.shape_ijk),
                "voxels": int(np.prod(ph.volume.hu.shape)),
                "phantom_s": round(t_make, 2),
                "anatomy_s": round(total, 3),
                **result,
            }
        ),
    )


if __name__ == "__main__":
    main()
