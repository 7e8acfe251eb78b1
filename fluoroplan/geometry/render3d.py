"""Offscreen 3-D pictures of a plan (bone and metal surfaces, needles, targets) as numpy RGB.

A small interface over VTK so the PDF report (and tests) never touch VTK: build a
:class:`Scene3D` once per CT (the surfaces are the slow part), then :meth:`Scene3D.render`
each trajectory's picture. Without a display VTK needs an offscreen OpenGL: OSMesa
(``libosmesa6``) or EGL, chosen through ``VTK_DEFAULT_OPENGL_WINDOW``
(../shared/STACK.md). :func:`offscreen_status` says whether rendering can work here and why
not; VTK's OSMesa window segfaults when the library is missing, so it is never tried then.
"""

from __future__ import annotations

import ctypes.util
import os
from dataclasses import dataclass

import numpy as np

BONE_HU = 250.0
METAL_HU = 2500.0
SURFACE_VOXEL_MM = 1.5  # voxel edge of the subsampled copy the surfaces are made from
BACKGROUND_RGB = (1.0, 1.0, 1.0)
BONE_RGB = (0.86, 0.80, 0.68)
METAL_RGB = (0.35, 0.55, 0.95)
NEEDLE_RGB = (1.0, 0.62, 0.0)
TARGET_RGB = (0.9, 0.1, 0.1)

_WINDOW_ENV = "VTK_DEFAULT_OPENGL_WINDOW"


def offscreen_status() -> tuple[bool, str]:
    """``(True, how)`` when VTK can render offscreen here, else ``(False, why not)``.

    With a display (``DISPLAY``/``WAYLAND_DISPLAY``) VTK's default window is used. Without one,
    an unset ``VTK_DEFAULT_OPENGL_WINDOW`` is set to OSMesa if ``libOSMesa`` is installed,
    else to EGL if ``libEGL`` is; a preset OSMesa window without the library is refused.
    """
    chosen = os.environ.get(_WINDOW_ENV)
    osmesa = ctypes.util.find_library("OSMesa")
    egl = ctypes.util.find_library("EGL")
    if chosen:
        if chosen == "vtkOSOpenGLRenderWindow" and not osmesa:
            return False, ("VTK is set to OSMesa offscreen rendering but libOSMesa is not "
                           "installed (Debian: libosmesa6)")
        if chosen == "vtkEGLRenderWindow" and not egl:
            return False, "VTK is set to EGL offscreen rendering but libEGL is not installed"
        return True, chosen
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return True, "display"
    if osmesa:
        os.environ[_WINDOW_ENV] = "vtkOSOpenGLRenderWindow"
        return True, "vtkOSOpenGLRenderWindow"
    if egl:
        os.environ[_WINDOW_ENV] = "vtkEGLRenderWindow"
        return True, "vtkEGLRenderWindow"
    return False, ("no display and no offscreen OpenGL library (install libosmesa6 or "
                   "libegl1)")


class Render3DUnavailable(RuntimeError):
    """3-D rendering cannot run on this machine (the message says why)."""


@dataclass(frozen=True)
class Needle3D:
    """A needle to draw: straight from ``entry_lps`` to ``aim_lps`` then on to
    ``target_lps`` (a slide along a screw); radius in mm."""

    entry_lps: np.ndarray
    aim_lps: np.ndarray
    target_lps: np.ndarray
    radius_mm: float = 0.915
    rgb: tuple[float, float, float] = NEEDLE_RGB


class Scene3D:
    """Bone and metal surfaces of a CT around a region, rendered offscreen.

    Parameters
    ----------
    volume : CTVolume
        ``hu`` (int16 ``[k, j, i]``) and ``lps_from_ijk``.
    region_lps : ndarray (N, 3), optional
        Points the pictures are about (entries, targets); surfaces are made within their
        bounding box plus ``margin_mm`` only. Default: the whole volume.
    size_px : int
        Side of the square picture.
    """

    def __init__(self, volume, region_lps=None, margin_mm: float = 50.0, size_px: int = 480,
                 bone_hu: float = BONE_HU, metal_hu: float = METAL_HU,
                 bone_opacity: float = 0.45):
        ok, why = offscreen_status()
        if not ok:
            raise Render3DUnavailable(why)
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (the render window implementation)
        from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow

        self.size_px = int(size_px)
        self._actors: list = []
        self._renderer = vtkRenderer()
        self._renderer.SetBackground(*BACKGROUND_RGB)
        self._window = vtkRenderWindow()
        self._window.SetOffScreenRendering(1)
        self._window.SetSize(self.size_px, self.size_px)
        self._window.AddRenderer(self._renderer)
        hu, lps_from_index = _subsampled(volume, region_lps, margin_mm)
        for level, rgb, opacity in ((bone_hu, BONE_RGB, bone_opacity), (metal_hu, METAL_RGB, 1.0)):
            actor = _surface_actor(hu, lps_from_index, level, rgb, opacity)
            if actor is not None:
                self._renderer.AddActor(actor)

    def render(self, needles: list[Needle3D], targets_lps=(), view_dir_lps=(1.0, 0.0, 0.0),
               up_lps=(0.0, 0.0, 1.0), focus_lps=None, field_mm: float = 140.0) -> np.ndarray:
        """An RGB uint8 picture (size x size x 3) looking at ``focus_lps`` from
        ``view_dir_lps`` (unit vector from the focus toward the camera), ``up_lps`` up, with
        a parallel projection ``field_mm`` tall."""
        from vtkmodules.util.numpy_support import vtk_to_numpy
        from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

        for a in self._actors:
            self._renderer.RemoveActor(a)
        self._actors = []
        for nd in needles:
            pts = [nd.entry_lps, nd.aim_lps]
            if np.linalg.norm(np.asarray(nd.target_lps) - np.asarray(nd.aim_lps)) > 0.1:
                pts.append(nd.target_lps)
            self._actors.append(tube_actor(pts, nd.radius_mm, nd.rgb))
        for p in targets_lps:
            self._actors.append(_sphere_actor(np.asarray(p, float), 2.5, TARGET_RGB))
        for a in self._actors:
            self._renderer.AddActor(a)
        if focus_lps is None:
            allp = [p for nd in needles for p in (nd.entry_lps, nd.target_lps)]
            focus_lps = np.mean(allp, axis=0) if allp else np.zeros(3)
        focus = np.asarray(focus_lps, float)
        view = np.asarray(view_dir_lps, float)
        view = view / np.linalg.norm(view)
        up = np.asarray(up_lps, float)
        up = up - (up @ view) * view
        if np.linalg.norm(up) < 1e-6:
            up = np.array([0.0, 1.0, 0.0]) - view[1] * view
        cam = self._renderer.GetActiveCamera()
        cam.SetFocalPoint(*focus)
        cam.SetPosition(*(focus + 600.0 * view))
        cam.SetViewUp(*(up / np.linalg.norm(up)))
        cam.ParallelProjectionOn()
        cam.SetParallelScale(field_mm / 2.0)
        self._renderer.ResetCameraClippingRange()
        self._renderer.LightFollowCameraOn()
        self._window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(self._window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.Update()
        img = grab.GetOutput()
        w, h, _ = img.GetDimensions()
        arr = vtk_to_numpy(img.GetPointData().GetScalars()).reshape(h, w, -1)[::-1, :, :3]
        return np.ascontiguousarray(arr, dtype=np.uint8)

    def close(self) -> None:
        """Release the OpenGL context."""
        self._window.Finalize()


def _subsampled(volume, region_lps, margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """HU subsampled to about SURFACE_VOXEL_MM (cropped to the region) and its
    ``lps_from_index`` affine (index = (i, j, k) of the subsampled array)."""
    hu = volume.hu
    a = np.asarray(volume.lps_from_ijk, float)
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    step = np.maximum(1, np.rint(SURFACE_VOXEL_MM / spacing).astype(int))  # along i, j, k
    lo = np.zeros(3, int)
    hi = np.array(hu.shape[::-1]) - 1  # i, j, k maxima
    if region_lps is not None and len(region_lps):
        pts = np.atleast_2d(np.asarray(region_lps, float))
        inv = np.linalg.inv(a)
        ijk = pts @ inv[:3, :3].T + inv[:3, 3]
        pad = margin_mm / spacing
        lo = np.maximum(lo, np.floor(ijk.min(axis=0) - pad).astype(int))
        hi = np.minimum(hi, np.ceil(ijk.max(axis=0) + pad).astype(int))
    sub = hu[lo[2]: hi[2] + 1: step[2], lo[1]: hi[1] + 1: step[1], lo[0]: hi[0] + 1: step[0]]
    scale = np.diag([*step.astype(float), 1.0])
    scale[:3, 3] = lo
    return np.ascontiguousarray(sub), a @ scale


def _surface_actor(hu: np.ndarray, lps_from_index: np.ndarray, level: float, rgb, opacity):
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

    if hu.size == 0 or not (hu >= level).any():
        return None
    img = vtkImageData()
    nk, nj, ni = hu.shape
    img.SetDimensions(ni, nj, nk)
    img.GetPointData().SetScalars(numpy_to_vtk(hu.ravel().astype(np.float32), deep=True))
    fe = vtkFlyingEdges3D()
    fe.SetInputData(img)
    fe.SetValue(0, float(level))
    fe.ComputeNormalsOn()
    fe.Update()
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(fe.GetOutput())
    mapper.ScalarVisibilityOff()
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*rgb)
    actor.GetProperty().SetOpacity(opacity)
    actor.GetProperty().SetSpecular(0.2)
    m = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(lps_from_index[r, c]))
    actor.SetUserMatrix(m)
    return actor


def polyline_polydata(points_lps: np.ndarray):
    """A vtkPolyData holding one polyline through (N, 3) LPS points (the 3-D views' lines,
    tubes and needles are built on it)."""
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData, vtkPolyLine

    pts = np.asarray(points_lps, float).reshape(-1, 3)
    points = vtkPoints()
    points.SetData(numpy_to_vtk(pts, deep=True))
    line = vtkPolyLine()
    line.GetPointIds().SetNumberOfIds(len(pts))
    for n in range(len(pts)):
        line.GetPointIds().SetId(n, n)
    cells = vtkCellArray()
    cells.InsertNextCell(line)
    poly = vtkPolyData()
    poly.SetPoints(points)
    poly.SetLines(cells)
    return poly


def tube_actor(points_lps, radius_mm: float, rgb, opacity: float = 1.0, sides: int = 16):
    """A vtkActor: a capped tube of ``radius_mm`` along an LPS polyline (a needle, a shaft)."""
    from vtkmodules.vtkFiltersCore import vtkTubeFilter
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

    tube = vtkTubeFilter()
    tube.SetInputData(polyline_polydata(np.asarray(points_lps, float)))
    tube.SetRadius(float(radius_mm))
    tube.SetNumberOfSides(int(sides))
    tube.CappingOn()
    mapper = vtkPolyDataMapper()
    mapper.SetInputConnection(tube.GetOutputPort())
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*rgb)
    actor.GetProperty().SetOpacity(float(opacity))
    return actor


def _sphere_actor(center_lps: np.ndarray, radius_mm: float, rgb):
    return ellipsoid_actor(center_lps, (radius_mm, radius_mm, radius_mm), rgb)


def ellipsoid_actor(center_lps, semi_axes_mm, rgb, opacity: float = 1.0):
    """A vtkActor: an ellipsoid at ``center_lps`` with LPS-aligned semi-axes (mm)."""
    from vtkmodules.vtkFiltersSources import vtkSphereSource
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

    src = vtkSphereSource()  # radius 0.5 at the origin, scaled and placed by the actor
    src.SetThetaResolution(32)
    src.SetPhiResolution(20)
    mapper = vtkPolyDataMapper()
    mapper.SetInputConnection(src.GetOutputPort())
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.SetScale(*(2.0 * np.asarray(semi_axes_mm, float)))
    actor.SetPosition(*np.asarray(center_lps, float))
    actor.GetProperty().SetColor(*rgb)
    actor.GetProperty().SetOpacity(float(opacity))
    return actor
