"""Implants on real scans: foreign metal is never a screw; real 2-D screw/rod cross-sections."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_data

from fluoroplan.io import load_ct
from fluoroplan.segmentation.implants import find_implants
from fluoroplan.segmentation.implants_2d import metal_mask_2d, metal_regions_2d

pytestmark = pytest.mark.realdata


def test_femoral_implant_is_other_metal_not_a_screw():
    vol = load_ct(shared_data("totalseg-abdomen-ct", "ct.nii.gz"))
    imp = find_implants(vol)
    assert imp.screws == () and imp.rods == () and imp.cages == ()
    assert imp.other, "the femoral implant must be reported as other metal"
    total = sum(o.volume_mm3 for o in imp.other)
    assert 5000.0 < total < 20000.0  # one ~12 cm3 implant (after streak opening)
    # all of it on the patient's left (+x), below the spine's lumbar levels
    assert all(o.center_lps[0] > 0 for o in imp.other)


def test_femoral_implant_with_vertebra_labels():
    import SimpleITK as sitk

    vol = load_ct(shared_data("totalseg-abdomen-ct", "ct.nii.gz"))
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data("totalseg-abdomen-ct",
                                                                "labels_totalseg.nii.gz"))))
    names = {26: "S1", 27: "L5", 28: "L4", 29: "L3", 30: "L2", 31: "L1", 32: "T12", 33: "T11"}
    imp = find_implants(vol, vertebra_labels=lab, label_names=names)
    assert imp.screws == () and imp.cages == ()


def test_stent_graft_and_sternal_wires_are_not_screws():
    vol = load_ct(shared_data("totalseg-thorax-cta-stent", "ct.nii.gz"))
    imp = find_implants(vol)
    assert imp.screws == () and imp.rods == () and imp.cages == ()
    assert imp.other
    assert imp.metal_mask.any()


def _slices(kind):
    folder = shared_data("spineweb-2d-screws", kind)
    files = sorted(folder.glob("*.npy"))
    assert files, f"no slices in {folder}"
    return [(f.name, np.load(f)) for f in files]


def test_2d_slices_with_screws_show_one_screw_each_side():
    for name, hu in _slices("with_art"):
        regions, midline = metal_regions_2d(hu)
        screws = [r for r in regions if r.kind == "screw"]
        assert len(screws) == 2, (name, regions)
        assert sorted(r.side for r in screws) == [-1, 1], name
        assert 0.25 * hu.shape[1] < midline < 0.75 * hu.shape[1]
        # the streaks are opened away: far fewer metal pixels than a bare threshold gives
        assert metal_mask_2d(hu).sum() <= (hu >= 2200).sum()


def test_2d_slices_without_metal_show_none():
    for name, hu in _slices("without_art"):
        regions, _ = metal_regions_2d(hu)
        assert regions == [], name
        assert not metal_mask_2d(hu).any()
