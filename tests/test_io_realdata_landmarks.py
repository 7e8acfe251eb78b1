"""Real scans: the loaded geometry puts known anatomy where it is (LPS), not just a plausible grid."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_data

from fluoroplan.io import load_ct

pytestmark = pytest.mark.realdata


def _label_points_lps(labels, value):
    kji = np.argwhere(labels.hu == value)
    return labels.lps_from_ijk_points(kji[:, ::-1])


def test_j2k_series_vertebra_labels_land_on_bone_posterior_midline():
    """TotalSegmentator's labels (NIfTI, its own axis flips) mapped through *their* affine onto the
    DICOM-loaded CT must fall on bone: a wrong sign or origin in either loader puts them in soft
    tissue or air."""
    ct = load_ct(shared_data("totalseg-dicom-j2k", "dicom"))
    labels = load_ct(shared_data("totalseg-dicom-j2k", "labels_totalseg.nii.gz"))
    body = ct.lps_from_ijk_points(np.argwhere(ct.hu[::2, ::4, ::4] > -300)[:, ::-1] * [4, 4, 2])
    body_centre = body.mean(axis=0)
    for value, name in ((32, "T12"), (33, "T11")):
        pts = _label_points_lps(labels, value)
        assert len(pts) > 1000, name
        hu = ct.hu_at_lps(pts)
        assert np.median(hu) > 150, f"{name} label lands on HU {np.median(hu)}, not bone"
        c = pts.mean(axis=0)
        # the spine is posterior (+y) of the body's centre, near the midline (x)
        assert c[1] > body_centre[1] + 30, (name, c, body_centre)
        assert abs(c[0] - body_centre[0]) < 25, (name, c, body_centre)
    # T11 is cranial (+z) of T12
    assert _label_points_lps(labels, 33)[:, 2].mean() > _label_points_lps(labels, 32)[:, 2].mean()


def test_abdomen_nifti_sacrum_caudal_and_femoral_heads_lateral():
    ct = load_ct(shared_data("totalseg-abdomen-ct", "ct.nii.gz"))
    labels = load_ct(shared_data("totalseg-abdomen-ct", "labels_totalseg.nii.gz"))
    sacrum, l3, t12 = (_label_points_lps(labels, v).mean(axis=0) for v in (26, 29, 32))
    assert sacrum[2] < l3[2] < t12[2]  # feet to head along +z
    assert np.median(ct.hu_at_lps(_label_points_lps(labels, 29))) > 150
