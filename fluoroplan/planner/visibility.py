"""Which implant hides which landmark in each fluoroscopic view of a trajectory, judged on the
simulated image.

The CT's metal voxels (HU >= ``TITANIUM_MIN_HU``: what the DRR gives titanium's attenuation) are
assigned by proximity to the implants of the analysis (each screw with its tulip, each rod,
cage, cross-link connector and other metal object). In a view, every object's voxels are
projected with the DRR's own :class:`~fluoroplan.geometry.projection.Projection` and splatted
(bilinear, volume-preserving) onto the detector: a pixel then holds the metal path length (mm)
along its X-ray. **Rule:** a landmark sample is hidden where at least ``SATURATION_MM`` = 2 mm of
titanium lies on its ray (at the DRR's 50 keV, 2 mm of titanium, mu 0.547/mm, attenuates like
about 13 mm of cortical bone, 0.081/mm, or 48 mm of water: the rendered DRR shows such pixels
saturated).

Landmarks, and which the operator needs in which view (a warning only for those):

- bull's-eye view: the target pedicle's outline (cortical rings at the isthmus and 4 mm either
  side), the target point; needed: both. Also listed: the needle path and, for a loose screw's
  path, the screw seen end-on (the ring of its shaft and halo at its head and mid-shaft).
- working view (the needle's own en face view): the pedicle outline and the needle path;
  needed: both; also the target and the screw end-on.
- progression view (the lateral): the posterior wall of the target body (three lines along the
  wall between the endplates) and the needle tip (last 10 mm of the path and the target);
  needed: both. Also listed: the endplates in profile (three lines across each) and the path.

:func:`landmark_states` lists a view's landmarks, needed ones first, each with its hidden
fraction and whether it is visible; the check's detail names them.

In the bull's-eye and working views of a path that concerns a screw (a loose-screw target) that
screw is excluded: seen end-on it is the ring the operator aims at, not something in the way.
In the progression view it still counts over the posterior wall, but not over the needle's own
tip and target, which end against it by design (the operator reads the depth along it).

A landmark is lost when more than ``HIDDEN_WARN`` of its samples are hidden. For a view that
loses a needed landmark the C-arm's small tilts (table rotation and angulation, 4..15 deg,
singly and combined, reachable ones only) are searched for the smallest that gives every needed
landmark back; the check names it in room words ("tilt 8 deg toward the patient's FEET (table
angulation -8 deg) clears the left rod (L1-L3)"), or says that none within 15 deg does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fluoroplan.geometry.carm import CArmPose, check_reachable
from fluoroplan.geometry.conventions import TITANIUM_MIN_HU
from fluoroplan.geometry.projection import Projection
from fluoroplan.model.plan import Check, Trajectory

SATURATION_MM = 2.0
"""Titanium path length (mm) on a ray at or above which the fluoroscopic image is saturated."""
HIDDEN_WARN = 0.5
ALONG_LANDMARKS = ("needle tip", "needle path", "target")
"""Landmarks the screw a loose screw's needle runs along never hides (outside its bull's-eye)."""
"""A landmark is lost when more than this fraction of its samples is hidden."""
IMAGE_PX = 256
"""Simulated detector read-out (square field of the detector's short side): 1.17 mm pixels,
about 0.8 mm at the isocentre."""
TILTS_DEG = (4.0, 6.0, 8.0, 10.0, 12.0, 15.0)
MAX_TILT_DEG = 15.0
ASSIGN_MAX_MM = 10.0  # metal farther than this from every known implant is "other metal"

VIEW_NAMES = {"bullseye": "bull's-eye view", "working_view": "working view",
              "progression": "progression view"}
NEEDED = {
    "bullseye": ("pedicle outline", "target"),
    "working_view": ("pedicle outline", "needle path"),
    "progression": ("posterior wall", "needle tip"),
}
CHECK_PREFIX = "landmarks hidden by metal: "


# --- the implants, each with its metal ---------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MetalObject:
    key: str  # "screw:L2-left", "rod:0", ...
    name: str  # words: "screw L2-left", "the left rod (L1-L3)"
    points_lps: np.ndarray  # (n, 3) metal voxel centres
    volume_mm3: float  # metal volume each point stands for


@dataclass(eq=False)
class _Metal:
    objects: list[MetalObject]
    screw_key: dict = field(default_factory=dict)  # screw id -> object index


def _dist_seg(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    L2 = float(ab @ ab)
    if L2 < 1e-12:
        return np.linalg.norm(p - a, axis=1)
    t = np.clip((p - a) @ ab / L2, 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def _dist_polyline(p: np.ndarray, pts: np.ndarray) -> np.ndarray:
    d = np.full(len(p), np.inf)
    if len(pts) == 1:
        return np.linalg.norm(p - pts[0], axis=1)
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        d = np.minimum(d, _dist_seg(p, a, b))
    return d


def _levels_words(case, pts: np.ndarray) -> str:
    """'L1-L3': the levels a rod (or connector) spans, from the screws its line passes by, else
    the nearest vertebrae of its ends."""
    near = [s for s in case.screws
            if float(_dist_polyline(s.head_lps[None, :], pts)[0]) < 20.0 and s.level]
    labels = [v.label for v in case.vertebrae]
    if near:
        lv = sorted({s.level for s in near}, key=lambda x: labels.index(x) if x in labels else 0)
    elif case.vertebrae:
        lv = [case.nearest_vertebra(pts[0]).label, case.nearest_vertebra(pts[-1]).label]
        lv = sorted(set(lv), key=labels.index)
    else:
        return ""
    return lv[0] if len(lv) == 1 else f"{lv[0]}-{lv[-1]}"


def _metal_of(case) -> _Metal:
    """The case's metal (HU >= TITANIUM_MIN_HU) assigned to its implants; cached on the case."""
    cached = getattr(case, "_visibility_metal", None)
    if cached is not None:
        return cached
    pts = np.asarray(case.metal_lps, float).reshape(-1, 3)
    vol = case.volume
    voxel_mm3 = float(np.prod(vol.spacing_mm))
    n_all = int(np.count_nonzero(vol.hu >= case.metal_hu)) if len(pts) else 0
    per_point = voxel_mm3 * (n_all / len(pts) if len(pts) else 1.0)  # case may subsample
    if len(pts):
        pts = pts[case.hu_at(pts) >= TITANIUM_MIN_HU]
    # key, name, distance function (signed distance, mm, of (N, 3) LPS points)
    geoms: list[tuple[str, str, Callable[..., np.ndarray]]] = []
    for s in case.screws:
        # the tulip's size where known (a phantom's truth), else a common one
        tulip_h = float(s.tulip_height_mm or 15.0)
        tulip_r = 0.5 * float(s.tulip_diameter_mm or 12.0)
        top = s.head_lps - tulip_h * s.axis_lps

        def d_screw(p, s=s, top=top, tulip_r=tulip_r, tulip_h=tulip_h):
            d = _dist_seg(p, s.head_lps, s.tip_lps) - s.diameter_mm / 2
            t = (p - s.head_lps) @ s.axis_lps  # negative above the head (the tulip)
            radial = np.linalg.norm(p - s.head_lps - t[:, None] * s.axis_lps, axis=1)
            in_tulip = (t <= 0.5) & (t >= -tulip_h - 1.0) & (radial <= tulip_r + 1.0)
            d = np.minimum(d, _dist_seg(p, top, s.head_lps) - tulip_r)
            return np.where(in_tulip, -10.0, d)  # the tulip holds the rod: it is the screw's

        geoms.append((f"screw:{s.id}", f"screw {s.id}", d_screw))
    for n, r in enumerate(case.rods):
        rp = r.points_lps
        if len(rp) == 0:
            continue
        side = r.side
        lv = _levels_words(case, rp)
        name = f"the {side + ' ' if side else ''}rod" + (f" ({lv})" if lv else "")
        rad = 0.5 * r.diameter_mm
        geoms.append((f"rod:{n}", name, lambda p, rp=rp, rad=rad: _dist_polyline(p, rp) - rad))
    for n, c in enumerate(case.cages):
        between = "-".join(x for x in c.between if x)
        name = f"the cage ({between})" if between else "the cage"

        def d_cage(p, c=c):
            q = p - c.center_lps
            if c.extent_mm is not None and c.axes_lps is not None and c.axes_lps.shape[1] == 3:
                loc = np.abs(q @ c.axes_lps) - 0.5 * c.extent_mm[:3]  # axes are its columns
                return np.linalg.norm(np.maximum(loc, 0.0), axis=1)
            half = 0.5 * float(np.max(c.extent_mm)) if c.extent_mm is not None else 5.0
            return np.linalg.norm(q, axis=1) - half

        geoms.append((f"cage:{n}", name, d_cage))
    for n, link in enumerate(case.connectors):
        lv = link.level
        name = "the cross-link" + (f" ({lv})" if lv else "")
        geoms.append((f"connector:{n}", name,
                      lambda p, ends=link.ends_lps: _dist_polyline(p, ends) - 2.5))
    for n, o in enumerate(case.other_metal):
        ctr = o.center_lps
        half = 0.5 * float(np.max(o.extent_mm)) if o.extent_mm.size else 0.0
        geoms.append((f"other:{n}", f"metal ({o.description or 'unnamed'})",
                      lambda p, ctr=ctr, half=half: np.linalg.norm(p - ctr, axis=1) - half))
    objects: list[MetalObject] = []
    screw_key: dict = {}
    if len(pts):
        if geoms:
            dist = np.stack([g[2](pts) for g in geoms])  # (n_objects, n_points)
            owner = np.argmin(dist, axis=0)
            owner[dist[owner, np.arange(len(pts))] > ASSIGN_MAX_MM] = len(geoms)
        else:
            owner = np.zeros(len(pts), int)
        for n, (key, name, _) in enumerate(geoms + [("other", "unidentified metal", None)]):
            sel = pts[owner == n]
            if len(sel) == 0:
                continue
            if key.startswith("screw:"):
                screw_key[key[6:]] = len(objects)
            objects.append(MetalObject(key, name, sel, per_point))
    metal = _Metal(objects, screw_key)
    case._visibility_metal = metal
    return metal


# --- landmarks ---------------------------------------------------------------------------------
def _ring(center, axis, radius, n=24) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.cross(axis, [0, 0, 1.0])
    if np.linalg.norm(a) < 1e-3:
        a = np.cross(axis, [1.0, 0, 0])
    a /= np.linalg.norm(a)
    b = np.cross(axis, a)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return center + radius * (np.cos(t)[:, None] * a + np.sin(t)[:, None] * b)


def _vertebra(case, label):
    try:
        return case.vertebra(label)
    except KeyError:
        return None


def _target_screw(case, traj: Trajectory):
    if traj.target.kind != "loose-screw":
        return None
    try:
        return case.screw(traj.target.ref)
    except KeyError:
        return None


def landmarks(case, traj: Trajectory, view: str, beam_lps: np.ndarray) -> dict:
    """Sample points (LPS) of each landmark of a view: ``{name: (n, 3) array}``."""
    out: dict[str, np.ndarray] = {}
    vert = _vertebra(case, traj.level)
    path = traj.path_points(1.0)
    if view in ("bullseye", "working_view"):
        if vert is not None and traj.side in vert.pedicles:
            p = vert.pedicles[traj.side]
            out["pedicle outline"] = np.concatenate(
                [_ring(p.axis_point_lps + t * p.axis_dir_lps, p.axis_dir_lps, 0.5 * p.narrowest_width_mm)
                 for t in (-4.0, 0.0, 4.0)])
        out["target"] = np.concatenate([traj.target_lps[None, :],
                                        _ring(traj.target_lps, beam_lps, 1.5, 8)])
        out["needle path"] = path
        screw = _target_screw(case, traj)
        if screw is not None:
            # the loose screw seen end-on: the ring of its shaft and halo the needle aims along
            r = 0.5 * screw.diameter_mm + screw.halo_mm + 0.5
            mid = 0.5 * (screw.head_lps + screw.tip_lps)
            out["screw end-on"] = np.concatenate(
                [_ring(c, screw.axis_lps, r, 16) for c in (screw.head_lps, mid)])
    else:
        if vert is not None:
            wall = vert.centroid_lps + vert.posterior_wall_offset_mm() * vert.posterior_lps
            if vert.posterior_wall is not None:
                wall = vert.posterior_wall.point_lps
            h = 0.5 * vert.body_height_mm - 2.0
            t = np.linspace(-h, h, 15)
            out["posterior wall"] = np.concatenate([
                wall + x * vert.left_lps + t[:, None] * vert.axis_lps for x in (-6.0, 0.0, 6.0)])
            # the endplates in profile: lines across the body at its midline and 6 mm either side
            front = np.linspace(-0.5 * vert.body_depth_mm + 2.0, 0.5 * vert.body_depth_mm - 2.0,
                                9)
            lines = []
            for plane in (vert.superior_endplate, vert.inferior_endplate):
                if plane is not None:
                    lines += [plane.point_lps + x * vert.left_lps + front[:, None] * vert.posterior_lps
                              for x in (-6.0, 0.0, 6.0)]
            if lines:
                out["endplates"] = np.concatenate(lines)
        d_tip = np.linalg.norm(path - traj.target_lps, axis=1)
        # the last 10 mm of the path (along the slide too) and the target itself
        out["needle tip"] = np.concatenate([path[d_tip <= 10.0], traj.target_lps[None, :]])
        out["needle path"] = path
        out["target"] = traj.target_lps[None, :]
    return out


# --- the simulated image -------------------------------------------------------------------------
def _projection(pose: CArmPose, traj: Trajectory) -> Projection:
    return Projection(pose.with_image_size(IMAGE_PX), isocenter_lps=traj.aim_lps)


def metal_mm_images(proj: Projection, objects: list[MetalObject]) -> np.ndarray:
    """Titanium path length (mm) per detector pixel, one image per object: (n, rows, cols).

    Each voxel's volume is spread bilinearly over the pixels around its projection and divided
    by the pixel's area at the voxel's depth (the volume along a ray over its cross-section)."""
    rows, cols = proj.shape_px
    out = np.zeros((len(objects), rows * cols), np.float32)
    for n, ob in enumerate(objects):
        if len(ob.points_lps) == 0:
            continue
        h = ob.points_lps @ proj.px_from_lps[:, :3].T + proj.px_from_lps[:, 3]
        uv = h[:, :2] / h[:, 2:3]
        px_mm = proj.pose.pixel_mm * h[:, 2] / proj.pose.sid_mm  # pixel size at the voxel
        w = ob.volume_mm3 / (px_mm * px_mm)
        u0 = np.floor(uv[:, 0]).astype(np.int64)
        v0 = np.floor(uv[:, 1]).astype(np.int64)
        fu = uv[:, 0] - u0
        fv = uv[:, 1] - v0
        for du, dv, ww in ((0, 0, (1 - fu) * (1 - fv)), (1, 0, fu * (1 - fv)),
                           (0, 1, (1 - fu) * fv), (1, 1, fu * fv)):
            u, v = u0 + du, v0 + dv
            ok = (u >= 0) & (u < cols) & (v >= 0) & (v < rows)
            out[n] += np.bincount(v[ok] * cols + u[ok], weights=(w * ww)[ok],
                                  minlength=rows * cols).astype(np.float32)
    return out.reshape(len(objects), rows, cols)


def _read(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Values of image stack ``img`` (n, rows, cols) at pixel coordinates (nearest): (n, m)."""
    rows, cols = img.shape[1:]
    u = np.clip(np.rint(uv[:, 0]).astype(int), 0, cols - 1)
    v = np.clip(np.rint(uv[:, 1]).astype(int), 0, rows - 1)
    inside = (uv[:, 0] >= -0.5) & (uv[:, 0] <= cols - 0.5) & (uv[:, 1] >= -0.5) & (
        uv[:, 1] <= rows - 0.5)
    vals = img[:, v, u]
    vals[:, ~inside] = 0.0
    return vals


@dataclass(frozen=True)
class ViewVisibility:
    """What metal hides in one view.

    ``hidden`` maps each landmark to its hidden fraction; ``blockers`` maps each landmark to
    ``[(object name, fraction of the landmark's samples that object alone would hide)]``,
    largest first. ``suggestion`` is the small tilt that gives back every needed landmark
    (None when none was needed, or none within 15 deg)."""

    view: str
    pose: CArmPose
    hidden: dict
    blockers: dict
    needed: tuple[str, ...]
    excluded: str | None
    suggestion: dict | None = None
    searched: bool = False

    @property
    def worst_needed(self) -> float:
        return max([self.hidden.get(k, 0.0) for k in self.needed] or [0.0])

    @property
    def lost(self) -> list[str]:
        return [k for k in self.needed if self.hidden.get(k, 0.0) > HIDDEN_WARN]


def _assess(case, traj, view: str, pose: CArmPose, metal: _Metal, needed) -> ViewVisibility:
    excluded = None
    objs = metal.objects
    if (view in ("bullseye", "working_view") and traj.target.kind == "loose-screw"
            and traj.target.ref in metal.screw_key):
        excluded = traj.target.ref
        objs = [o for o in objs if o.key != f"screw:{excluded}"]
    # in the other views the needle of a loose screw's path ends against that screw: it does
    # not hide the needle's own tip or target (the operator reads the depth along it), only the
    # other landmarks (the posterior wall)
    along = None
    if excluded is None and traj.target.kind == "loose-screw":
        keys = [o.key for o in objs]
        if f"screw:{traj.target.ref}" in keys:
            along = keys.index(f"screw:{traj.target.ref}")
    proj = _projection(pose, traj)
    lms = landmarks(case, traj, view, -proj.detector_dir_lps)
    hidden: dict[str, float] = {}
    blockers: dict[str, list[tuple[str, float]]] = {}
    img = metal_mm_images(proj, objs) if objs else None
    for name, pts in lms.items():
        if img is None or len(pts) == 0:
            hidden[name], blockers[name] = 0.0, []
            continue
        vals = _read(img, proj.detector_px_from_lps(pts))  # (n_objects, n_samples)
        if along is not None and name in ALONG_LANDMARKS:
            vals = vals.copy()
            vals[along] = 0.0  # the screw the needle runs along is its depth guide here
        hid = vals.sum(axis=0) >= SATURATION_MM
        hidden[name] = float(hid.mean())
        # who: the objects whose own metal saturates the hidden samples (or the largest share)
        share = []
        if hid.any():
            top = np.argmax(vals[:, hid], axis=0)
            for k in np.unique(top):
                share.append((objs[k].name, float(np.sum(top == k)) / len(pts)))
            share.sort(key=lambda x: -x[1])
        blockers[name] = share
    return ViewVisibility(view, pose, hidden, blockers, tuple(needed), excluded)


@dataclass(frozen=True)
class LandmarkState:
    """One fluoroscopic landmark of a view: whether the operator needs it there, the fraction
    of it metal hides on the image, and whether it is visible (hidden at most ``HIDDEN_WARN``)."""

    name: str
    needed: bool
    hidden_fraction: float
    visible: bool


def landmark_states(vis: ViewVisibility) -> list[LandmarkState]:
    """The landmarks of a view, needed ones first: the list the operator checks on the image
    (pedicle outline, target, screw end-on, needle path in the bull's-eye and working views;
    posterior wall, endplates, needle tip in the progression view)."""
    names = list(vis.needed) + [k for k in vis.hidden if k not in vis.needed]
    return [LandmarkState(k, k in vis.needed, float(vis.hidden.get(k, 0.0)),
                          float(vis.hidden.get(k, 0.0)) <= HIDDEN_WARN)
            for k in names if k in vis.hidden]


def _tilts():
    """Candidate (d_rotation, d_angulation) in table degrees, smallest first."""
    out = [(0.0, a) for a in TILTS_DEG] + [(0.0, -a) for a in TILTS_DEG]
    out += [(a, 0.0) for a in TILTS_DEG] + [(-a, 0.0) for a in TILTS_DEG]
    for a in TILTS_DEG:
        for b in TILTS_DEG:
            if np.hypot(a, b) <= MAX_TILT_DEG + 1e-9:
                out += [(a, b), (a, -b), (-a, b), (-a, -b)]
    return sorted(out, key=lambda t: (np.hypot(*t), abs(t[0])))


def _tilted(pose: CArmPose, d_rot: float, d_ang: float) -> CArmPose:
    tp, ts = pose.table_angles_deg
    new = CArmPose.from_table_angles(tp + d_rot, float(np.clip(ts + d_ang, -89.9, 89.9)),
                                     pose.patient_position, sid_mm=pose.sid_mm,
                                     sod_mm=pose.sod_mm, detector_mm=pose.detector_mm,
                                     pixel_mm=pose.pixel_mm)
    return new


def _tilt_words(pose: CArmPose, new: CArmPose, d_rot: float, d_ang: float) -> str:
    names = (("patient's LEFT", "patient's RIGHT"), ("patient's back", "patient's chest"),
             ("HEAD", "FEET"))
    parts = []
    for axis_deg, comps in ((d_rot, (0, 1)), (d_ang, (2,))):
        if abs(axis_deg) < 1e-9:
            continue
        # the dominant LPS component of the change this table axis makes
        one = _tilted(pose, d_rot if comps != (2,) else 0.0, d_ang if comps == (2,) else 0.0)
        dd = one.detector_dir_lps - pose.detector_dir_lps
        i = max(range(3), key=lambda k: abs(dd[k]))
        parts.append(f"{abs(axis_deg):.0f} deg toward the {names[i][0 if dd[i] > 0 else 1]}")
    table = []
    if abs(d_rot) > 1e-9:
        table.append(f"table rotation {d_rot:+.0f}")
    if abs(d_ang) > 1e-9:
        table.append(f"angulation {d_ang:+.0f} deg")
    return "tilt the detector " + " and ".join(parts) + f" ({', '.join(table)})"


def assess_view(case, traj: Trajectory, view: str, pose: CArmPose,
                needed: tuple[str, ...] | None = None, search: bool = True) -> ViewVisibility:
    """Hidden landmarks of one view of ``traj`` and, when a needed one is lost, the smallest
    reachable tilt (table rotation / angulation, up to 15 deg) that gives them all back."""
    metal = _metal_of(case)
    needed = NEEDED[view] if needed is None else needed
    vis = _assess(case, traj, view, pose, metal, needed)
    if not search or not vis.lost:
        return vis
    culprits = {n for k in vis.lost for n, _ in vis.blockers[k]}
    for d_rot, d_ang in _tilts():
        new = _tilted(pose, d_rot, d_ang)
        if not check_reachable(new).reachable:
            continue
        v2 = _assess(case, traj, view, new, metal, needed)
        if not v2.lost:
            sug = {"d_table_rotation_deg": d_rot, "d_table_angulation_deg": d_ang,
                   "pose": new, "words": _tilt_words(pose, new, d_rot, d_ang),
                   "clears": sorted(culprits), "hidden_after": v2.hidden}
            return ViewVisibility(view, pose, vis.hidden, vis.blockers, vis.needed,
                                  vis.excluded, sug, True)
    return ViewVisibility(view, pose, vis.hidden, vis.blockers, vis.needed, vis.excluded,
                          None, True)


def _check_of(vis: ViewVisibility, label: str | None = None) -> Check:
    label = label or VIEW_NAMES.get(vis.view, vis.view)
    pairs = []
    for lm, share in vis.blockers.items():
        for name, frac in share:
            pairs.append(f"{name} -> {lm} ({100 * frac:.0f}%)")
    needed = ", ".join(vis.needed)
    parts = []
    if vis.lost:
        lost = "; ".join(f"{lm} {100 * vis.hidden[lm]:.0f}% hidden by "
                         + " and ".join(n for n, _ in vis.blockers[lm]) for lm in vis.lost)
        parts.append(f"the operator loses {lost}")
        if vis.suggestion is not None:
            s = vis.suggestion
            parts.append(f"{s['words']} clears {' and '.join(s['clears'])}: "
                         f"{s['pose'].text}")
        else:
            parts.append(f"no tilt within {MAX_TILT_DEG:.0f} deg of rotation and angulation "
                         "clears it: choose another view or approach")
    else:
        parts.append("every landmark needed here is visible")
    parts.append("metal -> landmark: " + ("; ".join(pairs) if pairs else "none"))
    parts.append("landmarks: " + ", ".join(
        f"{lm.name} {'visible' if lm.visible else 'HIDDEN'}"
        + (f" ({100 * lm.hidden_fraction:.0f}% hidden)" if lm.hidden_fraction > 0 else "")
        for lm in landmark_states(vis)))
    parts.append(f"needed: {needed}; hidden where >= {SATURATION_MM:.0f} mm of titanium "
                 "lies on the ray")
    if vis.excluded:
        parts.append(f"{vis.excluded} seen end-on (the screw aimed at) is not counted")
    return Check(CHECK_PREFIX + label, round(vis.worst_needed, 3), HIDDEN_WARN,
                 "warn" if vis.lost else "pass", "fraction", "; ".join(parts))


def visibility_checks(case, traj: Trajectory, poses: dict) -> tuple[Check, ...]:
    """One check per view (bull's-eye, working, progression): the hidden fraction of the worst
    landmark the operator needs there, what hides what, and the tilt that clears it."""
    out = []
    if len(case.metal_lps) == 0:
        for view in ("bullseye", "working_view", "progression"):
            if view in poses:
                out.append(Check(CHECK_PREFIX + VIEW_NAMES[view], 0.0, HIDDEN_WARN, "pass",
                                 "fraction", "no metal in this CT"))
        return tuple(out)
    done: dict = {}
    for view in ("bullseye", "working_view", "progression"):
        if view not in poses:
            continue
        pose = poses[view]
        # the working view looks down the same line as the bull's-eye: reuse its image
        key = (tuple(np.round(pose.detector_dir_lps, 6)), NEEDED[view],
               view == "progression")
        vis = done.get(key) or assess_view(case, traj, view, pose)
        done[key] = vis
        out.append(_check_of(vis, VIEW_NAMES[view]))
    return tuple(out)


def pose_check(case, traj: Trajectory, pose: CArmPose, search: bool = False) -> Check:
    """The check for any pose (the C-arm pane's free view): en face landmarks when the beam
    lies within 30 deg of the needle, else the lateral's."""
    if len(case.metal_lps) == 0:
        return Check(CHECK_PREFIX + "this view", 0.0, HIDDEN_WARN, "pass", "fraction",
                     "no metal in this CT")
    cos = abs(float(pose.detector_dir_lps @ traj.direction_lps))
    view = "bullseye" if cos >= np.cos(np.radians(30.0)) else "progression"
    return _check_of(assess_view(case, traj, view, pose, search=search), "this view")
