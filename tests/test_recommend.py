"""The recommended proposal and why, in clinical words; two proposals side by side."""

from __future__ import annotations

import numpy as np

from fluoroplan.model.plan import Check, NoSafeTrajectory, Target, Trajectory
from fluoroplan.planner.recommend import comparison, proposal_name, recommend

TARGET = Target("loose-screw", "L2-left", "L2", "left", np.zeros(3), "loose screw L2-left")


def _traj(approach: str, depth: float, canal: float, metal: float, cost: float,
          warn_metal: bool = False, terms: dict | None = None) -> Trajectory:
    checks = (
        Check("metal clearance", metal, 1.0, "warn" if warn_metal else "pass", "mm"),
        Check("spinal canal clearance", canal, 0.0, "pass", "mm"),
        Check("lung / pleura", None, 5.0, "pass", "mm", at_least=10.0),
    )
    entry = np.array([60.0, 80.0, 0.0])
    direction = -entry / np.linalg.norm(entry)
    return Trajectory(id=f"{approach}-L2-left", target=TARGET, approach=approach, level="L2",
                      side="left", entry_lps=entry, target_lps=entry + depth * direction,
                      checks=checks, cost=cost, cost_terms=terms or {})


def test_a_proposal_that_passes_every_check_beats_a_cheaper_one_that_warns():
    warns = _traj("transpedicular-tip", 80.0, 8.0, 1.4, cost=2.0, warn_metal=True)
    passes = _traj("transpedicular-parallel", 95.0, 6.0, 3.0, cost=5.0)
    rec = recommend([warns, passes])
    assert rec.index == 1
    assert rec.headline == "Recommended: parallel to the screw (left)"
    assert rec.reasons[0] == "passes every check"
    assert "the other warns on metal clearance" in rec.reasons[1]
    assert "6.0 mm from the canal, 3.0 mm from metal, >10.0 mm from the pleura, 95 mm deep" \
        == rec.numbers
    assert "cost" not in rec.sentence.lower()


def test_among_equals_the_cheaper_wins_and_the_reason_names_the_difference_in_mm():
    far = _traj("extrapedicular-caudal", 110.0, 9.0, 3.0, cost=4.0,
                terms={"canal": 0.0, "depth": 3.3})
    near = _traj("transpedicular-parallel", 100.0, 3.0, 3.0, cost=21.0,
                 terms={"canal": 18.0, "depth": 3.0})
    rec = recommend([near, far])
    assert rec.index == 1
    assert "compared with parallel to the screw (left): 6.0 mm farther from the spinal canal" \
        in rec.reasons[-1]
    # a difference under half a millimetre is not worth a word
    a = _traj("transpedicular-tip", 100.0, 6.2, 3.0, cost=1.0, terms={"canal": 0.0})
    b = _traj("transpedicular-parallel", 100.0, 6.0, 3.0, cost=1.2, terms={"canal": 0.0})
    assert "farther" not in recommend([a, b]).sentence


def test_no_safe_path_is_said_per_approach_and_none_is_recommended_when_all_fail():
    ok = _traj("transpedicular-parallel", 95.0, 6.0, 3.0, cost=5.0)
    bad = NoSafeTrajectory(TARGET, "extrapedicular-cranial", "bone in the way",
                           "crosses the left rib", side="left")
    rec = recommend([bad, ok])
    assert rec.index == 1 and "no safe path for extrapedicular, cranial (left)" in rec.reasons
    none = recommend([bad])
    assert none.index is None and none.headline == "No safe trajectory"
    assert "crosses the left rib" in none.reasons[0]
    assert proposal_name(bad) == "extrapedicular, cranial (left)"


def test_comparison_rows_mark_the_better_of_the_two():
    a = _traj("transpedicular-parallel", 95.0, 6.0, 3.0, cost=5.0)
    b = _traj("transpedicular-tip", 80.0, 8.0, 1.4, cost=2.0, warn_metal=True)
    rows = {r[0]: r[1:] for r in comparison(a, b)}
    assert rows["depth"] == ("95.0 mm", "80.0 mm", "b")
    assert rows["spinal canal clearance"] == ("6.0 mm PASS", "8.0 mm PASS", "b")
    assert rows["metal clearance"] == ("3.0 mm PASS", "1.4 mm WARN", "a")
    assert rows["status"] == ("PASS", "WARN (1 check)", "a")
