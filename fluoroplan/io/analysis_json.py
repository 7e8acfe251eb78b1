"""The JSON forms of what the analysis finds (``fluoroplan.analysis/1``, described by
``resources/analysis.schema.json``): a screw with its halo, a rod, a cage, a cross-link, cement,
other metal, all implants; a vertebra with its planes, pedicles and canal section.

Each ``*_json`` turns a :mod:`fluoroplan.model.implants` or :mod:`fluoroplan.model.anatomy`
object into a JSON-ready dict, and :func:`analysis_json` a whole analysis (what
:func:`fluoroplan.segmentation.analysis.analyze` returns) into the document; positions are
rounded to 0.01 mm and directions to 1e-4 (what the analysis file stores and the planner plans
from). Each ``*_from_json`` reads a stored object back into the model (from an analysis
document, or from a phantom's truth, which names some fields its own way).
"""

from __future__ import annotations

import numpy as np

from fluoroplan.io.jsonio import ANALYSIS_SCHEMA
from fluoroplan.model.anatomy import (
    CANAL_LABEL,
    FORAMEN_LABEL,
    ILIUM_LABEL,
    RIB_LABEL,
    CanalLevel,
    Pedicle,
    Plane,
    Vertebra,
)
from fluoroplan.model.findings import Findings
from fluoroplan.model.implants import (
    Cage,
    Cement,
    Connector,
    Halo,
    Implants,
    OtherMetal,
    Rod,
    Screw,
)

__all__ = [
    "analysis_json",
    "anatomy_json",
    "cement_from_json",
    "connector_from_json",
    "findings_from_json",
    "other_metal_from_json",
    "rod_from_json",
    "vertebra_from_json",
    "canal_level_json",
    "cage_from_json",
    "cage_json",
    "cement_json",
    "connector_json",
    "halo_json",
    "implants_json",
    "other_metal_json",
    "pedicle_from_json",
    "pedicle_json",
    "plane_from_json",
    "plane_json",
    "rod_json",
    "screw_from_json",
    "screw_json",
    "vertebra_json",
]


def _r(v, nd: int = 2) -> list[float]:
    return [round(float(x), nd) for x in np.asarray(v, float).ravel()]


def _f(v, nd: int = 2):
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


def _box(bbox) -> list[list[int]]:
    return [list(bbox[0]), list(bbox[1])]


# --- implants -------------------------------------------------------------------------------
def halo_json(h: Halo) -> dict:
    lo, hi = h.mask_bbox_ijk
    return {
        "median_mm": round(float(h.median_mm), 2), "max_mm": round(float(h.max_mm), 2),
        "from_mm": round(float(h.from_mm), 1), "to_mm": round(float(h.to_mm), 1),
        "in_bone_from_mm": round(float(h.in_bone_from_mm), 1),
        "in_bone_to_mm": round(float(h.in_bone_to_mm), 1),
        "loose": bool(h.loose), "bone_hu": round(float(h.bone_hu), 1),
        "threshold_hu": round(float(h.threshold_hu), 1),
        "volume_mm3": round(float(h.volume_mm3), 1),
        "mask_volume_mm3": round(float(h.mask_volume_mm3), 1),
        "blind_mm": round(float(h.blind_mm), 2),
        "mask_bbox_ijk": [list(lo), list(hi)],
    }


def screw_json(s: Screw) -> dict:
    return {
        "id": s.id, "level": s.level, "side": s.side,
        "tip_lps": _r(s.tip_lps), "head_lps": _r(s.head_lps),
        "axis_lps": _r(s.axis_lps, 4), "diameter_mm": round(float(s.diameter_mm), 2),
        "length_mm": round(float(s.length_mm), 1), "halo_mm": round(s.halo_mm, 2),
        "loose": s.loose, "halo": None if s.halo is None else halo_json(s.halo),
        "core_diameter_mm": round(float(s.core_diameter_mm), 2), "tulip": bool(s.tulip),
    }


def screw_from_json(d: dict) -> Screw:
    """A screw of an analysis document (or of a phantom's truth, which has the same fields) as
    the planner uses it: its shaft runs between the stored head and tip, so its axis and
    length follow from them (the stored ``axis_lps`` and ``length_mm`` are rounded copies);
    the halo is its stored summary (``halo_mm``, ``loose``) without the measurement behind it
    (``halo`` None: the file keeps no profile or voxel mask)."""
    head = np.asarray(d["head_lps"], float)
    tip = np.asarray(d["tip_lps"], float)
    shaft = tip - head
    length = float(np.linalg.norm(shaft))
    return Screw(
        id=str(d["id"]),
        level=str(d.get("level") or ""),
        side=str(d.get("side") or ""),
        tip_lps=tip,
        head_lps=head,
        axis_lps=shaft / length if length > 0 else shaft,
        diameter_mm=float(d["diameter_mm"]),
        length_mm=length,
        halo_mm=float(d.get("halo_mm") or 0.0),
        loose=bool(d.get("loose")),
        core_diameter_mm=float(d.get("core_diameter_mm") or 0.0),
        tulip=bool(d.get("tulip", False)),
        tulip_height_mm=_opt(d.get("tulip_height_mm")),
        tulip_diameter_mm=_opt(d.get("tulip_diameter_mm")),
    )


def _opt(x) -> float | None:
    return None if x is None else float(x)


def rod_json(r: Rod) -> dict:
    return {"side": r.side, "points_lps": [_r(p) for p in r.points_lps],
            "diameter_mm": round(float(r.diameter_mm), 2),
            "length_mm": round(r.length_mm, 1)}


def rod_from_json(d: dict) -> Rod:
    """A stored rod: its centreline (``points_lps``; ``polyline_lps`` in older files) and its
    diameter (5.5 mm, the common rod, when a file does not say)."""
    pts = d.get("points_lps") or d.get("polyline_lps") or []
    return Rod(side=str(d.get("side") or ""),
               points_lps=np.asarray(pts, float).reshape(-1, 3),
               diameter_mm=float(d.get("diameter_mm") or 5.5))


def cage_json(c: Cage) -> dict:
    return {"between": list(c.between), "center_lps": _r(c.center_lps),
            "extent_mm": _r(c.extent_mm, 1),
            "axes_lps": [_r(c.axes_lps[:, n], 4) for n in range(3)],
            "metal_volume_mm3": None if c.volume_mm3 is None else round(float(c.volume_mm3), 1)}


def cage_from_json(d: dict) -> Cage:
    """A cage of an analysis document (or of a phantom's truth) as the planner uses it: its
    stored centre, extents and axes (``axes_lps`` stores the axes one after the other)."""
    return Cage(
        between=tuple(d.get("between") or ("", "")),
        center_lps=np.asarray(d["center_lps"], float),
        extent_mm=np.asarray(d["extent_mm"], float),
        axes_lps=np.asarray(d["axes_lps"], float).reshape(-1, 3).T,
        volume_mm3=None if d.get("metal_volume_mm3") is None else float(d["metal_volume_mm3"]),
    )


def other_metal_json(o: OtherMetal) -> dict:
    return {"description": o.description, "center_lps": _r(o.center_lps),
            "extent_mm": _r(o.extent_mm, 1), "volume_mm3": round(float(o.volume_mm3), 1),
            "bbox_ijk": _box(o.bbox_ijk)}


def other_metal_from_json(d: dict) -> OtherMetal:
    return OtherMetal(description=str(d.get("description") or ""),
                      center_lps=np.asarray(d["center_lps"], float),
                      extent_mm=np.asarray(d.get("extent_mm") or [0.0, 0.0, 0.0], float),
                      volume_mm3=float(d.get("volume_mm3") or 0.0),
                      bbox_ijk=_box_from_json(d.get("bbox_ijk")))


def _box_from_json(box) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A stored half-open voxel box ``[[i0, j0, k0], [i1, j1, k1]]`` (empty when absent)."""
    (i0, j0, k0), (i1, j1, k1) = box or [[0, 0, 0], [0, 0, 0]]
    return (int(i0), int(j0), int(k0)), (int(i1), int(j1), int(k1))


def connector_json(c: Connector) -> dict:
    return {"kind": "cross-link", "between": list(c.between), "level": c.level,
            "center_lps": _r(c.center_lps), "ends_lps": [_r(p) for p in c.ends_lps],
            "axis_lps": _r(c.axis_lps, 4), "length_mm": round(float(c.length_mm), 1)}


def connector_from_json(d: dict) -> Connector:
    """A stored cross-link: its ends (its centre twice when a file keeps only the centre) and
    the levels it joins (``between``, else read from its ``level`` "L2-L3")."""
    center = np.asarray(d["center_lps"], float)
    ends = np.asarray(d.get("ends_lps") or [center, center], float).reshape(-1, 3)
    between = d.get("between") or str(d.get("level") or "").split("-")
    axis = np.asarray(d.get("axis_lps") or (ends[-1] - ends[0]), float)
    n = float(np.linalg.norm(axis))
    return Connector(between=(str(between[0]), str(between[1]) if len(between) > 1 else ""),
                     center_lps=center, ends_lps=ends,
                     axis_lps=axis / n if n > 0 else axis,
                     length_mm=float(d.get("length_mm") or np.linalg.norm(ends[-1] - ends[0])))


def cement_json(c: Cement) -> dict:
    return {"level": c.level, "screw": c.screw, "description": c.description,
            "center_lps": _r(c.center_lps), "extent_mm": _r(c.extent_mm, 1),
            "dense_volume_mm3": round(float(c.volume_mm3), 1),
            "bbox_ijk": _box(c.bbox_ijk)}


def cement_from_json(d: dict) -> Cement:
    """Stored cement: its dense volume (above the metal threshold) and its box; a phantom's
    truth gives its whole volume in ml and no box."""
    volume = d.get("dense_volume_mm3")
    if volume is None:
        volume = 1000.0 * float(d.get("volume_ml") or 0.0)
    return Cement(level=str(d.get("level") or ""), screw=str(d.get("screw") or ""),
                  center_lps=np.asarray(d["center_lps"], float),
                  extent_mm=np.asarray(d.get("extent_mm") or [0.0, 0.0, 0.0], float),
                  volume_mm3=float(volume), bbox_ijk=_box_from_json(d.get("bbox_ijk")))


def implants_json(imp: Implants) -> dict:
    """The implants' part of the analysis (and the metal threshold and warnings)."""
    return {
        "screws": [screw_json(s) for s in imp.screws],
        "rods": [rod_json(r) for r in imp.rods],
        "cages": [cage_json(c) for c in imp.cages],
        "other_metal": [other_metal_json(o) for o in imp.other],
        "connectors": [connector_json(c) for c in imp.connectors],
        "cement": [cement_json(c) for c in imp.cement],
        "threshold_hu": float(imp.threshold_hu),
        "warnings": list(imp.warnings),
    }


# --- anatomy --------------------------------------------------------------------------------
def plane_json(p: Plane | None) -> dict | None:
    return None if p is None else {"point_lps": _r(p.point_lps), "normal_lps": _r(p.normal_lps, 4)}


def pedicle_json(p: Pedicle | None) -> dict | None:
    if p is None:
        return None
    return {
        "side": p.side,
        "axis_point_lps": _r(p.axis_point_lps),
        "axis_dir_lps": _r(p.axis_dir_lps, 4),
        "narrowest_width_mm": round(float(p.narrowest_width_mm), 2),
        "height_mm": round(float(p.height_mm), 2),
    }


def plane_from_json(d: dict | None) -> Plane | None:
    """A stored plane (an endplate, the posterior wall), its normal made a unit vector; None
    for a missing one."""
    if not d:
        return None
    normal = np.asarray(d["normal_lps"], float)
    n = float(np.linalg.norm(normal))
    return Plane(np.asarray(d["point_lps"], float), normal / n if n > 0 else normal)


def pedicle_from_json(d: dict, side: str) -> Pedicle:
    """A pedicle of an analysis document (``narrowest_width_mm``) or of a phantom's truth
    (``width_mm``), its axis direction made a unit vector."""
    direction = np.asarray(d["axis_dir_lps"], float)
    n = float(np.linalg.norm(direction))
    width = d["narrowest_width_mm"] if "narrowest_width_mm" in d else d["width_mm"]
    return Pedicle(
        side=side,
        axis_point_lps=np.asarray(d["axis_point_lps"], float),
        axis_dir_lps=direction / n if n > 0 else direction,
        narrowest_width_mm=float(width),
        height_mm=float(d["height_mm"]),
    )


def canal_level_json(c: CanalLevel) -> dict:
    return {
        "area_mm2": round(float(c.area_mm2), 1),
        "width_mm": round(float(c.width_mm), 2),
        "depth_mm": round(float(c.depth_mm), 2),
        "narrowest_lps": [round(float(x), 2) for x in c.narrowest_lps],
        "closed": bool(c.closed),
    }


def vertebra_json(v: Vertebra) -> dict:
    """``label, label_confident, centroid_lps`` (whole vertebra), ``body_centroid_lps``,
    ``heights_mm, fracture_grade`` and the other measurements."""
    return {
        "label": v.label,
        "label_confident": bool(v.label_confident),
        "label_source": v.label_source,
        "index": int(v.index),
        "kind": v.kind,
        "complete": bool(v.complete),
        # the whole vertebra's centroid (body, arch and processes: what a vertebra label
        # map's centre of mass gives); the body's own centroid beside it
        "centroid_lps": _r(v.vertebra_centroid_lps),
        "body_centroid_lps": _r(v.centroid_lps),
        "axis_lps": _r(v.axis_lps, 4),
        "heights_mm": {k: _f(h) for k, h in v.heights_mm.items()},
        "expected_height_mm": _f(v.expected_height_mm),
        "height_loss": _f(v.height_loss, 3),
        "fracture_grade": v.fracture_grade,
        "superior_endplate": plane_json(v.superior_endplate),
        "inferior_endplate": plane_json(v.inferior_endplate),
        "posterior_wall": plane_json(v.posterior_wall),
        "pedicles": {
            "left": pedicle_json(v.pedicle_left),
            "right": pedicle_json(v.pedicle_right),
        },
        "canal": {
            "center_lps": None if v.canal_center_lps is None else _r(v.canal_center_lps),
            "radius_mm": _f(v.canal_radius_mm),
        },
        "rib_heads_lps": [_r(p) for p in np.asarray(v.rib_heads_lps).reshape(-1, 3)],
        "bbox_ijk": [list(map(int, v.bbox_ijk[0])), list(map(int, v.bbox_ijk[1]))],
        "volume_ml": round(float(v.volume_ml), 2),
    }


def anatomy_json(anatomy) -> dict:
    """Vertebrae (each with its canal's narrowest section once the lumen is known), the
    canal's centreline (refined by the lumen when it is known) and its label values, the pelvis,
    the ribs' levels, the warnings. ``anatomy``: a
    :class:`fluoroplan.segmentation.anatomy.Anatomy`."""
    doc: dict = {
        "vertebrae": [{**vertebra_json(v), "label_value": int(v.label_value)}
                      for v in anatomy.vertebrae],
        "canal": {
            "centerline_lps": [[round(float(c), 2) for c in p]
                               for p in anatomy.canal_centerline_lps],
        },
        "warnings": list(anatomy.warnings),
    }
    canal = anatomy.canal
    if canal is not None:
        for v in doc["vertebrae"]:
            lvl = canal.levels.get(v["index"])
            block = dict(v.get("canal") or {})
            block.pop("radius_mm", None)  # a fitted circle is no canal size: the section's own
            if lvl is not None:
                block.update(canal_level_json(lvl))
            v["canal"] = block
        doc["canal"] = {
            "label_value": CANAL_LABEL,
            "foramen_label_value": FORAMEN_LABEL,
            "centerline_lps": [[round(float(c), 2) for c in p] for p in canal.centerline_lps],
        }
    else:
        for v in doc["vertebrae"]:
            (v.get("canal") or {}).pop("radius_mm", None)
    bones = anatomy.other_bones
    if bones is not None:
        doc["pelvis"] = {"label_value": ILIUM_LABEL, **bones.pelvis}
        doc["ribs"] = {"label_value": RIB_LABEL, "levels": bones.rib_levels}
    return doc


def analysis_json(analysis) -> dict:
    """The ``fluoroplan.analysis/1`` document (what ``fluoroplan analyze`` writes) of a
    :class:`fluoroplan.segmentation.analysis.Analysis`."""
    imp = implants_json(analysis.implants)
    anat = anatomy_json(analysis.anatomy)
    return {
        "schema": ANALYSIS_SCHEMA,
        "series": analysis.volume.series_json(),
        "vertebrae": anat["vertebrae"],
        "screws": imp["screws"],
        "rods": imp["rods"],
        "cages": imp["cages"],
        "other_metal": imp["other_metal"],
        "connectors": imp["connectors"],
        "cement": imp["cement"],
        "canal": anat["canal"],
        **{k: anat[k] for k in ("pelvis", "ribs") if k in anat},
        "metal_threshold_hu": imp["threshold_hu"],
        "warnings": analysis.warnings,
        "notes": list(analysis.volume.notes),
        "timings_s": {k: round(float(v), 3) for k, v in analysis.timings_s.items()},
    }


def vertebra_from_json(d: dict) -> Vertebra:
    """A stored vertebra: of an analysis document (``body_centroid_lps`` the body's centroid,
    ``centroid_lps`` the whole vertebra's, ``axis_lps`` cranial, the canal as ``canal``, rib
    heads as a list) or of a phantom's truth (``centroid_lps`` the body's, ``axes_lps`` the rows
    left, posterior, cranial, ``body_mm`` its size, ``canal_center_lps``, rib heads by side): the truth's frame is
    kept as drawn (``left_lps`` set).
    An analysis stores no posterior direction: it is the patient's posterior (LPS +y) made
    perpendicular to the body axis."""
    body_c = np.asarray(d.get("body_centroid_lps", d["centroid_lps"]), float)
    whole_c = np.asarray(d["centroid_lps"], float)
    left = None
    if "axes_lps" in d:
        ax = np.asarray(d["axes_lps"], float)
        left, post, cran = _unit(ax[0]), _unit(ax[1]), _unit(ax[2])
    else:
        cran = _unit(d.get("axis_lps") or [0.0, 0.0, 1.0])
        post = _unit(d.get("posterior_lps") or [0.0, 1.0, 0.0])
    body = d.get("body_mm") or {}
    peds = d.get("pedicles") or {}
    canal = d.get("canal") or {}
    centre = d.get("canal_center_lps", canal.get("center_lps"))
    ribs = d.get("rib_heads_lps") or []
    if isinstance(ribs, dict):
        ribs = [p for p in ribs.values() if p is not None]
    grade = d.get("fracture_grade")
    return Vertebra(
        label=str(d["label"]),
        label_confident=bool(d.get("label_confident", True)),
        label_source=str(d.get("label_source") or "file"),
        index=int(d.get("index") or 0),
        label_value=int(d.get("label_value") or 0),
        kind=str(d.get("kind") or "vertebra"),
        complete=bool(d.get("complete", True)),
        centroid_lps=body_c,
        vertebra_centroid_lps=whole_c,
        axis_lps=cran,
        posterior_lps=post,
        superior_endplate=plane_from_json(d.get("superior_endplate")),
        inferior_endplate=plane_from_json(d.get("inferior_endplate")),
        posterior_wall=plane_from_json(d.get("posterior_wall")),
        heights_mm=dict(d.get("heights_mm") or {}),
        expected_height_mm=_opt(d.get("expected_height_mm")),
        height_loss=_opt(d.get("height_loss", d.get("height_loss_fraction"))),
        fracture_grade=None if grade is None else int(grade),
        pedicle_left=pedicle_from_json(peds["left"], "left") if peds.get("left") else None,
        pedicle_right=pedicle_from_json(peds["right"], "right") if peds.get("right") else None,
        canal_center_lps=None if centre is None else np.asarray(centre, float),
        canal_radius_mm=_opt(canal.get("radius_mm")),
        rib_heads_lps=np.asarray(ribs, float).reshape(-1, 3),
        bbox_ijk=_box_from_json(d.get("bbox_ijk")),
        volume_ml=float(d.get("volume_ml") or 0.0),
        body_width_mm=_opt(body.get("width")),
        body_depth_mm=_opt(body.get("depth")),
        left_lps=left,
    )


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def findings_from_json(doc: dict) -> Findings:
    """The model of what an analysis document (or a phantom's truth: its cross-links are
    ``crosslinks``) holds."""
    return Findings(
        vertebrae=tuple(vertebra_from_json(v) for v in doc.get("vertebrae", [])),
        screws=tuple(screw_from_json(s) for s in doc.get("screws", [])),
        rods=tuple(rod_from_json(r) for r in doc.get("rods", [])),
        cages=tuple(cage_from_json(c) for c in doc.get("cages", [])),
        connectors=tuple(connector_from_json(c) for c in
                         list(doc.get("connectors", [])) + list(doc.get("crosslinks", []))),
        other_metal=tuple(other_metal_from_json(o) for o in doc.get("other_metal", [])),
        cement=tuple(cement_from_json(c) for c in doc.get("cement", [])),
        warnings=tuple(str(w) for w in doc.get("warnings", [])),
    )
