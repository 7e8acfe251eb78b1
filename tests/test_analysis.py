"""The whole analysis (anatomy + implants together) on the phantom, as `fluoroplan analyze`
runs it: levels on screws and cages come from the automatic vertebrae, not from the truth."""

from __future__ import annotations

import numpy as np
import pytest
from phantom_fixtures import full_phantom

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
    plan = plan_case(ph.volume, an.to_json())
    kinds = {t.kind for t in plan.targets}
    assert "cage" in kinds, [t.description for t in plan.targets]
    assert any(t.target.kind == "cage" and t.status != "fail" for t in plan.trajectories)
