"""The spinal canal's lumen as voxels, against the lumen the phantom drew (Phantom.structures)
and the holes the TotalSegmentator vertebra labels enclose on a real abdomen CT."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import shared_data
from phantom_fixtures import full_phantom, small_phantom
from scipy import ndimage as ndi

from fluoroplan.io.analysis_json import canal_level_json
from fluoroplan.resources.phantom import STRUCTURE_CODES
from fluoroplan.segmentation.anatomy import analyze_anatomy
from fluoroplan.segmentation.canal import Canal, segment_canal
from fluoroplan.segmentation.errors import AnatomyError

CASES = {
    "default": ("full", {}),
    "hfs": ("full", {"patient_position": "HFS"}),
    "seed3-instrumented": ("full", {"seed": 3, "instrumented": ("L2", "L3", "L4"),
                                    "loose_screw": "L3-right", "fracture_level": "L1",
                                    "cage": ("L3", "L4")}),
    "1.5mm": ("small", {}),
}


@functools.lru_cache(maxsize=4)
def _case(name: str):
    kind, kw = CASES[name]
    kw = dict(kw)
    seed = kw.pop("seed", 0)
    ph = (full_phantom if kind == "full" else small_phantom)(seed, **kw)
    vol = ph.volume
    an = analyze_anatomy(vol)
    return ph, an, segment_canal(vol, vol.hu >= 2000, an)


def _on_grid(canal: Canal, shape, which: str = "lumen") -> np.ndarray:
    out = np.zeros(shape, bool)
    out[canal.box] = getattr(canal, which)
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def _vertebra_span(an):
    k0 = min(v.bbox_ijk[0][2] for v in an.vertebrae)
    k1 = max(v.bbox_ijk[1][2] for v in an.vertebrae)
    return slice(k0, k1)


def _section_frame(canal: Canal, point: np.ndarray):
    cl = canal.centerline_lps
    i = int(np.argmin(np.linalg.norm(cl - point, axis=1)))
    t = cl[min(i + 3, len(cl) - 1)] - cl[max(i - 3, 0)]
    t = t / np.linalg.norm(t)
    e1 = np.array([1.0, 0.0, 0.0]) - t[0] * t
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(t, e1)
    return e1, e2 * np.sign(e2[1])


def _drawn_extent(vol, drawn: np.ndarray, canal: Canal, level) -> tuple[float, float]:
    """Left-right and antero-posterior extent of the drawn lumen on the level's narrowest
    section (the same plane the segmentation measured)."""
    e1, e2 = _section_frame(canal, level.narrowest_lps)
    g = np.arange(-25.0, 25.01, 0.25)
    X, Y = np.meshgrid(g, g, indexing="ij")
    pts = level.narrowest_lps + X[..., None] * e1 + Y[..., None] * e2
    ijk = vol.ijk_from_lps_points(pts.reshape(-1, 3))
    m = ndi.map_coordinates(drawn.astype(np.float32), ijk[:, ::-1].T, order=1).reshape(X.shape)
    lab, _ = ndi.label(m >= 0.5)
    m = lab == lab[len(g) // 2, len(g) // 2]
    assert m.any(), "the drawn lumen is not at the section's centre"
    return float(np.ptp(X[m]) + 0.25), float(np.ptp(Y[m]) + 0.25)


@pytest.mark.parametrize("name", list(CASES))
def test_lumen_matches_the_drawn_lumen(name):
    """Dice with what the phantom painted as the canal's fluid, over the vertebrae's span.
    (The rest is epidural fat inside the bony ring, which the phantom does not paint as lumen:
    the bony canal includes it.)"""
    ph, an, canal = _case(name)
    mine = _on_grid(canal, ph.volume.hu.shape)
    drawn = ph.structures == STRUCTURE_CODES["canal"]
    span = _vertebra_span(an)
    d = _dice(mine[span], drawn[span])
    assert d >= 0.85, (name, d)
    # cranial to caudal, about 1 mm apart, through the lumen
    cl = canal.centerline_lps
    assert cl[0, 2] > cl[-1, 2]
    step = np.linalg.norm(np.diff(cl, axis=0), axis=1)
    assert 0.8 < np.median(step) < 1.2
    ijk = np.rint(ph.volume.ijk_from_lps_points(cl)).astype(int)
    assert mine[ijk[:, 2], ijk[:, 1], ijk[:, 0]].mean() > 0.99


@pytest.mark.parametrize("name", ["default", "seed3-instrumented", "1.5mm"])
def test_level_sizes_match_the_drawn_lumen_at_their_section(name):
    ph, an, canal = _case(name)
    drawn = ph.structures == STRUCTURE_CODES["canal"]
    labels = [v.label for v in an.vertebrae]
    assert set(canal.levels) == set(labels)
    dw, dd = [], []
    for lab in labels:
        lv = canal.levels[lab]
        assert lv.closed, lab
        w, d = _drawn_extent(ph.volume, drawn, canal, lv)
        dw.append(lv.width_mm - w)
        dd.append(lv.depth_mm - d)
        # the width may take in epidural fat at the body's back corners (inside the bony
        # ring, outside the drawn fluid), never more than 2.5 mm
        assert abs(lv.width_mm - w) <= 2.5 and abs(lv.depth_mm - d) <= 1.5, (lab, lv, w, d)
    assert np.median(np.abs(dw)) <= 1.5 and np.median(np.abs(dd)) <= 1.0, (dw, dd)


def test_the_lumen_is_no_circle():
    """Lumbar sections are wider than deep; the segmented area is the section's, not that of a
    circle of radius min(width, depth) / 2 (the former stand-in)."""
    ph, an, canal = _case("default")
    for lab in ("L2", "L3", "L4"):
        lv = canal.levels[lab]
        assert lv.width_mm - lv.depth_mm >= 3.0, (lab, lv.width_mm, lv.depth_mm)
        circle = np.pi * (min(lv.width_mm, lv.depth_mm) / 2) ** 2
        assert lv.area_mm2 >= 1.15 * circle, (lab, lv.area_mm2, circle)
    # and the voxels: the drawn lumen beyond a circle of radius min(w, d)/2 about the
    # centreline (a seventh of it: the lateral parts) is in the mask
    from scipy.spatial import cKDTree

    vol = ph.volume
    drawn = ph.structures == STRUCTURE_CODES["canal"]
    span = _vertebra_span(an)
    cl = canal.centerline_lps
    at = [int(np.argmin(np.linalg.norm(cl - lv.narrowest_lps, axis=1)))
          for lv in canal.levels.values()]
    r_at = np.interp(np.arange(len(cl)), at,
                     [min(lv.width_mm, lv.depth_mm) / 2 for lv in canal.levels.values()])
    kji = np.argwhere(drawn[span])
    kji[:, 0] += span.start
    dist, idx = cKDTree(cl).query(vol.lps_from_ijk_points(kji[:, ::-1]))
    beyond = kji[dist > r_at[idx] + 0.5]
    assert len(beyond) >= 0.1 * len(kji), (len(beyond), len(kji))
    mine = _on_grid(canal, vol.hu.shape)
    covered = mine[beyond[:, 0], beyond[:, 1], beyond[:, 2]].mean()
    assert covered >= 0.75, covered


def test_foramina_beside_the_lumbar_canal():
    ph, an, canal = _case("default")
    vol = ph.volume
    fo = _on_grid(canal, vol.hu.shape, "foramina")
    lumen = _on_grid(canal, vol.hu.shape)
    assert fo.any() and not (fo & lumen).any()
    assert (vol.hu[fo] < 200).all()
    in_bone = (fo & (ph.labels > 0)).sum() / fo.sum()
    assert in_bone < 0.03, in_bone  # soft tissue (the odd cancellous voxel below 200 HU)
    pts = vol.lps_from_ijk_points(np.argwhere(fo)[:, ::-1])
    # both sides, beside the canal (not in front of or behind it)
    for lab in ("L1", "L2", "L3"):
        v = an.vertebra(lab)
        near = np.abs(pts[:, 2] - v.centroid_lps[2]) < 25.0
        x = pts[near, 0] - canal.levels[lab].narrowest_lps[0]
        half = canal.levels[lab].width_mm / 2
        assert (x > half - 1.0).sum() > 50 and (x < -half + 1.0).sum() > 50, lab
    # none at thoracic levels
    t12 = an.vertebra("T12")
    assert not (pts[:, 2] > t12.centroid_lps[2]).any()


def test_no_prior_is_an_anatomy_error():
    ph, an, _ = _case("1.5mm")
    from dataclasses import replace

    with pytest.raises(AnatomyError, match="spinal canal"):
        segment_canal(ph.volume, None, replace(an, canal_centerline_lps=np.zeros((0, 3))))


def test_level_json_is_rounded():
    _, _, canal = _case("1.5mm")
    j = canal_level_json(canal.levels["L3"])
    assert set(j) == {"area_mm2", "width_mm", "depth_mm", "narrowest_lps", "closed"}
    assert isinstance(j["closed"], bool) and len(j["narrowest_lps"]) == 3


def test_structure_labels_are_no_vertebra_for_implants():
    """A screw tip in the canal (label 253) or a point on a rib, foramen, ilium has no level;
    the sacrum below S1 keeps its value."""
    from fluoroplan.io.volume import CTVolume
    from fluoroplan.model import anatomy as st
    from fluoroplan.segmentation.implants import _Labels
    from fluoroplan.segmentation.vertebrae import SACRUM_BELOW_S1

    vals = [0, 3, st.RIB_LABEL, st.ILIUM_LABEL, st.FORAMEN_LABEL, st.CANAL_LABEL, SACRUM_BELOW_S1]
    lab = np.array(vals, np.uint8).reshape(1, 1, -1)
    vol = CTVolume(np.zeros(lab.shape, np.int16), np.eye(4))
    names = {3: "L3", SACRUM_BELOW_S1: "sacrum"}
    labels = _Labels(vol, lab, names)
    got = labels.at(np.array([[i, 0.0, 0.0] for i in range(len(vals))]))
    assert got.tolist() == [0, 3, 0, 0, 0, 0, SACRUM_BELOW_S1]
    assert labels.name(st.CANAL_LABEL) == "" and labels.name(3) == "L3"
    assert labels.name(SACRUM_BELOW_S1) == "sacrum"


# --------------------------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_abdomen_canal_agrees_with_the_holes_the_vertebra_labels_enclose():
    """Reference lumen: per axial slice, the hole a TotalSegmentator vertebra label encloses,
    on the slices where that arch is closed. Lumbar sizes within adult norms."""
    import nibabel as nib

    from fluoroplan.io import load_ct

    folder = shared_data("totalseg-abdomen-ct")
    vol = load_ct(folder / "ct.nii.gz")
    ref_labels = np.ascontiguousarray(
        np.asarray(nib.load(str(folder / "labels_totalseg.nii.gz")).dataobj).transpose(2, 1, 0))
    assert ref_labels.shape == vol.hu.shape
    an = analyze_anatomy(vol)
    canal = segment_canal(vol, vol.hu >= 2500, an)
    mine = _on_grid(canal, vol.hu.shape)
    ref = np.zeros_like(mine)
    closed = np.zeros(len(mine), bool)
    for value in range(26, 34):  # S1 .. T11
        m = ref_labels == value
        for k in np.nonzero(m.any(axis=(1, 2)))[0]:
            hole = ndi.binary_fill_holes(m[k]) & ~m[k]
            lab, n = ndi.label(hole)
            if n == 0:
                continue
            sizes = ndi.sum(hole, lab, range(1, n + 1))
            if sizes.max() >= 5:
                ref[k] |= lab == 1 + int(np.argmax(sizes))
                closed[k] = True
    assert closed.sum() >= 5
    d = _dice(mine[closed], ref[closed])
    assert d >= 0.8, d
    for lab in ("L1", "L2", "L3", "L4", "L5"):
        lv = canal.levels[lab]
        assert 13.0 <= lv.depth_mm <= 22.0, (lab, lv)
        assert 18.0 <= lv.width_mm <= 28.0, (lab, lv)
    # the canal is followed into the sacrum, below the L5-S1 disc
    l5 = an.vertebra("L5")
    assert canal.centerline_lps[-1, 2] < l5.inferior_endplate.point_lps[2] - 15.0
