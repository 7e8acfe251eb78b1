"""A trainee's rehearsal as data: the views of Task 1 (:class:`Phase`), everything a replay
needs (:class:`RehearsalSetup`), the simulator's state after an event (:class:`RehearsalState`)
and the score (:class:`Score`). Frozen dataclasses in LPS mm and degrees; the session that
drives them is :mod:`fluoroplan.rehearsal.session`, their JSON forms (the attempt file,
``fluoroplan.rehearsal/1``) are in :mod:`fluoroplan.io.rehearsal_json`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fluoroplan.geometry.carm import CArmPose
from fluoroplan.geometry.conventions import DEFAULT_CARM_LIMITS, CArmLimits

DEFAULT_TOLERANCE_DEG = 2.0
"""A declared view within this angle of the reference pose counts as reached."""
DEFAULT_SHOT_S = 1.0
"""Fluoroscopy time one shot counts."""


@dataclass(frozen=True, eq=False)
class Phase:
    """One view of Task 1: its name, words, and the reference pose to reach."""

    name: str  # "screw-bullseye" or "working-view"
    label: str
    pose: CArmPose


@dataclass(frozen=True, eq=False)
class RehearsalSetup:
    """Everything a replay needs besides the events (saved in the attempt JSON)."""

    patient_position: str
    phases: tuple[Phase, ...]
    reference: dict  # id, source, approach, side, entry/target/contact/direction (LPS)
    target: dict  # target_to_json(Target)
    isocenter_lps: np.ndarray
    tolerance_deg: float = DEFAULT_TOLERANCE_DEG
    limits: CArmLimits = DEFAULT_CARM_LIMITS
    shot_s: float = DEFAULT_SHOT_S
    start_table_deg: tuple[float, float] = (0.0, 0.0)
    chain: dict = field(default_factory=dict)  # CArmPose keyword arguments (sid_mm, ...)
    needle_length_mm: float = 150.0
    lateral_limits: CArmLimits | None = None  # a biplane suite's lateral plane; None: monoplane

    @property
    def biplane(self) -> bool:
        return self.lateral_limits is not None

    def pose(self, table_deg: tuple[float, float]) -> CArmPose:
        return CArmPose.from_table_angles(table_deg[0], table_deg[1], self.patient_position,
                                          **self.chain)

    def clamp(self, table_deg: tuple[float, float]) -> tuple[float, float]:
        (r0, r1), (a0, a1) = self.limits.rotation_deg, self.limits.angulation_deg
        return (min(max(float(table_deg[0]), r0), r1), min(max(float(table_deg[1]), a0), a1))

    @property
    def field_cm2(self) -> float:
        """Area of the (square) rendered field at the isocentre plane, cm²."""
        pose = self.pose(self.start_table_deg)
        side_mm = min(pose.detector_mm) * pose.sod_mm / pose.sid_mm
        return side_mm * side_mm / 100.0


@dataclass(frozen=True, eq=False)
class RehearsalState:
    """The simulator's state after an event (immutable; the session holds the current one).

    ``table_deg`` is the C-arm's (rotation, angulation) in table terms; ``declared`` maps a
    phase name to its angle error (deg) at declaration; the needle runs from ``entry_lps``
    along ``dir_lps`` (unit, toward the picked ``aim_lps``) to ``depth_mm`` inside.
    """

    table_deg: tuple[float, float]
    phase_index: int = 0
    declared: dict = field(default_factory=dict)
    shots: int = 0
    fluoro_s: float = 0.0
    dap_cm2s: float = 0.0
    entry_lps: np.ndarray | None = None
    aim_lps: np.ndarray | None = None
    dir_lps: np.ndarray | None = None
    depth_mm: float = 0.0
    corrections: int = 0
    steps: int = 0
    ended: bool = False
    t_s: float = 0.0
    last_event: str = "start"
    clamped: bool = False  # the last C-arm move hit a limit

    @property
    def tip_lps(self) -> np.ndarray | None:
        if self.entry_lps is None:
            return None
        assert self.dir_lps is not None  # the entry, aim and direction are placed together
        return self.entry_lps + self.depth_mm * self.dir_lps


@dataclass(frozen=True)
class Score:
    """A scored attempt: the total out of 100, each ``(points_lost, reason)`` and the measures.

    ``metrics`` holds ``view_errors_deg`` (phase name -> angle error at declaration, deg, or
    None when never declared), ``shots``, ``fluoro_s``, ``dap_cm2s``, ``corrections``,
    ``tip_error_mm`` (None without a needle), ``needle_angle_deg`` (trainee needle vs the
    expert insertion direction) and ``bullseye_error_deg`` (the largest declared view error).
    """

    total: float
    lost: tuple[tuple[float, str], ...]
    parts: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        lines = [f"score {self.total:.1f} / 100"]
        lines += [f"  -{p:.1f}  {r}" for p, r in self.lost if p > 0]
        lines += [f"   0.0  {r}" for p, r in self.lost if p <= 0]
        return "\n".join(lines)
