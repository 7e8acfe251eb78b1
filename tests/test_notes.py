"""The notes the user must read: the CT loader's, the analysis' (tied to the vertebra or screw
they concern, named as it is now) and the plan's."""

from __future__ import annotations

import numpy as np
import pytest

from fluoroplan.model.plan import Check, NoSafeTrajectory, Plan, Target, Trajectory
from fluoroplan.planner.notes import Note, all_notes, analysis_notes, ct_notes, plan_notes


class _V:
    def __init__(self, index, label):
        self.index, self.label = index, label


VERTS = [_V(0, "T12"), _V(1, "L1"), _V(2, "L2"), _V(3, "L3")]


def test_analysis_warnings_name_the_level_they_concern():
    notes = analysis_notes([
        "Vertebra 4 from the top: graded 2 from a 27 % height loss, but heights read to "
        "+-1.5 mm on this CT allow grade 1 to 2: check it on the sagittal view.",
        "metal blooming hides the first 1.2 mm around the screws: a halo under that is not seen",
        "the screw L2-left is bent",
        "Vertebra 9 from the top: cut by the scan",  # no such vertebra: left as it is
    ], VERTS, ["L2-left", "L2-right"])
    assert notes[0].about == "vertebra:L3"
    assert notes[0].text.startswith("L3 (vertebra 4 from the top): graded 2")
    assert notes[1].about is None
    assert notes[2].about == "screw:L2-left"
    assert notes[3].about is None and notes[3].text.startswith("Vertebra 9 from the top")
    # relabelled levels: the note follows the current names
    renamed = analysis_notes(["Vertebra 4 from the top: graded 2"],
                             [_V(3, "L4")], [])
    assert renamed[0].about == "vertebra:L4" and renamed[0].text.startswith("L4 (vertebra 4")


def test_ct_notes_warn_when_something_was_assumed():
    notes = ct_notes(["NIfTI records no patient position: head first supine (HFS) is assumed.",
                      "Slices 12-13 were 3.0 mm apart (the rest 1.5 mm): resampled to 1.5 mm."])
    assert [n.severity for n in notes] == ["warn", "info"]
    assert all(n.source == "CT" for n in notes)
    with pytest.raises(ValueError, match="note source"):
        Note("somewhere", "text")


def test_plan_notes_say_what_to_mind_and_about_which_trajectory():
    target = Target("loose-screw", "L2-left", "L2", "left", np.zeros(3), "loose screw")
    ok = Trajectory(id="a", target=target, approach="transpedicular-parallel", level="L2",
                    side="left", entry_lps=np.array([50.0, 90.0, 0.0]), target_lps=np.zeros(3),
                    checks=(Check("metal clearance", 3.0, 1.0, "pass", "mm"),),
                    views={"progression": {"true_lateral": True, "how": "true lateral of L2"}})
    bad = Trajectory(id="b", target=target, approach="manual", level="L2", side="left",
                     entry_lps=np.array([0.0, 90.0, 0.0]), target_lps=np.zeros(3),
                     checks=(Check("spinal canal clearance", -2.0, 0.0, "fail", "mm",
                                   "enters the canal"),
                             Check("progression view reachable", "no", "C-arm limits", "fail",
                                   "", "needs 120 deg")),
                     views={"progression": {"true_lateral": False,
                                            "how": "the nearest reachable lateral"}})
    unsolved = NoSafeTrajectory(target, "extrapedicular-cranial", "bone in the way",
                                "crosses the left rib", side="left")
    plan = Plan(series={}, targets=(target,), trajectories=(ok, bad), unsolved=(unsolved,))
    notes = plan_notes(plan)
    texts = [n.text for n in notes]
    assert texts[0] == ("No safe trajectory for L2-left, extrapedicular-cranial (left): "
                        "crosses the left rib")
    assert notes[0].about == f"target:{target.id}"
    assert not any(t.startswith("a:") for t in texts)  # nothing to mind about a
    assert "b: FAILS 'spinal canal clearance' (-2.0 mm): enters the canal" in texts
    assert any(t.startswith("b: the progression view is not a true lateral") for t in texts)
    assert all(n.about == "trajectory:b" for n in notes[1:])
    everything = all_notes(["a CT note"], ["Vertebra 1 from the top: cut"], VERTS, [], plan)
    assert [n.source for n in everything][:2] == ["CT", "analysis"]
    assert everything[1].about == "vertebra:T12"


def test_measurements_measure_what_their_points_say_and_round_trip():
    import json

    from fluoroplan.io.plan_json import measurement_to_json
    from fluoroplan.model.plan import Measurement

    d = Measurement("d1", "distance", [[0, 0, 0], [30, 40, 0]], "axial")
    assert d.value == pytest.approx(50.0) and d.text == "50.0 mm"
    a = Measurement("a1", "angle", [[10, 0, 0], [0, 0, 0], [10, 10, 0]], "sagittal")
    assert a.value == pytest.approx(45.0) and a.text == "45.0\u00b0"
    with pytest.raises(ValueError, match="a distance has 2 points"):
        Measurement("d2", "distance", [[0, 0, 0]])
    with pytest.raises(ValueError, match="kind"):
        Measurement("x", "area", [[0, 0, 0], [1, 1, 1]])
    doc = json.loads(json.dumps(measurement_to_json(a)))
    assert doc == {"id": "a1", "kind": "angle", "view": "sagittal", "unit": "deg", "value": 45.0,
                   "points_lps": [[10.0, 0.0, 0.0], [0.0, 0.0, 0.0], [10.0, 10.0, 0.0]]}
