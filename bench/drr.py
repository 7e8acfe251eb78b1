"""DRR rendering speed: ``python bench/drr.py [PATH] [--compare-vtk]``.

Prints one line per image size, ``drr 512x512 median_ms=123.4`` (rendering only: the CT is
loaded and its attenuation pyramid built before timing), the median over several poses
(prone bull's-eye-like oblique, PA, lateral) and repetitions. Without PATH a 512x512x400
synthetic instrumented spine (the demo phantom at 0.75 x 0.75 x 0.8 mm) is generated in memory.
``--compare-vtk`` also times VTK's CPU ray caster (vtkFixedPointVolumeRayCastMapper, additive
blend, offscreen) on the same volume and sizes; it needs an offscreen OpenGL (see STACK.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fluoroplan.geometry.carm import CArmPose  # noqa: E402
from fluoroplan.geometry.drr import AttenuationVolume, render_drr  # noqa: E402

POSES = [(-165.0, -10.0), (180.0, 0.0), (90.0, 0.0)]
SIZES = (512, 256)


def load(path: str | None):
    if path:
        from fluoroplan.io import load_ct

        return load_ct(path)
    from fluoroplan.resources.phantom import make_phantom

    return make_phantom(0, shape_ijk=(512, 512, 400), pixel_mm=0.75, slice_mm=0.8).volume


def bench_fluoroplan(ct, repeats: int) -> None:
    vol = AttenuationVolume.from_ct(ct)
    lo, hi = ct.bounds_lps()
    iso = (lo + hi) / 2.0
    for size in SIZES:
        times = []
        for p, s in POSES:
            pose = CArmPose(p, s, ct.patient_position)
            render_drr(vol, pose, iso, size=size)  # warm: cached layouts
            for _ in range(repeats):
                t = time.perf_counter()
                render_drr(vol, pose, iso, size=size)
                times.append(time.perf_counter() - t)
        print(f"drr {size}x{size} median_ms={1000 * statistics.median(times):.1f}")


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
        print(f"vtk-fixedpoint {size}x{size} median_ms={1000 * statistics.median(times):.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", help="DICOM folder or NIfTI (default: generated)")
    ap.add_argument("--repeats", type=int, default=5, help="renders per pose (>= 5)")
    ap.add_argument("--compare-vtk", action="store_true")
    args = ap.parse_args()
    ct = load(args.path)
    bench_fluoroplan(ct, max(5, args.repeats))
    if args.compare_vtk:
        bench_vtk(ct, max(5, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
