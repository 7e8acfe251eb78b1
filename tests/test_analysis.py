"""The whole analysis (anatomy + implants together) on the phantom, as `fluoroplan analyze`
runs it: levels on screws and cages come from the automatic vertebrae, not from the truth."""

from __future__ import annotations

import numpy as np
import pytest
from phantom_fixtures import full_phantom

from fluoroplan.io.analysis_json import analysis_json
from fluoroplan.io.plan_json import no_safe_to_json
from fluoroplan.planner.propose import plan_case
from fluoroplan.segmentation.analysis import analyze


@pytest.fixture(scope="module")
def cage_case():
    ph = full_phantom(cage=("L3", "L4"), cage_subsidence_mm=3.0)
    return ph, analyze(ph.volume)


def test_screws_take_the_levels_of_the_automatic_vertebrae(cage_case):
    ph, an = cage_case
    assert [v.label for v in an.anatomy.vertebrae] == [v["label"] for v in ph.truth["vertebrae"]]
    got = sorted(s.id for s in an.implants.screws)
    assert got == sorted(s["id"] for s in ph.truth["screws"])
    assert [s.id for s in an.implants.screws if s.loose] == [ph.truth["params"]["loose_screw"]]


def test_cage_between_its_vertebrae_and_planned(cage_case):
    ph, an = cage_case
    (cage,) = an.implants.cages
    assert cage.between == ("L3", "L4")
    truth = ph.truth["cages"][0]
    assert np.linalg.norm(cage.center_lps - np.array(truth["center_lps"])) < 2.0
    plan = plan_case(ph.volume, analysis_json(an))
    kinds = {t.kind for t in plan.targets}
    assert "cage" in kinds, [t.description for t in plan.targets]
    assert any(t.target.kind == "cage" and t.status != "fail" for t in plan.trajectories)


def test_a_slab_too_short_for_the_vertebrae_still_lists_its_screws(tmp_path):
    """A CT of the instrumented level alone (36 mm through L2: too short to separate vertebrae)
    gives its screws, without levels, and says why; the planner then refuses clearly. The same
    slab without metal is refused as no spine."""
    import json

    from phantom_fixtures import small_phantom

    from fluoroplan.cli import main
    from fluoroplan.io.dicom_write import write_series
    from fluoroplan.io.volume import CTVolume

    ph = small_phantom()
    l2 = next(v for v in ph.truth["vertebrae"] if v["label"] == "L2")
    k = int(round(ph.volume.ijk_from_lps_points(np.array([l2["centroid_lps"]]))[0][2]))
    half = int(round(18.0 / ph.volume.spacing_mm[2]))
    A = ph.volume.lps_from_ijk.copy()
    A[:3, 3] = ph.volume.lps_from_ijk_points(np.array([[0.0, 0.0, k - half]]))[0]
    slab = CTVolume(np.ascontiguousarray(ph.volume.hu[k - half: k + half]), A)
    an = analyze(slab)
    assert an.anatomy.vertebrae == ()
    truth = [s for s in ph.truth["screws"] if s["id"].startswith("L2")]
    assert len(an.implants.screws) == len(truth) == 2
    for t in truth:
        s = min(an.implants.screws, key=lambda q: np.linalg.norm(q.tip_lps - np.array(t["tip_lps"])))
        assert np.linalg.norm(s.tip_lps - np.array(t["tip_lps"])) < 1.5
        assert s.side == t["side"] and s.level == ""
    assert any("could not be separated" in w and "--labels" in w for w in an.warnings)
    # the canal is unknown: no path is "safe" from it, so nothing is proposed
    plan = plan_case(slab, analysis_json(an))
    assert plan.trajectories == () and plan.unsolved
    for u in plan.unsolved:
        assert "spinal canal" in str(no_safe_to_json(u))

    write_series(slab.hu, slab.lps_from_ijk, tmp_path / "slab")
    out = tmp_path / "a.json"
    assert main(["analyze", str(tmp_path / "slab"), "--json", str(out), "--quiet"]) == 0
    d = json.loads(out.read_text())
    assert d["vertebrae"] == [] and len(d["screws"]) == 2

    bare = np.where(slab.hu >= 2200, 300, slab.hu).astype(np.int16)
    write_series(bare, slab.lps_from_ijk, tmp_path / "bare")
    assert main(["analyze", str(tmp_path / "bare"), "--json", str(out), "--quiet"]) == 2


def test_analysis_json_gives_the_canal_per_level_and_the_structures(cage_case):
    """analysis.json: each vertebra's canal at its narrowest section (area, width, depth - the
    lumen's own, never a circle's radius), the structure label values, pelvis and ribs; the
    label volume carries the lumen where the phantom drew its fluid."""
    from fluoroplan.model.anatomy import CANAL_LABEL, RIB_LABEL
    from fluoroplan.resources.phantom import STRUCTURE_CODES

    ph, an = cage_case
    doc = analysis_json(an)
    assert doc["canal"]["label_value"] == CANAL_LABEL and len(doc["canal"]["centerline_lps"]) > 50
    assert doc["pelvis"]["found"] is False  # no pelvis drawn in this phantom
    assert set(doc["ribs"]["levels"]) == {"T11", "T12"}
    for v in doc["vertebrae"]:
        c = v["canal"]
        assert "radius_mm" not in c
        assert 12.0 <= c["width_mm"] <= 28.0 and 12.0 <= c["depth_mm"] <= 22.0, v["label"]
        assert 120.0 <= c["area_mm2"] <= 500.0
        # a lumen, not a circle: its area differs from the min(w, d)/2 disc's
        assert c["area_mm2"] > 1.1 * np.pi * (min(c["width_mm"], c["depth_mm"]) / 2) ** 2
        assert v["label_value"] >= 1
    # within the vertebrae's span (the phantom draws fluid 25 mm beyond the end levels too)
    z = [v["centroid_lps"][2] for v in ph.truth["vertebrae"]]
    k = np.arange(ph.volume.hu.shape[0])
    kz = ph.volume.lps_from_ijk_points(np.stack([0 * k, 0 * k, k], 1).astype(float))[:, 2]
    span = (kz >= min(z)) & (kz <= max(z))
    drawn = ph.structures[span] == STRUCTURE_CODES["canal"]
    assert (an.anatomy.labels[span][drawn] == CANAL_LABEL).mean() > 0.85
    assert (an.anatomy.labels == RIB_LABEL).sum() > 1000
