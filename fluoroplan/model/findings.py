"""What the analysis of a CT found, as one object: the vertebrae and every implant
(:class:`Findings`). The planner, the workstation and the report use it; an analysis file or a
phantom's truth is read into it by :func:`fluoroplan.io.analysis_json.findings_from_json`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fluoroplan.model.anatomy import Vertebra
from fluoroplan.model.implants import Cage, Cement, Connector, OtherMetal, Rod, Screw

MIN_LISTED_CEMENT_MM3 = 100.0
"""Cement deposits with less dense volume than this (a few voxels: partial volume at metal or
cortical edges) are not listed to the user."""
NEAR_VERTEBRA_MM = 30.0
"""A point this close to a vertebral body's centroid is "at" that vertebra."""


@dataclass(frozen=True, eq=False)
class Findings:
    """The vertebrae (cranial to caudal), screws, rods, cages, cross-links, other metal and
    cement of one CT, and the analysis' warnings (LPS mm)."""

    vertebrae: tuple[Vertebra, ...] = ()
    screws: tuple[Screw, ...] = ()
    rods: tuple[Rod, ...] = ()
    cages: tuple[Cage, ...] = ()
    connectors: tuple[Connector, ...] = ()
    other_metal: tuple[OtherMetal, ...] = ()
    cement: tuple[Cement, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def levels(self) -> list[str]:
        return [v.label for v in self.vertebrae]

    @property
    def loose_screws(self) -> list[Screw]:
        return [s for s in self.screws if s.loose]

    def screw(self, screw_id: str) -> Screw:
        for s in self.screws:
            if s.id == screw_id:
                return s
        raise KeyError(f"no screw {screw_id!r}; found: {', '.join(s.id for s in self.screws)}")

    @property
    def listed_cement(self) -> list[Cement]:
        """The cement deposits worth naming (at least ``MIN_LISTED_CEMENT_MM3`` dense)."""
        return [c for c in self.cement if c.volume_mm3 >= MIN_LISTED_CEMENT_MM3]

    def where(self, point_lps: np.ndarray) -> str:
        """Where a point lies, in the spine's words: "at L3", or "not at a vertebra: 62 mm
        below S1, on the patient's LEFT" (the side when it is more than 30 mm off the
        midline)."""
        if not self.vertebrae:
            return "level unknown (no vertebra found)"
        p = np.asarray(point_lps, float)
        dist = [float(np.linalg.norm(v.centroid_lps - p)) for v in self.vertebrae]
        near = self.vertebrae[int(np.argmin(dist))]
        if min(dist) <= NEAR_VERTEBRA_MM:
            return f"at {near.label}"
        z = [float(v.centroid_lps[2]) for v in self.vertebrae]
        low, high = self.vertebrae[int(np.argmin(z))], self.vertebrae[int(np.argmax(z))]
        if p[2] < min(z):
            level = f"{min(z) - p[2]:.0f} mm below {low.label}"
        elif p[2] > max(z):
            level = f"{p[2] - max(z):.0f} mm above {high.label}"
        else:
            level = f"beside {near.label}"
        midline = float(np.mean([v.centroid_lps[0] for v in self.vertebrae]))
        dx = p[0] - midline
        side = "" if abs(dx) <= NEAR_VERTEBRA_MM else \
            f", on the patient's {'LEFT' if dx > 0 else 'RIGHT'}"
        return f"not at a vertebra: {level}{side}"
