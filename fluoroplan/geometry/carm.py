"""C-arm angles: DICOM patient-relative pose, table-relative angles, words for the operator.

Conventions (../shared/CONVENTIONS.md, DICOM PS3.3 C.8.7.5.1.2):

- Primary angle P (transaxial plane): 0 = detector in front of the patient's chest, +90 = at
  the patient's left (LAO), -90 = at the patient's right (RAO); wrapped to (-180, 180].
- Secondary angle S (sagittal plane): +90 = cranial (CRA), -90 = caudal (CAU).
- Detector direction (unit vector from the isocentre toward the detector), LPS:
  ``d = (sin P cos S, -cos P cos S, sin S)``; ``P = atan2(d_x, -d_y)``, ``S = asin(d_z)``.
- Table-relative angles are the same formulas applied to ``d`` expressed in table axes
  (+Xt table left, +Yt floor, +Zt table head); :data:`LPS_AXES_IN_TABLE` gives the axes.
  C-arm limits (rotation, angulation) are table-relative.

A trajectory runs from ``entry_lps`` to ``target_lps``; ``n = unit(target - entry)``. Its
bull's-eye view has ``d = -n`` (detector on the entry side, needle seen end-on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from fluoroplan.geometry.conventions import (
    DEFAULT_CARM_LIMITS,
    DEFAULT_DETECTOR_MM,
    DEFAULT_DETECTOR_PIXEL_MM,
    DEFAULT_SID_MM,
    DEFAULT_SOD_MM,
    LPS_AXES_IN_TABLE,
    PATIENT_POSITIONS,
    CArmLimits,
)

__all__ = [
    "CArmPose",
    "LateralView",
    "Reachability",
    "WorkingView",
    "angles_from_detector_dir",
    "bullseye_pose",
    "lateral_view",
    "signed",
    "tilt_words",
    "check_reachable",
    "describe_angles",
    "detector_dir_from_angles",
    "patient_angles_from_table",
    "progression_pose",
    "table_angles_from_patient",
    "table_from_lps",
    "working_view",
    "wrap180",
]

_EPS = 1e-9


# --- angle <-> direction ------------------------------------------------------------------
def wrap180(angle_deg: float) -> float:
    """Wrap an angle in degrees into (-180, 180]."""
    a = float(angle_deg) - 360.0 * math.ceil((float(angle_deg) - 180.0) / 360.0)
    return 180.0 if a <= -180.0 else a


def detector_dir_from_angles(primary_deg: float, secondary_deg: float) -> np.ndarray:
    """Unit detector direction (isocentre -> detector) for a primary/secondary pair.

    The same formula serves patient-relative angles (result in LPS) and table-relative
    angles (result in table axes).
    """
    p, s = math.radians(primary_deg), math.radians(secondary_deg)
    return np.array([math.sin(p) * math.cos(s), -math.cos(p) * math.cos(s), math.sin(s)])


def angles_from_detector_dir(d: np.ndarray) -> tuple[float, float]:
    """(primary_deg, secondary_deg) of a detector direction; the inverse of
    :func:`detector_dir_from_angles`. Primary is in (-180, 180]; along the body axis
    (|S| = 90) the primary angle is undefined and returned as 0."""
    d = np.asarray(d, dtype=float)
    norm = float(np.linalg.norm(d))
    if d.shape != (3,) or norm < _EPS:
        raise ValueError(f"detector direction must be a non-zero 3-vector, got {d!r}")
    x, y, z = d / norm
    s = math.degrees(math.asin(max(-1.0, min(1.0, z))))
    if math.hypot(x, y) < 1e-12:
        return 0.0, s
    return wrap180(math.degrees(math.atan2(x, -y))), s


# --- patient <-> table ----------------------------------------------------------------------
def _check_position(patient_position: str) -> str:
    pos = str(patient_position).upper()
    if pos not in PATIENT_POSITIONS:
        raise ValueError(
            f"patient position {patient_position!r} is not one of {', '.join(PATIENT_POSITIONS)}"
        )
    return pos


def table_from_lps(patient_position: str) -> np.ndarray:
    """3x3 rotation taking an LPS vector to table axes (+Xt table left, +Yt floor, +Zt head
    of the table) for a patient lying ``HFS``, ``HFP``, ``FFS`` or ``FFP``."""
    signs = LPS_AXES_IN_TABLE[_check_position(patient_position)]
    return np.diag(np.asarray(signs, dtype=float))


def table_angles_from_patient(
    primary_deg: float, secondary_deg: float, patient_position: str
) -> tuple[float, float]:
    """Table-relative (rotation, angulation) in degrees of a patient-relative pair."""
    d_table = table_from_lps(patient_position) @ detector_dir_from_angles(
        primary_deg, secondary_deg
    )
    return angles_from_detector_dir(d_table)


def patient_angles_from_table(
    table_primary_deg: float, table_secondary_deg: float, patient_position: str
) -> tuple[float, float]:
    """Patient-relative (primary, secondary) in degrees of a table-relative pair."""
    lps_from_table = table_from_lps(patient_position).T
    d_lps = lps_from_table @ detector_dir_from_angles(table_primary_deg, table_secondary_deg)
    return angles_from_detector_dir(d_lps)


# --- words ----------------------------------------------------------------------------------
def signed(value: float, nd: int = 1) -> str:
    """A signed read-out of an angle: ``+15.4``, ``-5.6``, and ``0.0`` for anything that rounds
    to zero (never ``-0.0``)."""
    v = round(float(value), nd)
    if v == 0:
        return f"{0.0:.{nd}f}"
    return f"{v:+.{nd}f}"


def rotation_side(patient_position: str, sign: float = 1.0) -> str:
    """The patient's side a positive (``sign`` > 0) table rotation turns the detector toward:
    table rotation moves the detector toward the table's left (+Xt), which is the patient's
    LEFT when head first supine or feet first prone, the patient's RIGHT otherwise."""
    sx = LPS_AXES_IN_TABLE[_check_position(patient_position)][0]  # L = sx * Xt
    return "LEFT" if (sx > 0) == (sign > 0) else "RIGHT"


def angulation_end(patient_position: str, sign: float = 1.0) -> str:
    """The end (HEAD or FEET) a positive table angulation tilts the detector toward (the
    table's head end, +Zt)."""
    sz = LPS_AXES_IN_TABLE[_check_position(patient_position)][2]  # S = sz * Zt
    return "HEAD" if (sz > 0) == (sign > 0) else "FEET"


def tilt_words(reference: CArmPose, pose: CArmPose) -> str:
    """The tilt from ``reference`` to ``pose`` in patient terms, one part per DICOM angle:
    "tilt the detector 6.6 deg toward the patient's RIGHT and 6.8 deg toward the FEET" (each
    part names where that angle's change alone moves the detector)."""
    dp = wrap180(pose.primary_deg - reference.primary_deg)
    ds = pose.secondary_deg - reference.secondary_deg
    names = (("the patient's LEFT", "the patient's RIGHT"), ("the patient's back", "the "
             "patient's chest"), ("the HEAD", "the FEET"))
    parts = []
    for step, moved in ((dp, reference.with_angles(reference.primary_deg + dp,
                                                   reference.secondary_deg)),
                        (ds, reference.with_angles(reference.primary_deg,
                                                   reference.secondary_deg + ds))):
        if _deg_words(step) == "0":
            continue
        delta = moved.detector_dir_lps - reference.detector_dir_lps
        i = int(np.argmax(np.abs(delta)))
        parts.append(f"{_deg_words(step)} deg toward {names[i][0 if delta[i] > 0 else 1]}")
    return "tilt the detector " + " and ".join(parts) if parts else "no tilt"


def _deg_words(angle_deg: float) -> str:
    a = round(abs(angle_deg), 1)
    return f"{a:.0f}" if a == int(a) else f"{a:.1f}"


def describe_angles(primary_deg: float, secondary_deg: float, patient_position: str) -> str:
    """Where the detector is, in room terms that name the patient's side and head/feet.

    The detector is placed against the nearest of the patient's four sides (chest, back,
    left, right; a tie at 45 deg goes to chest/back), said as over/under/beside for the
    patient position, then tilted away from it within the transaxial plane and toward the
    HEAD or FEET (the secondary angle). Example (HFP, P = -165, S = -10): "detector over the
    patient's back, tilted 15 deg toward the patient's RIGHT and 10 deg toward the FEET".
    """
    pos = _check_position(patient_position)
    p, s = wrap180(primary_deg), float(secondary_deg)
    prone = pos.endswith("P")
    if abs(s) >= 89.95:
        end = "HEAD" if s > 0 else "FEET"
        return f"detector beyond the patient's {end}, beam along the body axis"
    up, down = "(up)", "(down)"
    if abs(p) <= 45.0:
        base = "under the patient's chest" if prone else "over the patient's chest"
        dev, pos_word, neg_word = p, "the patient's LEFT", "the patient's RIGHT"
    elif abs(p) >= 135.0:
        base = "over the patient's back" if prone else "under the patient's back"
        dev, pos_word, neg_word = wrap180(p - 180.0), "the patient's RIGHT", "the patient's LEFT"
    else:
        back = f"the patient's back {up if prone else down}"
        chest = f"the patient's chest {down if prone else up}"
        if p > 0:
            base, dev, pos_word, neg_word = "beside the patient's LEFT side", p - 90.0, back, chest
        else:
            base, dev, pos_word, neg_word = "beside the patient's RIGHT side", p + 90.0, chest, back
    tilts = []
    if _deg_words(dev) != "0":
        tilts.append(f"{_deg_words(dev)} deg toward {pos_word if dev > 0 else neg_word}")
    if _deg_words(s) != "0":
        tilts.append(f"{_deg_words(s)} deg toward the {'HEAD' if s > 0 else 'FEET'}")
    return f"detector {base}" + (", tilted " + " and ".join(tilts) if tilts else "")


def _dicom_words(primary_deg: float, secondary_deg: float) -> str:
    cc = "CRA" if secondary_deg > 0 else "CAU"
    tail = f" ({cc} {_deg_words(secondary_deg)})" if _deg_words(secondary_deg) != "0" else ""
    return f"DICOM primary {signed(primary_deg)} deg, secondary {signed(secondary_deg)} deg{tail}"


# --- the pose -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CArmPose:
    """A C-arm pose: DICOM patient-relative angles and the imaging chain.

    Attributes
    ----------
    primary_deg, secondary_deg : float
        DICOM positioner primary/secondary angles, patient-relative, degrees. Primary is
        wrapped into (-180, 180]; secondary must lie in [-90, 90].
    patient_position : str
        ``HFS``, ``HFP``, ``FFS`` or ``FFP``; links patient and table (room) terms.
    sid_mm, sod_mm : float
        Source-to-image and source-to-isocentre distances, mm (``0 < sod < sid``).
    detector_mm : (float, float)
        Detector (field) width along the image u axis and height along v, mm.
    pixel_mm : float
        Detector pixel pitch, mm.
    """

    primary_deg: float
    secondary_deg: float
    patient_position: str = "HFS"
    sid_mm: float = DEFAULT_SID_MM
    sod_mm: float = DEFAULT_SOD_MM
    detector_mm: tuple[float, float] = DEFAULT_DETECTOR_MM
    pixel_mm: float = DEFAULT_DETECTOR_PIXEL_MM

    def __post_init__(self) -> None:
        s = float(self.secondary_deg)
        if not (math.isfinite(s) and -90.0 <= s <= 90.0):
            raise ValueError(f"secondary angle must lie in [-90, 90] deg, got {s}")
        if not math.isfinite(float(self.primary_deg)):
            raise ValueError("primary angle must be finite")
        if not 0.0 < float(self.sod_mm) < float(self.sid_mm):
            raise ValueError(f"need 0 < SOD < SID, got SOD {self.sod_mm}, SID {self.sid_mm} mm")
        w, h = (float(v) for v in self.detector_mm)
        if w <= 0 or h <= 0 or float(self.pixel_mm) <= 0:
            raise ValueError("detector size and pixel pitch must be positive")
        object.__setattr__(self, "primary_deg", wrap180(self.primary_deg))
        object.__setattr__(self, "secondary_deg", s)
        object.__setattr__(self, "patient_position", _check_position(self.patient_position))
        object.__setattr__(self, "sid_mm", float(self.sid_mm))
        object.__setattr__(self, "sod_mm", float(self.sod_mm))
        object.__setattr__(self, "detector_mm", (w, h))
        object.__setattr__(self, "pixel_mm", float(self.pixel_mm))

    # construction
    @classmethod
    def from_detector_dir(
        cls, detector_dir_lps: np.ndarray, patient_position: str = "HFS", **chain
    ) -> CArmPose:
        """Pose whose detector lies along ``detector_dir_lps`` (need not be unit)."""
        p, s = angles_from_detector_dir(detector_dir_lps)
        return cls(p, s, patient_position, **chain)

    @classmethod
    def from_table_angles(
        cls,
        table_primary_deg: float,
        table_secondary_deg: float,
        patient_position: str = "HFS",
        **chain,
    ) -> CArmPose:
        """Pose from table-relative rotation/angulation (what the console shows)."""
        p, s = patient_angles_from_table(table_primary_deg, table_secondary_deg, patient_position)
        return cls(p, s, patient_position, **chain)

    def with_angles(self, primary_deg: float, secondary_deg: float) -> CArmPose:
        """The same imaging chain and patient position at other patient-relative angles."""
        return replace(self, primary_deg=primary_deg, secondary_deg=secondary_deg)

    def with_image_size(self, size_px: int) -> CArmPose:
        """A square field of the detector's short side read out at ``size_px`` pixels (how
        a simulated image of ``size_px`` x ``size_px`` is made from this pose)."""
        side = min(self.detector_mm)
        return replace(self, detector_mm=(side, side), pixel_mm=side / int(size_px))

    # derived
    @property
    def detector_dir_lps(self) -> np.ndarray:
        """Unit vector from the isocentre toward the detector, LPS."""
        return detector_dir_from_angles(self.primary_deg, self.secondary_deg)

    @property
    def table_angles_deg(self) -> tuple[float, float]:
        """(rotation, angulation): table-relative primary and secondary angles, degrees."""
        return table_angles_from_patient(
            self.primary_deg, self.secondary_deg, self.patient_position
        )

    @property
    def image_shape_px(self) -> tuple[int, int]:
        """(rows, columns) of the detector image."""
        w, h = self.detector_mm
        return int(round(h / self.pixel_mm)), int(round(w / self.pixel_mm))

    @property
    def text(self) -> str:
        """The room-terms sentence, e.g. "detector over the patient's back, tilted ..."."""
        return describe_angles(self.primary_deg, self.secondary_deg, self.patient_position)

    @property
    def dicom_text(self) -> str:
        """The DICOM patient-relative pair in words, e.g. "DICOM primary -165.0 deg, ..."."""
        return _dicom_words(self.primary_deg, self.secondary_deg)


# --- views of a trajectory ------------------------------------------------------------------
def _unit(v: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    n = float(np.linalg.norm(v))
    if n < 1e-9:
        raise ValueError(f"{what} has zero length")
    return v / n


def needle_dir_lps(entry_lps: np.ndarray, target_lps: np.ndarray) -> np.ndarray:
    """``n = unit(target - entry)``."""
    return _unit(
        np.asarray(target_lps, float) - np.asarray(entry_lps, float),
        "trajectory (entry and target coincide)",
    )


def bullseye_pose(
    entry_lps: np.ndarray, target_lps: np.ndarray, patient_position: str = "HFS", **chain
) -> CArmPose:
    """Bull's-eye (en face) view: beam along the needle, detector on the entry side
    (``d = -n``). For a screw pass its head as ``entry_lps`` and tip as ``target_lps``."""
    return CArmPose.from_detector_dir(
        -needle_dir_lps(entry_lps, target_lps), patient_position, **chain
    )


@dataclass(frozen=True)
class WorkingView:
    """The needle's working (down-the-barrel) view and how to reach it from a reference
    bull's-eye (usually the screw's): ``pose = reference + (d_primary, d_secondary)``."""

    pose: CArmPose
    reference: CArmPose
    d_primary_deg: float
    d_secondary_deg: float
    d_table_primary_deg: float
    d_table_secondary_deg: float
    angle_between_deg: float
    text: str


def working_view(entry_lps: np.ndarray, target_lps: np.ndarray, reference: CArmPose) -> WorkingView:
    """Working view of a planned needle (its bull's-eye), reported also as the tilt
    (dP, dS), patient- and table-relative, away from ``reference`` (the screw's bull's-eye,
    see :func:`bullseye_pose`). The reference's imaging chain and patient position are kept.
    """
    n_dir = needle_dir_lps(entry_lps, target_lps)
    p, s = angles_from_detector_dir(-n_dir)
    pose = reference.with_angles(p, s)
    dp = wrap180(pose.primary_deg - reference.primary_deg)
    ds = pose.secondary_deg - reference.secondary_deg
    tp, ts = pose.table_angles_deg
    rtp, rts = reference.table_angles_deg
    dtp, dts = wrap180(tp - rtp), ts - rts
    cos_ab = float(np.clip(pose.detector_dir_lps @ reference.detector_dir_lps, -1.0, 1.0))
    between = math.degrees(math.acos(cos_ab))
    text = (
        f"from the reference bull's-eye, {tilt_words(reference, pose)} (DICOM primary "
        f"{signed(dp)}, secondary {signed(ds)} deg; table rotation {signed(dtp)}, angulation "
        f"{signed(dts)}; {_deg_words(between)} deg in all): {pose.text}"
    )
    return WorkingView(pose, reference, dp, ds, dtp, dts, between, text)


def progression_pose(
    entry_lps: np.ndarray,
    target_lps: np.ndarray,
    patient_position: str = "HFS",
    toward_lps: np.ndarray | None = None,
    lateral_lps: np.ndarray | None = None,
    **chain,
) -> CArmPose:
    """Progression view: detector perpendicular to the needle (needle seen in full length),
    the one closest to ``toward_lps`` (a detector direction the user names), by default
    the true lateral of the vertebra on the side of the entry point.

    ``lateral_lps`` is the vertebra's own left-right axis (default LPS +x); the default
    ``toward_lps`` is that axis signed toward the entry side (left when the needle is
    midline).
    """
    n_dir = needle_dir_lps(entry_lps, target_lps)
    if toward_lps is None:
        lat = _unit(np.array([1.0, 0, 0]) if lateral_lps is None else lateral_lps, "lateral axis")
        side = float((np.asarray(entry_lps, float) - np.asarray(target_lps, float)) @ lat)
        toward_lps = lat if side >= 0 else -lat
    w = _unit(toward_lps, "preferred view direction")
    d = w - (w @ n_dir) * n_dir
    if np.linalg.norm(d) < 1e-6:
        raise ValueError(
            "the preferred view direction runs along the needle: no view perpendicular to "
            "the needle is closest to it; name another direction"
        )
    return CArmPose.from_detector_dir(d, patient_position, **chain)


@dataclass(frozen=True)
class LateralView:
    """The progression view as CONVENTIONS.md has it: the true lateral of the target vertebra
    (beam along the vertebra's own left-right axis, endplates and posterior wall in profile) on
    the side the C-arm reaches, else the nearest reachable lateral.

    ``true_lateral``: whether the pose is the true lateral; ``off_deg``: the beam's angle from
    the vertebra's left-right axis; ``needle_length_fraction``: how long the needle looks on
    it relative to its real length (1: in the image plane); ``text``: the sentence."""

    pose: CArmPose
    true_lateral: bool
    off_deg: float
    needle_length_fraction: float
    text: str


def lateral_view(entry_lps: np.ndarray, target_lps: np.ndarray, lateral_lps: np.ndarray | None,
                 patient_position: str = "HFS", limits: CArmLimits = DEFAULT_CARM_LIMITS,
                 level: str = "", **chain) -> LateralView:
    """The true lateral of the vertebra whose left-right axis is ``lateral_lps`` (default LPS
    +x): the detector on the entry side first, else on the other side (the same beam line,
    mirrored), else the nearest pose ``limits`` allow to the entry side's lateral."""
    lat = _unit(np.array([1.0, 0.0, 0.0]) if lateral_lps is None else lateral_lps,
                "lateral axis")
    side = float((np.asarray(entry_lps, float) - np.asarray(target_lps, float)) @ lat)
    first = lat if side >= 0 else -lat
    n_dir = needle_dir_lps(entry_lps, target_lps)
    what = f"true lateral of {level}" if level else "true lateral of the vertebra"
    pose = None
    mirrored = False
    for k, d in enumerate((first, -first)):
        cand = CArmPose.from_detector_dir(d, patient_position, **chain)
        if check_reachable(cand, limits).reachable:
            pose, mirrored = cand, k == 1
            break
    true = pose is not None
    if pose is None:
        pose = check_reachable(CArmPose.from_detector_dir(first, patient_position, **chain),
                               limits).nearest
    d = pose.detector_dir_lps
    off = math.degrees(math.acos(min(1.0, abs(float(d @ lat)))))
    out_of_plane = math.degrees(math.asin(min(1.0, abs(float(n_dir @ d)))))
    fraction = math.cos(math.radians(out_of_plane))
    where = "LEFT" if d[0] > 0 else "RIGHT"
    needle = (f"the needle appears at {100 * fraction:.0f}% of its length "
              f"({out_of_plane:.0f} deg out of the image plane)")
    if true:
        text = (f"{what} (endplates and posterior wall in profile), detector on the patient's "
                f"{where} side" + (" (the entry side's lateral is out of the C-arm's reach)"
                                   if mirrored else "") + f"; {needle}")
    else:
        text = (f"the {what} is out of the C-arm's reach: nearest reachable lateral, "
                f"{off:.0f} deg from it (the posterior wall is not in profile: judge the depth "
                f"with care); {needle}")
    return LateralView(pose, true, off, fraction, text)


# --- reachability ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Reachability:
    """Whether a C-arm can take a pose; if not, why and the nearest pose it can take."""

    reachable: bool
    reason: str
    nearest: CArmPose
    angle_off_deg: float = 0.0
    limits: CArmLimits = field(default=DEFAULT_CARM_LIMITS, repr=False)


def _in(value: float, lo_hi: tuple[float, float], tol: float = 1e-9) -> bool:
    return lo_hi[0] - tol <= value <= lo_hi[1] + tol


def _nearest_table_dir(d_table: np.ndarray, limits: CArmLimits) -> tuple[float, float]:
    """Table angles inside the limits whose direction is closest (by angle) to d_table."""
    (r0, r1), (a0, a1) = limits.rotation_deg, limits.angulation_deg

    def best(rs: np.ndarray, as_: np.ndarray) -> tuple[float, float]:
        rr, aa = np.meshgrid(np.radians(rs), np.radians(as_), indexing="ij")
        dirs = np.stack([np.sin(rr) * np.cos(aa), -np.cos(rr) * np.cos(aa), np.sin(aa)], axis=-1)
        i, j = np.unravel_index(np.argmax(dirs @ d_table), rr.shape)
        return float(rs[i]), float(as_[j])

    r, a = best(
        np.linspace(r0, r1, 4 * int(r1 - r0) + 1), np.linspace(a0, a1, 4 * int(a1 - a0) + 1)
    )
    for step in (0.25, 0.02):
        rs = np.clip(np.arange(r - 2 * step, r + 2.01 * step, step / 10), r0, r1)
        as_ = np.clip(np.arange(a - 2 * step, a + 2.01 * step, step / 10), a0, a1)
        r, a = best(rs, as_)
    return r, a


def check_reachable(pose: CArmPose, limits: CArmLimits = DEFAULT_CARM_LIMITS) -> Reachability:
    """Check a pose against C-arm limits (table-relative rotation and angulation, SID).

    An unreachable pose is reported with a reason and the nearest reachable pose: the
    allowed detector direction at the smallest angle from the asked one, SID clamped.
    """
    tp, ts = pose.table_angles_deg
    problems = []
    if not _in(tp, limits.rotation_deg):
        problems.append(
            f"table rotation {signed(tp)} deg is outside the C-arm's "
            f"{signed(limits.rotation_deg[0], 0)}..{signed(limits.rotation_deg[1], 0)} deg"
        )
    if not _in(ts, limits.angulation_deg):
        problems.append(
            f"table angulation {signed(ts)} deg is outside the C-arm's "
            f"{signed(limits.angulation_deg[0], 0)}..{signed(limits.angulation_deg[1], 0)} deg"
        )
    sid = min(max(pose.sid_mm, limits.sid_mm[0]), limits.sid_mm[1])
    if not _in(pose.sid_mm, limits.sid_mm):
        problems.append(
            f"SID {pose.sid_mm:.0f} mm is outside {limits.sid_mm[0]:.0f}..{limits.sid_mm[1]:.0f} mm"
        )
    if not problems:
        return Reachability(True, "reachable", pose, 0.0, limits)
    if any("table" in p for p in problems):
        d_table = table_from_lps(pose.patient_position) @ pose.detector_dir_lps
        r, a = _nearest_table_dir(d_table, limits)
        p, s = patient_angles_from_table(r, a, pose.patient_position)
    else:
        p, s = pose.primary_deg, pose.secondary_deg
    sod = min(pose.sod_mm, sid - 1.0)
    nearest = replace(pose, primary_deg=p, secondary_deg=s, sid_mm=sid, sod_mm=sod)
    off = math.degrees(
        math.acos(float(np.clip(nearest.detector_dir_lps @ pose.detector_dir_lps, -1.0, 1.0)))
    )
    reason = "; ".join(problems) + f". Nearest reachable ({off:.1f} deg away): {nearest.text}"
    flipped = CArmPose.from_detector_dir(-pose.detector_dir_lps, pose.patient_position)
    ftp, fts = flipped.table_angles_deg
    if _in(ftp, limits.rotation_deg) and _in(fts, limits.angulation_deg):
        reason += (
            f". The opposite detector side ({flipped.text}) gives the same beam line, "
            "mirrored and with other magnification"
        )
    return Reachability(False, reason, nearest, off, limits)
