"""The 3-D pane: bone and metal surfaces of the CT in VTK, plus overlay actors.

Surfaces are extracted off the GUI thread by :func:`extract_surfaces` (in voxel index space of a
downsampled copy; the actor's user matrix places them in LPS). :class:`View3D` shows them and
offers :meth:`View3D.add_polyline`, :meth:`View3D.add_cylinder`, :meth:`View3D.add_label` and
:meth:`View3D.add_actor`, grouped by name so a later feature can replace its own overlays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text rendering)
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (the render window implementation)
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

# PySide6 is imported first, so vtkmodules.qt picks it
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPolyData
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D
from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget
from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkBillboardTextActor3D,
    vtkPolyDataMapper,
    vtkRenderer,
    vtkWindowToImageFilter,
)

from fluoroplan.app.reformat import display_axes
from fluoroplan.geometry.render3d import polyline_polydata, tube_actor
from fluoroplan.io.progress import CancelToken, ProgressCallback, no_progress
from fluoroplan.io.volume import CTVolume

log = logging.getLogger(__name__)

BONE_HU = 250.0
METAL_HU = 2500.0
SURFACE_VOXEL_MM = 1.6  # target voxel size of the downsampled copy
BACKGROUND_RGB = (0.11, 0.13, 0.17)
BONE_RGB = (0.91, 0.86, 0.76)
METAL_RGB = (0.45, 0.68, 1.0)


@dataclass
class Surfaces:
    """Surfaces in LPS: ``bone`` and ``metal`` polydata (index space) with ``lps_from_index``."""

    bone: vtkPolyData
    metal: vtkPolyData
    lps_from_index: np.ndarray  # 4x4, maps the polydata's coordinates to LPS mm
    volume: CTVolume


def _image(values: np.ndarray) -> vtkImageData:
    """float32 [k, j, i] -> vtkImageData with unit spacing and origin 0."""
    img = vtkImageData()
    nk, nj, ni = values.shape
    img.SetDimensions(ni, nj, nk)
    arr = numpy_to_vtk(np.ascontiguousarray(values).ravel(), deep=True)
    arr.SetName("values")
    img.GetPointData().SetScalars(arr)
    return img


def _contour(values: np.ndarray, level: float) -> vtkPolyData:
    fe = vtkFlyingEdges3D()
    fe.SetInputData(_image(values))
    fe.SetValue(0, level)
    fe.ComputeNormalsOn()
    fe.Update()
    out = vtkPolyData()
    out.ShallowCopy(fe.GetOutput())
    return out


def extract_surfaces(
    volume: CTVolume,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Surfaces:
    """Bone (>= 250 HU, metal excluded) and metal (>= 2500 HU) iso-surfaces of a CT.

    The volume is subsampled to about 1.6 mm voxels and lightly smoothed. Voxels next to metal
    are removed from the bone field so the bone surface does not wrap screws and rods.
    """
    from scipy import ndimage

    progress = progress or no_progress
    cancel = cancel or CancelToken()
    stride = np.maximum(1, np.round(SURFACE_VOXEL_MM / volume.spacing_mm).astype(int))
    si, sj, sk = (int(s) for s in stride)
    progress(0.05, "3-D view: subsampling the volume")
    small = volume.hu[::sk, ::sj, ::si].astype(np.float32)
    cancel.check()
    metal = small >= METAL_HU
    near_metal = ndimage.binary_dilation(metal, iterations=1)
    progress(0.2, "3-D view: smoothing")
    bone_field = ndimage.gaussian_filter(np.minimum(small, 1500.0), sigma=0.6)
    bone_field[near_metal] = -200.0
    cancel.check()
    progress(0.45, "3-D view: bone surface")
    bone = _contour(bone_field, BONE_HU)
    cancel.check()
    progress(0.8, "3-D view: metal surface")
    metal_field = ndimage.gaussian_filter(small, sigma=0.5)
    metal_poly = _contour(metal_field, METAL_HU)
    lps_from_index = volume.lps_from_ijk @ np.diag([si, sj, sk, 1.0])
    progress(1.0, "3-D view ready")
    return Surfaces(bone=bone, metal=metal_poly, lps_from_index=lps_from_index, volume=volume)


def _vtk_matrix(m: np.ndarray) -> vtkMatrix4x4:
    out = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out


def _orientation_cube() -> vtkAnnotatedCubeActor:
    """A cube labelled with the patient directions (LPS: +x L, +y P, +z H)."""
    cube = vtkAnnotatedCubeActor()
    cube.SetXPlusFaceText("L")
    cube.SetXMinusFaceText("R")
    cube.SetYPlusFaceText("P")
    cube.SetYMinusFaceText("A")
    cube.SetZPlusFaceText("H")
    cube.SetZMinusFaceText("F")
    cube.SetFaceTextScale(0.6)
    cube.GetCubeProperty().SetColor(0.35, 0.38, 0.44)
    cube.GetTextEdgesProperty().SetColor(0.8, 0.8, 0.8)
    for prop in (cube.GetXPlusFaceProperty(), cube.GetXMinusFaceProperty(),
                 cube.GetYPlusFaceProperty(), cube.GetYMinusFaceProperty(),
                 cube.GetZPlusFaceProperty(), cube.GetZMinusFaceProperty()):
        prop.SetColor(1.0, 0.82, 0.5)
    return cube


class View3D(QWidget):
    """The VTK pane: a title line (Qt) above a QVTKRenderWindowInteractor."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("view_3d")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.title = QLabel("3D")
        self.title.setStyleSheet("color: #b8c4d8; background: #1c2130; padding: 0.2em 0.4em;")
        layout.addWidget(self.title)
        self.vtk_widget = QVTKRenderWindowInteractor(self)
        layout.addWidget(self.vtk_widget, 1)
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(*BACKGROUND_RGB)
        self.render_window = self.vtk_widget.GetRenderWindow()
        self.render_window.AddRenderer(self.renderer)
        self.interactor = self.render_window.GetInteractor()
        self.interactor.SetInteractorStyle(vtkInteractorStyleTrackballCamera())
        # the caption says where the camera is after every rotation, zoom or reset
        self.interactor.AddObserver("EndInteractionEvent", lambda *_: self.update_title())
        self.interactor.AddObserver("InteractionEvent", lambda *_: self.update_title())
        self._marker = vtkOrientationMarkerWidget()
        self._marker.SetOrientationMarker(_orientation_cube())
        self._marker.SetInteractor(self.interactor)
        self._marker.SetViewport(0.0, 0.0, 0.18, 0.18)
        self._marker_on = False
        self._groups: dict[str, list] = {}
        self._surface_actors: list[vtkActor] = []
        self._metal_opacity = 1.0
        self.surfaces: Surfaces | None = None
        self.vtk_widget.Initialize()

    # --- surfaces ---------------------------------------------------------------------------
    def clear(self) -> None:
        for actor in self._surface_actors:
            self.renderer.RemoveActor(actor)
        self._surface_actors = []
        for name in list(self._groups):
            self.remove_group(name)
        self.surfaces = None
        self.title.setText("3D")
        self.render()

    def set_surfaces(self, surfaces: Surfaces) -> None:
        """Show bone and metal surfaces; point the camera like the coronal reformat."""
        for actor in self._surface_actors:
            self.renderer.RemoveActor(actor)
        self.surfaces = surfaces
        matrix = _vtk_matrix(surfaces.lps_from_index)
        bone = self._surface_actor(surfaces.bone, BONE_RGB, matrix, opacity=1.0)
        metal = self._surface_actor(surfaces.metal, METAL_RGB, matrix, opacity=self._metal_opacity)
        metal.GetProperty().SetSpecular(0.6)
        metal.GetProperty().SetSpecularPower(30)
        self._surface_actors = [bone, metal]
        for actor in self._surface_actors:
            self.renderer.AddActor(actor)
        axes = display_axes(surfaces.volume.patient_position)["coronal"]
        self.reset_camera(axes.into_screen_lps, -axes.down_lps)
        self.update_title()
        if not self._marker_on:
            self._marker.SetEnabled(1)
            self._marker.InteractiveOff()
            self._marker_on = True
        self.render()

    def viewed_from(self) -> str:
        """Where the camera looks from, in patient terms: "the back", "the patient's left",
        or "obliquely, mostly from the back" when no side is within ~25 deg."""
        cam = self.renderer.GetActiveCamera()
        toward_viewer = np.asarray(cam.GetPosition(), float) - np.asarray(cam.GetFocalPoint(),
                                                                           float)
        n = float(np.linalg.norm(toward_viewer))
        if n == 0:
            return "the front"
        v = toward_viewer / n
        i = int(np.argmax(np.abs(v)))
        side = [("the patient's left", "the patient's right"), ("the back", "the front"),
                ("the head", "the feet")][i][0 if v[i] > 0 else 1]
        return side if abs(v[i]) >= 0.9 else f"obliquely, mostly from {side}"

    def update_title(self) -> None:
        """The caption follows the camera (called after every camera move)."""
        if self.surfaces is None:
            self.title.setText("3D")
            return
        self.title.setText(
            f"3D  viewed from {self.viewed_from()}   bone \u2265 {BONE_HU:.0f} HU,  "
            f"metal \u2265 {METAL_HU:.0f} HU (blue)")

    def set_metal_opacity(self, opacity: float) -> None:
        """Opacity of the metal surface (translucent once the implants are drawn in colour)."""
        self._metal_opacity = float(opacity)
        if len(self._surface_actors) == 2:
            self._surface_actors[1].GetProperty().SetOpacity(float(opacity))

    def _surface_actor(self, poly: vtkPolyData, rgb, matrix, opacity: float) -> vtkActor:
        mapper = vtkPolyDataMapper()
        mapper.SetInputData(poly)
        mapper.ScalarVisibilityOff()
        actor = vtkActor()
        actor.SetMapper(mapper)
        actor.SetUserMatrix(matrix)
        prop = actor.GetProperty()
        prop.SetColor(*rgb)
        prop.SetOpacity(opacity)
        prop.SetDiffuse(0.85)
        prop.SetAmbient(0.12)
        return actor

    def reset_camera(self, look_lps=None, up_lps=None) -> None:
        """Look along ``look_lps`` (into the screen) with ``up_lps`` up, framing everything."""
        cam = self.renderer.GetActiveCamera()
        if look_lps is not None:
            look = np.asarray(look_lps, float)
            cam.SetFocalPoint(0.0, 0.0, 0.0)
            cam.SetPosition(*(-look * 1000.0))
            cam.SetViewUp(*np.asarray(up_lps, float))
        self.renderer.ResetCamera()
        cam.Zoom(1.25)
        self.renderer.ResetCameraClippingRange()
        self.update_title()

    # --- overlays for later features -------------------------------------------------------
    def add_actor(self, actor, group: str = "default") -> None:
        """Add any vtkProp (in LPS mm) to a named group."""
        self._groups.setdefault(group, []).append(actor)
        self.renderer.AddActor(actor)

    def remove_group(self, group: str) -> None:
        for actor in self._groups.pop(group, []):
            self.renderer.RemoveActor(actor)

    def group_names(self) -> list[str]:
        return list(self._groups)

    def add_polyline(self, points_lps: np.ndarray, rgb=(1.0, 1.0, 0.0), width_px: float = 2.0,
                     group: str = "default") -> vtkActor:
        """A polyline through (N, 3) LPS points."""
        mapper = vtkPolyDataMapper()
        mapper.SetInputData(polyline_polydata(points_lps))
        actor = vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*rgb)
        actor.GetProperty().SetLineWidth(width_px * self.devicePixelRatioF())
        actor.GetProperty().LightingOff()
        self.add_actor(actor, group)
        return actor

    def add_cylinder(self, start_lps, end_lps, radius_mm: float, rgb=(1.0, 0.3, 0.3),
                     opacity: float = 1.0, group: str = "default") -> vtkActor:
        """A solid cylinder (a needle, a screw shaft) from ``start_lps`` to ``end_lps``."""
        actor = tube_actor([start_lps, end_lps], radius_mm, rgb, opacity, sides=24)
        self.add_actor(actor, group)
        return actor

    def add_label(self, position_lps, text: str, rgb=(1.0, 1.0, 1.0),
                  group: str = "default") -> vtkBillboardTextActor3D:
        """Text that always faces the viewer, anchored at an LPS point."""
        actor = vtkBillboardTextActor3D()
        actor.SetInput(text)
        actor.SetPosition(*np.asarray(position_lps, float))
        tp = actor.GetTextProperty()
        tp.SetColor(*rgb)
        tp.SetFontSize(int(round(self.fontInfo().pixelSize() * 1.2 * self.devicePixelRatioF())))
        tp.SetJustificationToCentered()
        tp.BoldOn()
        tp.ShadowOn()
        self.add_actor(actor, group)
        return actor

    # --- rendering / capture ----------------------------------------------------------------
    def render(self) -> None:
        self.render_window.Render()

    def display_from_lps(self, lps) -> tuple[float, float]:
        """Render-window pixel (x from left, y from top) of an LPS point, for tests and picking."""
        r = self.renderer
        r.SetWorldPoint(*np.asarray(lps, float), 1.0)
        r.WorldToDisplay()
        x, y, _ = r.GetDisplayPoint()
        h = self.render_window.GetSize()[1]
        return float(x), float(h - 1 - y)

    def capture(self) -> np.ndarray:
        """The rendered picture as an (H, W, 3) uint8 array, top row first."""
        self.render()
        f = vtkWindowToImageFilter()
        f.SetInput(self.render_window)
        f.SetInputBufferTypeToRGB()
        f.ReadFrontBufferOff()
        f.Update()
        img = f.GetOutput()
        w, h, _ = img.GetDimensions()
        arr = vtk_to_numpy(img.GetPointData().GetScalars()).reshape(h, w, -1)[:, :, :3]
        return np.ascontiguousarray(arr[::-1])

    def capture_qimage(self) -> QImage:
        arr = self.capture()
        h, w, _ = arr.shape
        return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()

    def background_rgb8(self) -> tuple[int, int, int]:
        return tuple(int(round(c * 255)) for c in BACKGROUND_RGB)

    def finalize(self) -> None:
        """Release the GL context (call from the window's closeEvent)."""
        if self._marker_on:
            self._marker.SetEnabled(0)
            self._marker_on = False
        self.vtk_widget.Finalize()
