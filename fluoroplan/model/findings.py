"""What the analysis of a CT found, as one object: the vertebrae and every implant
(:class:`Findings`). The planner, the workstation and the report use it; an analysis file or a
phantom's truth is read into it by :func:`fluoroplan.io.analysis_json.findings_from_json`."""

from __future__ import annotations

from dataclasses import dataclass

from fluoroplan.model.anatomy import Vertebra
from fluoroplan.model.implants import Cage, Cement, Connector, OtherMetal, Rod, Screw


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

