"""Steps 5-6 of the analysis: each separated body's measurements assembled into a
:class:`~fluoroplan.segmentation.vertebrae.Vertebra`, graded against its neighbours (with the
warnings that say why a body is not graded), and the levels labelled from an anchor (the sacrum,
the last rib-bearing vertebra) or numbered V1..Vn."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fluoroplan.model.anatomy import Vertebra
from fluoroplan.segmentation import levels as lv
from fluoroplan.segmentation.anatomy.separation import _Separation
from fluoroplan.segmentation.vertebrae import grade_bounds, grade_heights


def _assemble(found: list[dict], sep: _Separation, mm_to_lps, warnings: list[str],
              height_uncertainty_mm: float = 0.5) -> list[Vertebra]:
    nan = float("nan")
    hmax_mm: list[float] = []
    for item in found:
        m = item["meas"]
        if m is None or not item["b"]["complete"] or item["b"]["kind"] != "vertebra":
            hmax_mm.append(nan)
        else:
            hs = [m.heights_mm[k] for k in ("anterior", "middle", "posterior")]
            hmax_mm.append(max(hs) if all(np.isfinite(hs)) else nan)
    hmax = np.asarray(hmax_mm)
    verts = []
    for n, item in enumerate(found):
        b, m = item["b"], item["meas"]
        neigh = [hmax[j] for j in range(max(0, n - 2), min(len(found), n + 3)) if j != n]
        neigh = [h for h in neigh if np.isfinite(h)]
        expected = float(np.median(neigh)) if neigh else None
        heights = dict(m.heights_mm) if m is not None else {"anterior": nan, "middle": nan, "posterior": nan}
        loss = grade = None
        if m is not None and b["complete"] and not b.get("split", False):
            loss, grade, why = grade_heights(heights, expected)
            if why is not None:
                warnings.append(f"Vertebra {n + 1} from the top: {why}.")
            bounds = grade_bounds(heights, expected, height_uncertainty_mm) if grade is not None else None
            # said when it matters: a graded body, or one that may be a grade 2 or 3
            if (grade is not None and bounds is not None and bounds[0] != bounds[1]
                    and max(grade, bounds[1] - 1) >= 1):
                assert loss is not None  # a grade is given to a height loss only
                warnings.append(
                    f"Vertebra {n + 1} from the top: graded {grade} from a {100 * loss:.0f} % "
                    f"height loss, but heights read to +-{height_uncertainty_mm:.1f} mm on this "
                    f"CT allow grade {bounds[0]} to {bounds[1]}: check it on the sagittal view."
                )
            moved = [f"its {name} height at {100 * f:.0f} %" for name, f in m.heights_at.items()
                     if np.isfinite(heights.get(name, np.nan))]
            if moved:
                warnings.append(
                    f"Vertebra {n + 1} from the top: no endplate at the rim (osteophytes or "
                    f"bone bridging the disc's margin), so {' and '.join(moved)} of the "
                    "body's depth from the front is read; a wedge reads a little milder there."
                )
        elif b.get("split", False):
            warnings.append(
                f"Vertebra {n + 1} from the top was separated at the expected level, not at a "
                "visible disc: its heights are approximate and it is not graded."
            )
        value = n + 1
        heads = sep.rib_heads.get(value)
        heads_lps = np.array([mm_to_lps(p) for p in heads]) if heads is not None else np.zeros((0, 3))
        verts.append(
            Vertebra(
                label=lv.generic_label(n),
                label_confident=False,
                label_source=lv.SOURCE_NONE,
                index=n,
                label_value=value,
                kind=b["kind"],
                complete=b["complete"],
                centroid_lps=np.asarray(item["centroid"], float),
                vertebra_centroid_lps=np.asarray(item["vcent"], float),
                axis_lps=m.axis_lps if m is not None else _unit(mm_to_lps(b["center_mm"] + b["axis_mm"]) - mm_to_lps(b["center_mm"])),
                posterior_lps=m.posterior_lps if m is not None else _unit(mm_to_lps(b["center_mm"] + b["posterior_mm"]) - mm_to_lps(b["center_mm"])),
                superior_endplate=m.superior_endplate if m is not None else None,
                inferior_endplate=m.inferior_endplate if m is not None else None,
                posterior_wall=m.posterior_wall if m is not None else None,
                heights_mm=heights,
                expected_height_mm=expected,
                height_loss=loss,
                fracture_grade=grade,
                pedicle_left=m.pedicle_left if m is not None else None,
                pedicle_right=m.pedicle_right if m is not None else None,
                canal_center_lps=np.asarray(item["canal_c"], float),
                canal_radius_mm=float(b["canal_radius_mm"]),
                rib_heads_lps=heads_lps,
                bbox_ijk=item["bbox"],
                volume_ml=item["volume_ml"],
            )
        )
        if b.get("arch_only", False):
            warnings.append(
                f"Vertebra {n + 1} from the top is cut by the top of the scan: only part of its "
                "posterior arch is in view, so it is not measured."
            )
        elif b["kind"] == "vertebra" and m is None:
            warnings.append(f"Vertebra {n + 1} from the top could not be measured (body not found).")
    return verts


def _unit(v):
    v = np.asarray(v, float)
    return v / max(np.linalg.norm(v), 1e-9)


def _auto_labels(verts: list[Vertebra], levels: str | None, warnings: list[str]) -> list[Vertebra]:
    if not verts:
        return verts
    if levels:
        first = next((n for n, v in enumerate(verts) if v.complete), 0)
        return lv.apply_labels(verts, first, lv.normalize_level(levels), lv.SOURCE_USER, True)
    sacrum_pos = len(verts) - 1 if verts[-1].kind == "sacrum" else None
    rib_pos = None
    ribbed = [n for n, v in enumerate(verts) if v.kind == "vertebra" and v.has_ribs]
    if ribbed:
        last = ribbed[-1]
        below = [v for v in verts[last + 1 :] if v.kind == "vertebra"]
        # the thoracic cage is continuous: every complete vertebra above the last rib-bearing
        # one must bear ribs too, else the rib pattern (missed ribs, false ones) is no anchor
        above_ok = all(v.has_ribs for v in verts[:last] if v.kind == "vertebra" and v.complete)
        if below and not any(v.has_ribs for v in below) and above_ok:
            rib_pos = last
        elif below and not above_ok:
            warnings.append(
                "Ribs were found on some thoracic vertebrae but not on others above the last "
                "rib-bearing one, so the last rib cannot anchor the levels."
            )
    if sacrum_pos is not None and rib_pos is not None:
        if sacrum_pos - rib_pos != lv.level_index("S1") - lv.level_index("T12"):
            warnings.append(
                f"The sacrum and the last rib disagree on the levels ({sacrum_pos - rib_pos - 1} "
                "lumbar vertebrae between them instead of 5): a transitional vertebra or a "
                "missing/extra rib. Levels are counted from the sacrum; please confirm them."
            )
            return lv.apply_labels(verts, sacrum_pos, "S1", lv.SOURCE_SACRUM, False)
        return lv.apply_labels(verts, sacrum_pos, "S1", lv.SOURCE_SACRUM, True)
    if sacrum_pos is not None:
        return lv.apply_labels(verts, sacrum_pos, "S1", lv.SOURCE_SACRUM, True)
    if rib_pos is not None:
        return lv.apply_labels(verts, rib_pos, "T12", lv.SOURCE_LAST_RIB, True)
    return [
        replace(v, label=lv.generic_label(n), label_confident=False, label_source=lv.SOURCE_NONE)
        for n, v in enumerate(verts)
    ]
