"""The one cone-beam projection model: LPS points to detector pixels and back.

Everything drawn on a simulated fluoroscopy image (needle, screw axes, target, the DRR
itself) goes through :class:`Projection`, so a point lands on the same pixel everywhere.

Geometry: the isocentre (default: the planned target) lies on the central ray; the source is
``SOD`` mm from it on the side opposite the detector (``-d``), the detector plane is
perpendicular to ``d`` at ``SID`` mm from the source, centred on the central ray.

Image axes, chosen so the image looks as on the operator's monitor (the patient seen from
the detector side, as the operator looking along the beam from the detector would see it):

- image *up* is the detector's cranial axis ``e_up = dd/dS`` (unit), i.e. the projection of
  the patient's head direction: the head is at the top of every view with |S| < 90;
- image *right* is ``e_right = e_up x d``. For a PA view of a prone patient (detector over
  the back) the patient's RIGHT is on the image right and the head at the top; for an AP
  view of a supine patient the patient's right is on the image left (the usual radiograph);
  for a left lateral the patient's back is on the right.

Pixels are ``(u, v)`` = (column, row) with ``(0, 0)`` the centre of the top-left pixel:
``u`` grows toward image right, ``v`` grows downward (toward the feet). A numpy image is
indexed ``img[v, u]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fluoroplan.geometry.carm import CArmPose

__all__ = ["Projection"]


def _detector_axes(pose: CArmPose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(d, e_right, e_down) in LPS for a pose (see module docstring)."""
    p, s = math.radians(pose.primary_deg), math.radians(pose.secondary_deg)
    d = pose.detector_dir_lps
    e_up = np.array([-math.sin(p) * math.sin(s), math.cos(p) * math.sin(s), math.cos(s)])
    e_right = np.cross(e_up, d)
    return d, e_right, -e_up


@dataclass(frozen=True, eq=False)
class Projection:
    """Cone-beam projection of a C-arm pose around an isocentre.

    Attributes
    ----------
    pose : CArmPose
        Angles, SID/SOD, detector size (mm) and pixel pitch (mm).
    isocenter_lps : ndarray (3,)
        The point the central ray passes through, LPS mm (default in plans: the target).
    """

    pose: CArmPose
    isocenter_lps: np.ndarray
    # derived in __post_init__ (not constructor arguments, not in the repr)
    detector_dir_lps: np.ndarray = field(init=False, repr=False)
    right_lps: np.ndarray = field(init=False, repr=False)
    down_lps: np.ndarray = field(init=False, repr=False)
    source_lps: np.ndarray = field(init=False, repr=False)
    detector_center_lps: np.ndarray = field(init=False, repr=False)
    shape_px: tuple[int, int] = field(init=False, repr=False)
    center_px: np.ndarray = field(init=False, repr=False)
    cam_from_lps: np.ndarray = field(init=False, repr=False)
    px_from_lps: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        iso = np.asarray(self.isocenter_lps, dtype=float).reshape(3)
        object.__setattr__(self, "isocenter_lps", iso)
        d, e_right, e_down = _detector_axes(self.pose)
        source = iso - self.pose.sod_mm * d
        rows, cols = self.pose.image_shape_px
        f_px = self.pose.sid_mm / self.pose.pixel_mm
        centre_px = np.array([(cols - 1) / 2.0, (rows - 1) / 2.0])
        # camera frame: origin at the source, axes (right, down, d); depth along d
        cam_from_lps = np.eye(4)
        cam_from_lps[:3, :3] = np.stack([e_right, e_down, d])
        cam_from_lps[:3, 3] = -cam_from_lps[:3, :3] @ source
        px_from_cam = np.array(
            [[f_px, 0.0, centre_px[0]], [0.0, f_px, centre_px[1]], [0.0, 0.0, 1.0]]
        )
        object.__setattr__(self, "detector_dir_lps", d)
        object.__setattr__(self, "right_lps", e_right)
        object.__setattr__(self, "down_lps", e_down)
        object.__setattr__(self, "source_lps", source)
        object.__setattr__(self, "detector_center_lps", source + self.pose.sid_mm * d)
        object.__setattr__(self, "shape_px", (rows, cols))
        object.__setattr__(self, "center_px", centre_px)
        object.__setattr__(self, "cam_from_lps", cam_from_lps)
        object.__setattr__(self, "px_from_lps", px_from_cam @ cam_from_lps[:3, :])

    # --- forward ------------------------------------------------------------------------
    def detector_px_from_lps(self, points_lps: np.ndarray) -> np.ndarray:
        """Pixel coordinates ``(u, v)`` of LPS points, shape (N, 2) (or (2,) for one point).

        Points must lie in front of the source (between source and detector side)."""
        pts = np.asarray(points_lps, dtype=float)
        single = pts.ndim == 1
        pts = np.atleast_2d(pts)
        h = pts @ self.px_from_lps[:, :3].T + self.px_from_lps[:, 3]
        if np.any(h[:, 2] <= 1e-9):
            raise ValueError("a point lies behind the X-ray source: it cannot be projected")
        uv = h[:, :2] / h[:, 2:3]
        return uv[0] if single else uv

    def depth_mm(self, points_lps: np.ndarray) -> np.ndarray:
        """Distance from the source along the central ray (mm) of LPS points."""
        pts = np.atleast_2d(np.asarray(points_lps, dtype=float))
        return (pts - self.source_lps) @ self.detector_dir_lps

    def magnification(self, points_lps: np.ndarray) -> np.ndarray:
        """Geometric magnification SID / depth at LPS points."""
        return self.pose.sid_mm / self.depth_mm(points_lps)

    # --- inverse ------------------------------------------------------------------------
    def lps_from_detector_px(self, uv_px: np.ndarray) -> np.ndarray:
        """LPS position (mm) on the detector plane of pixel coordinates ``(u, v)``."""
        uv = np.atleast_2d(np.asarray(uv_px, dtype=float))
        off = (uv - self.center_px) * self.pose.pixel_mm
        pts = self.detector_center_lps + off[:, :1] * self.right_lps + off[:, 1:2] * self.down_lps
        return pts[0] if np.asarray(uv_px).ndim == 1 else pts

    def ray_lps(self, uv_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The X-ray reaching pixel ``(u, v)``: (origin = source, unit direction), LPS."""
        det = self.lps_from_detector_px(uv_px)
        vec = det - self.source_lps
        return self.source_lps.copy(), vec / np.linalg.norm(vec, axis=-1, keepdims=True)

    def contains_px(self, uv_px: np.ndarray, margin_px: float = 0.0) -> np.ndarray:
        """Whether pixel coordinates fall on the detector (with an optional margin)."""
        uv = np.atleast_2d(np.asarray(uv_px, dtype=float))
        rows, cols = self.shape_px
        return (
            (uv[:, 0] >= -0.5 - margin_px)
            & (uv[:, 0] <= cols - 0.5 + margin_px)
            & (uv[:, 1] >= -0.5 - margin_px)
            & (uv[:, 1] <= rows - 0.5 + margin_px)
        )
