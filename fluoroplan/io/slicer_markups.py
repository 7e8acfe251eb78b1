"""3D Slicer markups (``.mrk.json``) of a plan: one Line per trajectory and per screw axis, one
Fiducial list holding the targets.

Follows Slicer's markups JSON schema v1.0.3. Slicer's scene is RAS, so points are written in
RAS (``coordinateSystem: "RAS"``); fluoroplan works in LPS and converts here, at the file
boundary only: ``ras = (-x, -y, z)`` of ``lps = (x, y, z)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fluoroplan.io.jsonio import write_json_atomic

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
    "Resources/Schema/markups-schema-v1.0.3.json#"
)
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])

STATUS_COLOUR = {"pass": [0.2, 0.8, 0.2], "warn": [1.0, 0.65, 0.0], "unknown": [0.45, 0.6, 1.0],
                 "fail": [0.9, 0.1, 0.1]}
SCREW_COLOUR = [0.55, 0.7, 1.0]
LOOSE_SCREW_COLOUR = [1.0, 0.35, 0.9]
TARGET_COLOUR = [1.0, 0.25, 0.25]


def ras_from_lps(p_lps) -> list[float]:
    """One point, LPS mm -> RAS mm (a list of 3 floats, rounded to 1 um)."""
    return [round(float(v), 3) + 0.0 for v in RAS_FROM_LPS @ np.asarray(p_lps, float)]


def _point(n: int, label: str, p_lps, description: str = "") -> dict:
    return {
        "id": str(n),
        "label": label,
        "description": description,
        "associatedNodeID": "",
        "position": ras_from_lps(p_lps),
        "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
        "selected": True,
        "locked": True,
        "visibility": True,
        "positionStatus": "defined",
    }


def _display(colour: list[float], line_thickness: float = 0.2) -> dict:
    return {
        "visibility": True,
        "opacity": 1.0,
        "color": colour,
        "selectedColor": colour,
        "activeColor": [0.4, 1.0, 0.0],
        "propertiesLabelVisibility": True,
        "pointLabelsVisibility": True,
        "textScale": 3.0,
        "glyphType": "Sphere3D",
        "glyphScale": 1.0,
        "glyphSize": 2.0,
        "useGlyphScale": False,
        "sliceProjection": True,
        "lineThickness": line_thickness,
    }


def _node(kind: str, name: str, points: list[dict], colour: list[float],
          measurements: list[dict] | None = None, line_thickness: float = 0.2) -> dict:
    return {
        "type": kind,
        "name": name,
        "coordinateSystem": "RAS",
        "coordinateUnits": "mm",
        "locked": True,
        "fixedNumberOfControlPoints": kind == "Line",
        "labelFormat": "%N-%d",
        "lastUsedControlPointNumber": len(points),
        "controlPoints": points,
        "measurements": measurements or [],
        "display": _display(colour, line_thickness),
    }


def _length(value_mm: float, what: str) -> dict:
    return {"name": "length", "enabled": True, "value": round(float(value_mm), 2),
            "units": "mm", "description": what, "printFormat": "%-#4.4gmm"}


def markups_document(plan) -> dict:
    """The markups JSON of a plan (a :class:`~fluoroplan.model.plan.Plan`)."""
    nodes = []
    for n, t in enumerate(plan.trajectories, start=1):
        name = f"T{n} {t.id}"
        end, end_label = t.aim_lps, ("contact" if t.contact_lps is not None else "target")
        desc = (f"{t.level} {t.side} {t.approach} for {t.target.id}; {t.status}; depth "
                f"{t.depth_mm:.1f} mm with a {t.needle.length_mm:.0f} mm {t.needle.gauge}-gauge "
                "needle" + (f"; then a {t.slide_mm:.1f} mm slide along the screw to the target"
                            if t.contact_lps is not None else "")
                + ("; edited by hand" if t.edited else ""))
        pts = [_point(1, f"{name} entry", t.entry_lps, desc),
               _point(2, f"{name} {end_label}", end, desc)]
        nodes.append(_node("Line", name, pts, STATUS_COLOUR.get(t.status, [1, 1, 0]),
                           [_length(t.insertion_mm, "straight insertion, entry to "
                                    + end_label)], line_thickness=0.3))
    for s in plan.analysis.get("screws", []):
        halo = s.get("halo_mm")
        desc = (f"screw {s['id']} ({s.get('level', '')} {s.get('side', '')}), "
                f"{float(s['diameter_mm']):.1f} mm"
                + (f", halo {float(halo):.1f} mm" if halo is not None else "")
                + (", LOOSE" if s.get("loose") else ""))
        pts = [_point(1, f"{s['id']} head", s["head_lps"], desc),
               _point(2, f"{s['id']} tip", s["tip_lps"], desc)]
        length = float(np.linalg.norm(np.subtract(s["tip_lps"], s["head_lps"])))
        nodes.append(_node("Line", f"screw {s['id']}", pts,
                           LOOSE_SCREW_COLOUR if s.get("loose") else SCREW_COLOUR,
                           [_length(length, "screw axis, head to tip")], line_thickness=0.5))
    if plan.targets:
        pts = [_point(n, t.id, t.point_lps, t.description)
               for n, t in enumerate(plan.targets, start=1)]
        nodes.append(_node("Fiducial", "targets", pts, TARGET_COLOUR))
    return {"@schema": MARKUPS_SCHEMA, "markups": nodes}


def write_markups(plan, path: str | os.PathLike) -> Path:
    """Write the plan's markups to ``path`` (``.mrk.json``), atomically."""
    return write_json_atomic(path, markups_document(plan))
