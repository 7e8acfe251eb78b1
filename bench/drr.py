"""DRR rendering speed: ``python bench/drr.py [PATH] [--compare-vtk] [--diffdrr PYTHON]``.

Prints one line per image size, ``drr 512x512 median_ms=123.4`` (rendering only: the CT is
loaded and its attenuation pyramid built before timing; the image through the imaging chain
with its marks), the median over several poses (prone bull's-eye-like oblique, PA, lateral)
and repetitions, then ``drr biplane-256 median_ms=...``: a frontal and a lateral 256 image
rendered one after the other. Without PATH a 512x512x400
synthetic instrumented spine (the demo phantom at 0.75 x 0.75 x 0.8 mm) is generated in memory.
``--compare-vtk`` also times VTK's CPU ray caster (vtkFixedPointVolumeRayCastMapper, additive
blend, offscreen) on the same volume and sizes; it needs an offscreen OpenGL (see STACK.md).

DiffDRR 0.6.1 on the CPU is timed in the same run, on the same volume, poses and image sizes
(SID, detector pixel pitch), by ``bench/diffdrr_render.py`` run with the Python of a separate
venv holding ``torch==2.13.0`` and ``diffdrr==0.6.1`` (``--diffdrr PYTHON``; default
``/opt/diffdrr-venv/bin/python`` when it exists, else one line ``diffdrr skipped: ...``;
``--no-diffdrr`` skips it). Torch and DiffDRR are never dependencies of fluoroplan. Its lines
``diffdrr 512x512 median_ms=...`` follow ours, then ``speedup 512x512 x=...`` (DiffDRR's
median over ours). ``--save-png DIR`` also writes the first pose at 512 x 512 as
``DIR/fluoroplan_512.png`` and ``DIR/diffdrr_512.png`` (same rays; each shown with
fluoroplan's display window of its own line integrals) to compare them by eye.

Standard output holds exactly the ``drr ...`` lines (one per size) so tools can parse it; the
comparisons (VTK, DiffDRR, speed-ups, skips) go to standard error.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fluoroplan.geometry.carm import CArmPose  # noqa: E402
from fluoroplan.geometry.drr import (  # noqa: E402
    AttenuationVolume,
    fluoroscopy_display,
    render_drr,
)
from fluoroplan.geometry.projection import Projection  # noqa: E402

POSES = [(-165.0, -10.0), (180.0, 0.0), (90.0, 0.0)]
SIZES = (512, 256)
THREADS = 2
DIFFDRR_PYTHON = "/opt/diffdrr-venv/bin/python"
DIFFDRR_SCRIPT = Path(__file__).resolve().with_name("diffdrr_render.py")




def _note(*args, **kw) -> None:
    """A comparison line: to standard error (standard output is only the drr lines)."""
    kw.pop("flush", None)
    print(*args, file=sys.stderr, flush=True, **kw)

def load(path: str | None):
    if path:
        from fluoroplan.io import load_ct

        return load_ct(path)
    from fluoroplan.resources.phantom import make_phantom

    return make_phantom(0, shape_ijk=(512, 512, 400), pixel_mm=0.75, slice_mm=0.8).volume


def isocenter(ct) -> np.ndarray:
    lo, hi = ct.bounds_lps()
    return (lo + hi) / 2.0


def bench_fluoroplan(ct, repeats: int) -> dict[int, float]:
    """Print and return the median milliseconds per image size."""
    vol = AttenuationVolume.from_ct(ct)
    iso = isocenter(ct)
    medians = {}
    for size in SIZES:
        times = []
        for p, s in POSES:
            pose = CArmPose(p, s, ct.patient_position)
            render_drr(vol, pose, iso, size=size)  # warm: cached layouts
            for _ in range(repeats):
                t = time.perf_counter()
                render_drr(vol, pose, iso, size=size)
                times.append(time.perf_counter() - t)
        medians[size] = 1000 * statistics.median(times)
        print(f"drr {size}x{size} median_ms={medians[size]:.1f}", flush=True)
    # a biplane pair: the frontal plane at each pose and the lateral plane's true lateral,
    # rendered one after the other (what the workstation and the rehearsal do per shot)
    times = []
    for p, s in POSES:
        frontal = CArmPose(p, s, ct.patient_position)
        lateral = CArmPose(90.0, 0.0, ct.patient_position)
        for _ in range(repeats):
            t = time.perf_counter()
            render_drr(vol, frontal, iso, size=256)
            render_drr(vol, lateral, iso, size=256)
            times.append(time.perf_counter() - t)
    medians[-256] = 1000 * statistics.median(times)
    print(f"drr biplane-256 median_ms={medians[-256]:.1f}", flush=True)
    return medians


def bench_vtk(ct, repeats: int) -> None:
    import vtk
    from vtk.util import numpy_support

    from fluoroplan.geometry.drr import MU_UNIT_PER_MM  # noqa: F401  (same units as ours)

    mu = AttenuationVolume.from_ct(ct, levels=1).level_array(0)
    img = vtk.vtkImageData()
    nk, nj, ni = mu.shape
    img.SetDimensions(ni, nj, nk)
    sp = np.linalg.norm(ct.lps_from_ijk[:3, :3], axis=0)
    img.SetSpacing(*sp)
    img.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mu.ravel(), deep=False))
    for size in SIZES:
        mapper = vtk.vtkFixedPointVolumeRayCastMapper()
        mapper.SetInputData(img)
        mapper.SetBlendModeToAdditive()
        mapper.SetAutoAdjustSampleDistances(0)
        mapper.SetSampleDistance(float(sp.min()))
        prop = vtk.vtkVolumeProperty()
        opacity = vtk.vtkPiecewiseFunction()
        opacity.AddPoint(0, 0.0)
        opacity.AddPoint(30000, 1.0)
        prop.SetScalarOpacity(opacity)
        prop.SetInterpolationTypeToLinear()
        volume = vtk.vtkVolume()
        volume.SetMapper(mapper)
        volume.SetProperty(prop)
        ren = vtk.vtkRenderer()
        ren.AddVolume(volume)
        win = vtk.vtkRenderWindow()
        win.SetOffScreenRendering(1)
        win.AddRenderer(ren)
        win.SetSize(size, size)
        cam = ren.GetActiveCamera()
        centre = np.array(img.GetCenter())
        cam.SetFocalPoint(*centre)
        cam.SetPosition(*(centre + [0.0, -750.0, 0.0]))
        cam.SetViewUp(0, 0, 1)
        cam.SetViewAngle(15.5)
        win.Render()
        times = []
        for _ in range(repeats * len(POSES)):
            cam.Azimuth(5)
            t = time.perf_counter()
            win.Render()
            times.append(time.perf_counter() - t)
        _note(f"vtk-fixedpoint {size}x{size} median_ms={1000 * statistics.median(times):.1f}")


def write_diffdrr_input(ct, folder: Path) -> None:
    """The CT (``hu.npy``, int16 ``[k, j, i]``) and ``volume.json`` (its affine and our
    projections: per size, per pose, source / detector direction / image right and down in
    LPS, SID and pixel pitch) for bench/diffdrr_render.py."""
    np.save(folder / "hu.npy", np.ascontiguousarray(ct.hu, dtype=np.int16))
    iso = isocenter(ct)
    sizes = []
    for size in SIZES:
        views = []
        for p, s in POSES:
            proj = Projection(CArmPose(p, s, ct.patient_position).with_image_size(size), iso)
            if proj.shape_px != (size, size):
                raise ValueError(f"pose gives {proj.shape_px} pixels, not {size}x{size}")
            views.append(
                {
                    "source_lps": proj.source_lps.tolist(),
                    "detector_dir_lps": proj.detector_dir_lps.tolist(),
                    "right_lps": proj.right_lps.tolist(),
                    "down_lps": proj.down_lps.tolist(),
                }
            )
        sizes.append(
            {
                "size": size,
                "sid_mm": proj.pose.sid_mm,
                "pixel_mm": proj.pose.pixel_mm,
                "views": views,
            }
        )
    meta = {
        "lps_from_ijk": np.asarray(ct.lps_from_ijk).tolist(),
        "threads": THREADS,
        "sizes": sizes,
    }
    (folder / "volume.json").write_text(json.dumps(meta))


def bench_diffdrr(ct, python: str, ours_ms: dict[int, float], png_dir: Path | None) -> None:
    """Time DiffDRR in its own venv on the same volume and poses; print its lines and the
    speed-up of ours over it."""
    with tempfile.TemporaryDirectory(prefix="fluoroplan-diffdrr-") as tmp:
        folder = Path(tmp)
        write_diffdrr_input(ct, folder)
        cmd = [python, str(DIFFDRR_SCRIPT), str(folder)]
        if png_dir is not None:
            cmd += ["--save-npy", str(folder)]
        env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        theirs = {}
        for line in proc.stdout.splitlines():
            _note(line, flush=True)
            words = line.split()
            if len(words) == 3 and words[0] == "diffdrr" and words[2].startswith("median_ms="):
                theirs[int(words[1].split("x")[0])] = float(words[2].split("=", 1)[1])
        for size in SIZES:
            if size in theirs and ours_ms.get(size):
                _note(f"speedup {size}x{size} x={theirs[size] / ours_ms[size]:.1f}")
        if proc.returncode != 0:
            tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:]
            _note(f"diffdrr failed: exit {proc.returncode}: {' '.join(tail) or 'no message'}")
            return
        if png_dir is not None:
            save_pngs(ct, folder, png_dir)


def save_pngs(ct, folder: Path, png_dir: Path) -> None:
    """Ours and DiffDRR's image of the first pose at 512 x 512, each with the default display
    window of its own line integrals (their attenuation scales differ)."""
    from fluoroplan.io.png import write_png

    png_dir.mkdir(parents=True, exist_ok=True)
    size = SIZES[0]
    p, s = POSES[0]
    vol = AttenuationVolume.from_ct(ct)
    ours = render_drr(vol, CArmPose(p, s, ct.patient_position), isocenter(ct), size=size)
    write_png(png_dir / f"fluoroplan_{size}.png", ours.image)
    theirs = np.load(folder / f"diffdrr_{size}.npy")
    write_png(png_dir / f"diffdrr_{size}.png", fluoroscopy_display(theirs))
    _note(f"pngs written to {png_dir} (pose P={p:+.0f} S={s:+.0f}, {size}x{size})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", help="DICOM folder or NIfTI (default: generated)")
    ap.add_argument("--repeats", type=int, default=5, help="renders per pose (>= 5)")
    ap.add_argument("--compare-vtk", action="store_true")
    ap.add_argument(
        "--diffdrr",
        metavar="PYTHON",
        help=f"Python of a venv with torch and diffdrr 0.6.1 (default: {DIFFDRR_PYTHON})",
    )
    ap.add_argument("--no-diffdrr", action="store_true", help="skip the DiffDRR comparison")
    ap.add_argument(
        "--save-png",
        type=Path,
        metavar="DIR",
        help="write ours and DiffDRR's image of the first pose here",
    )
    args = ap.parse_args()
    ct = load(args.path)
    ours_ms = bench_fluoroplan(ct, max(5, args.repeats))
    if args.compare_vtk:
        bench_vtk(ct, max(5, args.repeats))
    if args.no_diffdrr:
        pass
    elif args.diffdrr is None and not Path(DIFFDRR_PYTHON).exists():
        _note(
            f"diffdrr skipped: {DIFFDRR_PYTHON} not found (make a venv with torch==2.13.0 "
            "and diffdrr==0.6.1, or pass --diffdrr PYTHON)"
        )
    elif args.diffdrr is not None and not Path(args.diffdrr).exists():
        _note(f"diffdrr skipped: {args.diffdrr} not found")
    else:
        bench_diffdrr(ct, args.diffdrr or DIFFDRR_PYTHON, ours_ms, args.save_png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
