"""Safety verdicts on a real CT (../shared/data; skipped when absent): paths placed by hand
through the canal and the ilium fail by name, and what they cross is read here from the CT's
own voxels and the TotalSegmentator labels, not from fluoroplan's segmentation."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_data
from phantom_fixtures import path_through

from fluoroplan.io.analysis_json import analysis_json
from fluoroplan.planner.case import PlanningCase

pytestmark = pytest.mark.realdata

NEEDLE_R = 1.829 / 2


@pytest.fixture(scope="module")
def abdomen():
    import nibabel as nib

    from fluoroplan.io import load_ct
    from fluoroplan.segmentation.analysis import analyze

    vol = load_ct(shared_data("totalseg-abdomen-ct", "ct.nii.gz"))
    ref = np.asarray(nib.load(str(shared_data("totalseg-abdomen-ct", "labels_totalseg.nii.gz")))
                     .dataobj).astype(np.int16)
    ref = np.ascontiguousarray(ref.transpose(2, 1, 0))  # NIfTI (i, j, k) -> [k, j, i]
    an = analyze(vol)
    case = PlanningCase(vol, analysis_json(an), labels=an.anatomy.labels)
    return vol, ref, an, case


def _ref_at(vol, ref, pts):
    ijk = np.rint(vol.ijk_from_lps_points(pts)).astype(int)
    return ref[ijk[:, 2], ijk[:, 1], ijk[:, 0]]


def test_reference_labels_are_on_the_ct_grid(abdomen):
    vol, ref, an, case = abdomen
    assert ref.shape == vol.hu.shape
    l3 = case.vertebra("L3")
    assert _ref_at(vol, ref, l3.centroid_lps[None])[0] == 29  # TotalSegmentator's L3


def test_a_path_down_the_midline_through_the_canal_fails(abdomen):
    vol, ref, an, case = abdomen
    l3 = case.vertebra("L3")
    t = path_through(case, l3.centroid_lps, l3.centroid_lps + 70.0 * l3.posterior_lps, "L3")
    pts = t.path_points()
    # truth: the path crosses soft tissue between the reference L3's arch and its body
    lab = _ref_at(vol, ref, pts)
    hu = vol.hu_at_lps(pts)
    on_l3 = np.nonzero(lab == 29)[0]
    gap = [n for n in range(on_l3.min(), on_l3.max()) if lab[n] != 29 and hu[n] < 150]
    assert len(gap) * 0.5 >= 8.0  # at least 8 mm of lumen enclosed by the reference vertebra
    canal = t.check("spinal canal clearance")
    assert canal.status == "fail" and canal.value < -5.0, canal
    assert t.status == "fail"


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_path_through_the_ilium_fails_and_names_it(abdomen, side):
    vol, ref, an, case = abdomen
    from fluoroplan.model.anatomy import ILIUM_LABEL

    assert analysis_json(an)["pelvis"]["found"]
    s1 = case.vertebra("S1")
    # aim through the middle of the ilium fluoroplan found on that side at S1's height; whether
    # the path really crosses bone there is read below from the CT and the reference labels
    kji = np.argwhere(an.anatomy.labels == ILIUM_LABEL)
    il = vol.lps_from_ijk_points(kji[:, ::-1].astype(float))
    loc = (il - s1.centroid_lps) @ np.asarray(s1.left_lps)
    il = il[((loc > 0) == (side == "left")) & (np.abs(il[:, 2] - s1.centroid_lps[2]) < 8.0)]
    assert len(il) > 20
    t = path_through(case, s1.centroid_lps, il.mean(axis=0), "S1")
    pts = t.path_points()
    # truth: the path crosses >= 4 mm of dense bone that no TotalSegmentator vertebra label
    # (nor its sacrum) claims, lateral of the sacrum's own label
    lab = _ref_at(vol, ref, pts)
    hu = vol.hu_at_lps(pts)
    sacrum = np.argwhere(ref == 26)
    sac_lps = vol.lps_from_ijk_points(sacrum[:, ::-1].astype(float))
    lateral = np.abs((pts - sac_lps.mean(axis=0)) @ np.asarray(s1.left_lps)) > 40.0
    assert 0.5 * np.sum((hu >= 300) & (lab == 0) & lateral) >= 4.0
    bone = t.check("bone in the way")
    assert bone.status == "fail", bone.detail
    assert f"the {side} ilium" in bone.detail


def test_a_transpedicular_path_into_l4_passes_bone_and_canal(abdomen):
    """A real, ordinary path still passes: down the pedicle axis fluoroplan measured."""
    vol, ref, an, case = abdomen
    l4 = case.vertebra("L4")
    ped = l4.pedicles["left"]
    tip = ped.axis_point_lps + 20.0 * ped.axis_dir_lps  # along the measured pedicle axis into the body
    t = path_through(case, tip, ped.axis_point_lps, "L4")
    assert t.check("bone in the way").status != "fail", t.check("bone in the way").detail
    assert t.check("spinal canal clearance").status != "fail"
