"""3D Slicer markups export: schema structure, one Line per trajectory and screw, fiducial
targets, RAS at the file boundary."""

from __future__ import annotations

import functools
import json

import numpy as np
from phantom_fixtures import small_phantom

from fluoroplan.io.slicer_markups import MARKUPS_SCHEMA, write_markups


@functools.lru_cache(maxsize=1)
def _plan():
    from fluoroplan.planner.propose import plan_case

    ph = small_phantom()
    return plan_case(ph.volume, ph.truth)


def test_markups_file(tmp_path):
    plan = _plan()
    path = write_markups(plan, tmp_path / "plan.mrk.json")
    doc = json.loads(path.read_text())
    assert doc["@schema"] == MARKUPS_SCHEMA and doc["@schema"].endswith("v1.0.3.json#")
    nodes = doc["markups"]
    lines = [m for m in nodes if m["type"] == "Line"]
    fids = [m for m in nodes if m["type"] == "Fiducial"]
    screws = plan.analysis["screws"]
    assert len(lines) == len(plan.trajectories) + len(screws)
    assert len(fids) == 1 and len(fids[0]["controlPoints"]) == len(plan.targets)
    for m in nodes:
        assert m["coordinateSystem"] == "RAS" and m["coordinateUnits"] == "mm"
        assert isinstance(m["name"], str) and m["name"]
        for cp in m["controlPoints"]:
            assert len(cp["position"]) == 3 and all(isinstance(v, float) for v in cp["position"])
            assert cp["positionStatus"] == "defined" and len(cp["orientation"]) == 9
        assert all(0.0 <= c <= 1.0 for c in m["display"]["color"])
    for t, m in zip(plan.trajectories, lines, strict=False):
        assert len(m["controlPoints"]) == 2 and t.id in m["name"]
        entry_ras = np.array(m["controlPoints"][0]["position"])
        end_ras = np.array(m["controlPoints"][1]["position"])
        # LPS -> RAS flips x and y only
        assert np.allclose(entry_ras, t.entry_lps * [-1, -1, 1], atol=1e-3)
        assert np.allclose(end_ras, t.aim_lps * [-1, -1, 1], atol=1e-3)
        assert abs(np.linalg.norm(end_ras - entry_ras) - m["measurements"][0]["value"]) < 0.01
    s0 = screws[0]
    line = next(m for m in lines if m["name"] == f"screw {s0['id']}")
    assert np.allclose(line["controlPoints"][0]["position"],
                       np.multiply(s0["head_lps"], [-1, -1, 1]), atol=1e-3)
    t0 = plan.targets[0]
    assert np.allclose(fids[0]["controlPoints"][0]["position"], t0.point_lps * [-1, -1, 1],
                       atol=1e-3)
    assert fids[0]["controlPoints"][0]["label"] == t0.id
