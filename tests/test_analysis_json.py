"""The model objects read back from their JSON forms (``io/analysis_json``): what the analysis
found, written to the file and read again, is the same object within the file's rounding; a
phantom's truth (its own field names) gives the model objects of what it drew; the planner's
frame of a vertebra follows from the model's vertebra."""

from __future__ import annotations

import numpy as np
import pytest
from phantom_fixtures import small_phantom

from fluoroplan.io.analysis_json import (
    analysis_json,
    cage_from_json,
    connector_from_json,
    rod_from_json,
    screw_from_json,
    vertebra_from_json,
)
from fluoroplan.planner.case import vertebra_frame
from fluoroplan.segmentation.analysis import analyze

POS_MM = 0.006  # positions are stored to 0.01 mm
DIR = 6e-5  # directions to 1e-4


@pytest.fixture(scope="module")
def found():
    ph = small_phantom(0, crosslinks=("L1",), cage=("L3", "L4"))
    an = analyze(ph.volume)
    return ph, an, analysis_json(an)


def _close(a, b, tol):
    return np.allclose(np.asarray(a, float), np.asarray(b, float), atol=tol)


def test_vertebrae_read_back_are_the_analysis_vertebrae(found):
    _, an, doc = found
    assert len(doc["vertebrae"]) == len(an.anatomy.vertebrae) >= 5
    for v, d in zip(an.anatomy.vertebrae, doc["vertebrae"], strict=True):
        r = vertebra_from_json(d)
        assert (r.label, r.index, r.kind, r.label_value) == (v.label, v.index, v.kind,
                                                             v.label_value)
        assert _close(r.centroid_lps, v.centroid_lps, POS_MM)  # the body's, not the whole's
        assert _close(r.vertebra_centroid_lps, v.vertebra_centroid_lps, POS_MM)
        assert _close(r.axis_lps, v.axis_lps, DIR)
        assert r.fracture_grade == v.fracture_grade
        for got, want in ((r.superior_endplate, v.superior_endplate),
                          (r.inferior_endplate, v.inferior_endplate),
                          (r.posterior_wall, v.posterior_wall)):
            assert (got is None) == (want is None)
            if want is not None:
                assert _close(got.point_lps, want.point_lps, POS_MM)
                assert _close(got.normal_lps, want.normal_lps, 1e-4)
        for got, want in ((r.pedicle_left, v.pedicle_left), (r.pedicle_right, v.pedicle_right)):
            assert (got is None) == (want is None)
            if want is not None:
                assert got.side == want.side
                assert _close(got.axis_point_lps, want.axis_point_lps, POS_MM)
                assert abs(got.narrowest_width_mm - want.narrowest_width_mm) <= 0.006
        assert len(r.rib_heads_lps) == len(v.rib_heads_lps)
        assert r.left_lps is None  # an analysis stores no frame of its own
        assert r.body_depth_mm is None


def test_implants_read_back_are_the_analysis_implants(found):
    _, an, doc = found
    imp = an.implants
    assert len(imp.screws) >= 6 and len(imp.rods) == 2 and imp.cages and imp.connectors
    for s, d in zip(imp.screws, doc["screws"], strict=True):
        r = screw_from_json(d)
        assert (r.id, r.level, r.side, r.loose) == (s.id, s.level, s.side, s.loose)
        assert _close(r.tip_lps, s.tip_lps, POS_MM) and _close(r.head_lps, s.head_lps, POS_MM)
        assert _close(r.axis_lps, s.axis_lps, 1e-3)
        assert r.halo is None and abs(r.halo_mm - s.halo_mm) <= 0.006
        assert r.tulip_height_mm is None  # the analysis does not measure the tulip
    for rod, d in zip(imp.rods, doc["rods"], strict=True):
        r = rod_from_json(d)
        assert r.side == rod.side and r.points_lps.shape == rod.points_lps.shape
        assert _close(r.points_lps, rod.points_lps, POS_MM)
        assert abs(r.length_mm - rod.length_mm) < 0.1
    for c, d in zip(imp.cages, doc["cages"], strict=True):
        r = cage_from_json(d)
        assert r.between == c.between and _close(r.axes_lps, c.axes_lps, DIR)
        assert _close(r.extent_mm, c.extent_mm, 0.06)
    for c, d in zip(imp.connectors, doc["connectors"], strict=True):
        r = connector_from_json(d)
        assert r.between == c.between and r.level == c.level
        assert _close(r.ends_lps, c.ends_lps, POS_MM)


def test_a_phantom_truth_gives_what_it_drew(found):
    ph, _, _ = found
    truth = ph.truth
    by_label = {v["label"]: v for v in truth["vertebrae"]}
    t12 = vertebra_from_json(by_label["T12"])
    axes = np.asarray(by_label["T12"]["axes_lps"], float)
    # the drawn frame, kept as drawn
    assert _close(t12.left_lps, axes[0], 1e-3) and _close(t12.posterior_lps, axes[1], 1e-3)
    assert t12.body_depth_mm == pytest.approx(by_label["T12"]["body_mm"]["depth"])
    assert len(t12.rib_heads_lps) == 2  # T12 carries a rib on each side
    frame = vertebra_frame(t12)
    assert frame.thoracic and set(frame.rib_heads_lps) == {"left", "right"}
    # the left rib head is the one drawn on the left
    drawn_left = np.asarray(by_label["T12"]["rib_heads_lps"]["left"], float)
    assert _close(frame.rib_heads_lps["left"], drawn_left, 1e-9)
    assert frame.body_depth_mm == pytest.approx(by_label["T12"]["body_mm"]["depth"])
    link = connector_from_json(truth["crosslinks"][0])
    assert link.between == tuple(truth["crosslinks"][0]["between"])
    assert link.length_mm == pytest.approx(truth["crosslinks"][0]["length_mm"])


def test_the_planner_frame_of_an_analysis_vertebra_is_right_handed_and_orthogonal(found):
    _, _, doc = found
    for d in doc["vertebrae"]:
        f = vertebra_frame(vertebra_from_json(d))
        basis = np.stack([f.left_lps, f.posterior_lps, f.axis_lps])
        assert np.allclose(basis @ basis.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(basis) == pytest.approx(1.0)  # left x posterior = cranial (LPS)
        assert f.left_lps[0] > 0.9  # the patient's left is +x


def test_stored_forms_without_optional_fields_read_with_clear_defaults():
    # an older cross-link keeps only its centre and its level
    link = connector_from_json({"center_lps": [1.0, 2.0, 3.0], "level": "L2-L3"})
    assert link.between == ("L2", "L3") and link.level == "L2-L3"
    assert link.ends_lps.shape == (2, 3) and link.length_mm == 0.0
    # an older rod calls its centreline a polyline and gives no diameter
    rod = rod_from_json({"side": "left", "polyline_lps": [[0, 0, 0], [0, 0, 30.0]]})
    assert rod.length_mm == pytest.approx(30.0) and rod.diameter_mm == 5.5


def test_findings_say_where_a_point_is_in_the_spine_s_words(found):
    from fluoroplan.io.analysis_json import findings_from_json
    from fluoroplan.model.findings import MIN_LISTED_CEMENT_MM3

    ph, _, doc = found
    f = findings_from_json(doc)
    l2 = f.vertebrae[[v.label for v in f.vertebrae].index("L2")]
    assert f.where(l2.centroid_lps + [5.0, 0.0, 3.0]) == "at L2"
    lowest = min(f.vertebrae, key=lambda v: v.centroid_lps[2])
    p = lowest.centroid_lps + np.array([60.0, 0.0, -80.0])
    assert f.where(p) == f"not at a vertebra: 80 mm below {lowest.label}, on the patient's LEFT"
    assert f.where(lowest.centroid_lps + [-50.0, 0.0, 0.0]).endswith("patient's RIGHT")
    assert all(c.volume_mm3 >= MIN_LISTED_CEMENT_MM3 for c in f.listed_cement)
