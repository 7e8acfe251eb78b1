"""Ilia and ribs beside the column (segmentation.bones) against what the phantom drew and on
the real scans in ../shared/data (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest
from phantom_fixtures import small_phantom

from fluoroplan.geometry.conventions import TITANIUM_MIN_HU
from fluoroplan.resources.phantom import STRUCTURE_CODES, make_phantom
from fluoroplan.segmentation.anatomy import analyze_anatomy
from fluoroplan.segmentation.bones import find_other_bones

PELVIS_LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5")


def _full(ob, shape, name):
    out = np.zeros(shape, bool)
    out[ob.box] = getattr(ob, name)
    return out


def _dice(a, b) -> float:
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def _run(ph):
    an = analyze_anatomy(ph.volume, metal_mask=ph.metal)
    return an, find_other_bones(ph.volume, ph.metal, an)


def test_default_phantom_ribs_and_no_ilium():
    ph = small_phantom()
    an, ob = _run(ph)
    shape = ph.volume.hu.shape
    ribs, ilium = _full(ob, shape, "ribs"), _full(ob, shape, "ilium")
    assert not ilium.any() and ob.pelvis["found"] is False
    inbox = np.zeros(shape, bool)
    inbox[ob.box] = True
    truth = (ph.structures == STRUCTURE_CODES["rib"]) & inbox
    assert _dice(ribs, truth) >= 0.7, _dice(ribs, truth)
    assert not (ribs & (ph.labels > 0)).any() and not (ribs & ph.metal).any()
    assert ob.rib_levels == {"T11": ["left", "right"], "T12": ["left", "right"]}
    # nothing labelled rib below T12
    t12 = an.vertebra("T12")
    k, j, i = np.nonzero(ribs)
    z = ph.volume.lps_from_ijk_points(np.c_[i, j, k].astype(float))[:, 2]
    assert z.min() > t12.centroid_lps[2] - 35.0


def test_pelvis_phantom_ilia():
    ph = small_phantom(levels=PELVIS_LEVELS, fracture_level=None, pelvis=True)
    _, ob = _run(ph)
    shape = ph.volume.hu.shape
    ilium = _full(ob, shape, "ilium")
    truth = ph.structures == STRUCTURE_CODES["ilium"]
    assert truth.sum() > 0
    assert _dice(ilium, truth) >= 0.8, _dice(ilium, truth)
    assert not (ilium & (ph.labels > 0)).any()
    assert ob.pelvis["found"] and ob.pelvis["left"] and ob.pelvis["right"]
    for side, s in (("left", 1.0), ("right", -1.0)):
        got = ob.pelvis[side]
        want = ph.truth["pelvis"][side]
        assert s * got["crest_top_lps"][0] > 60.0
        assert abs(got["crest_top_lps"][2] - want["crest_top_lps"][2]) < 6.0
        assert np.linalg.norm(np.subtract(got["posterior_superior_iliac_spine_lps"][:2],
                                          want["posterior_superior_iliac_spine_lps"][:2])) < 10.0
    # the ribs of T12 stay ribs, not ilium
    assert "T12" in ob.rib_levels


def test_pelvis_needs_l5():
    with pytest.raises(ValueError, match="must end at 'L5'"):
        make_phantom(0, pelvis=True)


# --- real scans ---------------------------------------------------------------------------------
def _read_nifti(path):
    import SimpleITK as sitk

    from fluoroplan.io.volume import CTVolume

    im = sitk.ReadImage(str(path))
    a = np.clip(sitk.GetArrayFromImage(im), -1024, 3071).astype(np.int16)
    A = np.eye(4)
    A[:3, :3] = np.array(im.GetDirection()).reshape(3, 3) * np.array(im.GetSpacing())
    A[:3, 3] = im.GetOrigin()
    return CTVolume(a, A)


@pytest.mark.realdata
def test_abdomen_ct_both_ilia_not_on_vertebrae_nor_femoral_heads():
    import SimpleITK as sitk
    from conftest import shared_data

    vol = _read_nifti(shared_data("totalseg-abdomen-ct", "ct.nii.gz"))
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data("totalseg-abdomen-ct",
                                                                "labels_totalseg.nii.gz"))))
    metal = vol.hu >= TITANIUM_MIN_HU
    an = analyze_anatomy(vol)
    ob = find_other_bones(vol, metal, an)
    ilium = _full(ob, vol.hu.shape, "ilium")
    assert ob.pelvis["found"] and ob.pelvis["left"] and ob.pelvis["right"]
    assert ob.pelvis["left"]["crest_top_lps"][0] > 50.0  # LPS +x = the patient's left
    assert ob.pelvis["right"]["crest_top_lps"][0] < -50.0
    for side in ("left", "right"):
        assert 60.0 < ob.pelvis[side]["volume_ml"] < 300.0
    assert not (ilium & (ref > 0)).any()  # none on a TotalSegmentator vertebra (or S1)
    assert not (ilium & metal).any()
    # the femoral heads (in their acetabula on slices z 130-155 mm, looked at) are not ilium
    k, j, i = np.nonzero(ilium)
    z = vol.lps_from_ijk_points(np.c_[i, j, k].astype(float))[:, 2]
    assert z.min() > 155.0
    # each side's ilium lies on its own side of the midline
    x = vol.lps_from_ijk_points(np.c_[i, j, k].astype(float))[:, 0]
    assert (np.abs(x) > 20.0).mean() > 0.99


@pytest.mark.realdata
def test_thorax_cta_ribs_no_ilium_metal_not_rib():
    from conftest import shared_data

    vol = _read_nifti(shared_data("totalseg-thorax-cta-stent", "ct.nii.gz"))
    metal = vol.hu >= TITANIUM_MIN_HU
    an = analyze_anatomy(vol)
    ob = find_other_bones(vol, metal, an)
    assert ob.pelvis["found"] is False and not ob.ilium.any()
    ribs = _full(ob, vol.hu.shape, "ribs")
    assert ribs.sum() * np.prod(vol.spacing_mm) / 1000.0 > 20.0
    both = [lvl for lvl, sides in ob.rib_levels.items() if sides == ["left", "right"]]
    assert len(both) >= 5, ob.rib_levels
    assert not (ribs & metal).any()
    # the sternal wires (in front, on the midline) are not rib: nothing near the midline in
    # front of the vertebral bodies
    k, j, i = np.nonzero(ribs)
    p = vol.lps_from_ijk_points(np.c_[i, j, k].astype(float))
    x_mid = float(np.median([v.centroid_lps[0] for v in an.vertebrae]))
    y_front = min(v.centroid_lps[1] for v in an.vertebrae) - 20.0
    assert not ((np.abs(p[:, 0] - x_mid) < 40.0) & (p[:, 1] < y_front)).any()
