"""DiffDRR's CPU rendering speed on a volume handed over by bench/drr.py.

Run with the Python of a separate venv that has ``torch==2.13.0`` (CPU) and ``diffdrr==0.6.1``
(never the project's own environment)::

    /opt/diffdrr-venv/bin/python bench/diffdrr_render.py DIR [--repeats N] [--save-npy OUT]

``DIR`` holds what ``bench/drr.py`` writes: ``hu.npy`` (int16 Hounsfield units ``[k, j, i]``)
and ``volume.json``::

    {"lps_from_ijk": 4x4, "threads": 2,
     "sizes": [{"size": 512, "sid_mm": 1100.0, "pixel_mm": 0.586,
                "views": [{"source_lps": [..], "right_lps": [..], "down_lps": [..],
                           "detector_dir_lps": [..]}, ...]}, ...]}

Each view is one of fluoroplan's projections (``Projection``: source, unit detector direction,
image right/down unit vectors; square image of ``size`` pixels of ``pixel_mm``, detector
``sid_mm`` from the source, centred on the central ray). The CT is read with
``diffdrr.data.read`` (a torchio ``ScalarImage`` of the array and its RAS affine; DiffDRR's own
HU-to-density mapping, volume centred at the world origin) and each view becomes a DiffDRR
camera pose (``diffdrr.pose.convert(..., parameterization="matrix")``) with
``reverse_x_axis=False`` so that DiffDRR's pixel (row r, column c) is fluoroplan's ``(v, u)``
pixel: the same rays, pixel for pixel.

Prints one line per size, in the order given: ``diffdrr 512x512 median_ms=12345.6``: the
median over the views x repeats (at least 3 renders) after one untimed warm-up render, each
timed from the pose to the image (Siddon renderer, no gradients, ``torch.set_num_threads``).
When the warm-up render of a size takes longer than 60 s, only one timed render is done and a
line ``diffdrr 512x512 note: ...`` says so. ``--save-npy OUT`` writes the first view's line
integrals of each size as ``OUT/diffdrr_512.npy`` (float32, rows x columns).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffdrr.data import read
from diffdrr.drr import DRR
from diffdrr.pose import convert
from torchio import ScalarImage

SLOW_S = 60.0  # a warm-up render slower than this: time one render only
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def load_subject(folder: Path, meta: dict):
    """DiffDRR subject of the handed-over CT and the 4x4 map from LPS mm to DiffDRR's world."""
    hu = np.load(folder / "hu.npy")  # [k, j, i]
    lps_from_ijk = np.asarray(meta["lps_from_ijk"], dtype=float)
    # torchio wants (channels, i, j, k) with a RAS affine of (i, j, k)
    tensor = torch.from_numpy(np.ascontiguousarray(hu.transpose(2, 1, 0)))[None]
    image = ScalarImage(tensor=tensor, affine=RAS_FROM_LPS @ lps_from_ijk)
    subject = read(image, orientation=None)  # identity frame change; centred at the origin
    world_from_ijk = np.asarray(subject.volume.affine, dtype=float)
    world_from_lps = world_from_ijk @ np.linalg.inv(lps_from_ijk)
    return subject, world_from_lps


def pose_matrix(view: dict, world_from_lps: np.ndarray) -> torch.Tensor:
    """DiffDRR camera pose (1, 4, 4) of a fluoroplan view.

    DiffDRR's camera frame has the source at the origin, the detector at z = sdd and (with
    ``reverse_x_axis=False``) pixel (r, c) at x = (c - (w-1)/2) delx, y = -(r - (h-1)/2) dely.
    So its x axis is the image right, its y axis the image up (-down), its z axis the detector
    direction, and its origin the source; right x up = detector direction (a rotation).
    """
    lin = world_from_lps[:3, :3]
    right = lin @ np.asarray(view["right_lps"], float)
    up = -(lin @ np.asarray(view["down_lps"], float))
    d = lin @ np.asarray(view["detector_dir_lps"], float)
    src = world_from_lps @ np.append(np.asarray(view["source_lps"], float), 1.0)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, d, src[:3]
    if (
        not np.allclose(m[:3, :3].T @ m[:3, :3], np.eye(3), atol=1e-6)
        or np.linalg.det(m[:3, :3]) < 0
    ):
        raise ValueError("view axes do not form a rotation")
    return torch.as_tensor(m, dtype=torch.float32)[None]


def bench_size(subject, world_from_lps, spec: dict, repeats: int, save: Path | None) -> None:
    size = int(spec["size"])
    drr = DRR(
        subject,
        sdd=float(spec["sid_mm"]),
        height=size,
        delx=float(spec["pixel_mm"]),
        reverse_x_axis=False,
    )
    poses = [
        convert(pose_matrix(v, world_from_lps), parameterization="matrix") for v in spec["views"]
    ]
    with torch.no_grad():
        t = time.perf_counter()
        img = drr(poses[0])  # warm-up (untimed)
        warm_s = time.perf_counter() - t
        if save is not None:
            np.save(save / f"diffdrr_{size}.npy", img[0, 0].numpy().astype(np.float32))
        order = [poses[n % len(poses)] for n in range(max(3, repeats * len(poses)))]
        if warm_s > SLOW_S:
            order = order[:1]
        times = []
        for pose in order:
            t = time.perf_counter()
            drr(pose)
            times.append(time.perf_counter() - t)
    print(f"diffdrr {size}x{size} median_ms={1000 * statistics.median(times):.1f}", flush=True)
    if len(times) == 1:
        print(
            f"diffdrr {size}x{size} note: one timed render only (the warm-up took "
            f"{warm_s:.1f} s > {SLOW_S:.0f} s)",
            flush=True,
        )
    del drr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="hu.npy + volume.json written by bench/drr.py")
    ap.add_argument("--repeats", type=int, default=1, help="timed renders per view")
    ap.add_argument("--save-npy", type=Path, help="write the first view's image per size here")
    args = ap.parse_args()
    meta = json.loads((args.folder / "volume.json").read_text())
    torch.set_num_threads(int(meta.get("threads", 2)))
    subject, world_from_lps = load_subject(args.folder, meta)
    if args.save_npy is not None:
        args.save_npy.mkdir(parents=True, exist_ok=True)
    for spec in meta["sizes"]:
        bench_size(subject, world_from_lps, spec, max(1, args.repeats), args.save_npy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
