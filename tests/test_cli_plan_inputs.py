"""Every command that takes a plan refuses one that is not of this CT or not valid (issue 13,
point 2): ``drr --plan`` as ``plan --from-plan`` does, and a one-slice CT is no volume for a
DRR."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from phantom_fixtures import truth_labels

from fluoroplan.io.planfile import save_plan
from fluoroplan.model.plan import Plan
from fluoroplan.planner.case import PlanningCase
from fluoroplan.planner.propose import manual_trajectory, recheck
from fluoroplan.resources.phantom import make_phantom, write_phantom

TINY = {"shape_ijk": (128, 128, 96), "pixel_mm": 2.0, "slice_mm": 2.0}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fluoroplan.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("plans")
    a = make_phantom(0, **TINY)
    b = make_phantom(1, **TINY)
    write_phantom(root / "a", a)
    write_phantom(root / "b", b)
    lab, values = truth_labels(a)
    case = PlanningCase(a.volume, a.truth, labels=lab, label_values=values)
    l3 = case.vertebra("L3")
    traj = recheck(case, manual_trajectory(case, l3.centroid_lps + 90.0 * l3.posterior_lps
                                           + 30.0 * l3.left_lps, l3.centroid_lps))
    plan = Plan(series=a.volume.series_json(), targets=(traj.target,), trajectories=(traj,),
                procedure_position="HFP")
    save_plan(plan, root / "plan_a.json")
    return root, traj.id


def test_drr_refuses_a_plan_of_another_ct_as_plan_from_plan_does(cases):
    root, tid = cases
    ok = _cli("drr", root / "a", "--plan", root / "plan_a.json", "--trajectory", tid,
              "--view", "bullseye", "--size", "64", "--out", root / "ok.png")
    assert ok.returncode == 0, ok.stderr
    drr = _cli("drr", root / "b", "--plan", root / "plan_a.json", "--trajectory", tid,
               "--view", "bullseye", "--size", "64", "--out", root / "bad.png")
    plan = _cli("plan", root / "b", "--from-plan", root / "plan_a.json", "--json",
                root / "out.json")
    assert drr.returncode == 2 and plan.returncode == 2, (drr.stderr, plan.stderr)
    assert not (root / "bad.png").exists()
    said = drr.stderr.strip().splitlines()[-1].split(": ", 1)[1]
    assert said == plan.stderr.strip().splitlines()[-1].split(": ", 1)[1]
    assert "was made on" in said and "nothing was loaded" in said
    assert "Traceback" not in drr.stderr


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, "12"])
def test_drr_refuses_a_trajectory_without_finite_points(cases, bad):
    root, _ = cases
    entry = [0.0, 90.0, bad] if bad is not None else None
    doc = {"trajectories": [{"id": "T1", "entry_lps": entry, "target_lps": [0.0, 0.0, 0.0]}]}
    path = root / "hand.json"
    path.write_text(json.dumps(doc))  # NaN / Infinity as Python's json writes them
    res = _cli("drr", root / "a", "--pose", "-180", "0", "--plan", path, "--trajectory", "T1",
               "--size", "64", "--out", root / "hand.png")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert any(w in res.stderr for w in ("entry_lps", "NaN", "Infinity")), res.stderr


def test_drr_refuses_a_one_slice_ct(tmp_path):
    import nibabel as nib

    img = nib.Nifti1Image(np.zeros((32, 32, 1), np.int16), np.diag([1.0, 1.0, 1.0, 1.0]))
    path = tmp_path / "one.nii.gz"
    nib.save(img, str(path))
    res = _cli("drr", path, "--pose", "0", "0", "--size", "64", "--out", tmp_path / "x.png")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "volume" in res.stderr


@pytest.mark.parametrize("content", ["[" * 100000 + "]" * 100000,
                                     '{"schema": "fluoroplan.plan/1", "n": ' + "9" * 401 + "}"])
def test_a_damaged_plan_file_is_refused_in_one_sentence(cases, content):
    root, tid = cases
    path = root / "damaged.json"
    path.write_text(content)
    res = _cli("plan", root / "a", "--from-plan", path, "--json", root / "x.json")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "damaged.json is damaged" in last and "Nothing was loaded" in last


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "abc"])
def test_metal_threshold_must_be_a_sane_number(cases, value):
    root, _ = cases
    res = _cli("analyze", root / "a", "--json", root / "an.json", "--metal-hu", value)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--metal-hu" in res.stderr and ("HU" in res.stderr)


def test_plan_that_cannot_be_written_is_kept_beside_and_said(cases, tmp_path, monkeypatch,
                                                              capsys):
    """Issue 13, point 5: a write that fails after the work (disk full) never loses the plan:
    it is written to a rescue file in the working folder, the command names it and exits 2."""
    import fluoroplan.io.planfile as planfile
    from fluoroplan.cli import main

    root, tid = cases
    target = tmp_path / "out" / "plan.json"
    target.parent.mkdir()
    real = planfile.save_plan

    def full_disk(plan, path):
        if str(path) == str(target):
            raise OSError(28, "No space left on device")
        return real(plan, path)

    monkeypatch.setattr(planfile, "save_plan", full_disk)
    monkeypatch.chdir(tmp_path)
    rc = main(["plan", str(root / "a"), "--from-plan", str(root / "plan_a.json"), "--json",
               str(target), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert not target.exists()
    (rescued,) = tmp_path.glob("plan.rescued-*.json")
    assert "No space left on device" in err and str(rescued) in err
    kept = json.loads(rescued.read_text())
    assert [t["id"] for t in kept["trajectories"]] == [tid]


def test_output_folder_missing_or_a_file_is_refused_before_the_work(cases, tmp_path):
    root, _ = cases
    (tmp_path / "afile").write_text("x")
    for target, said in ((tmp_path / "nowhere" / "p.json", "does not exist"),
                         (tmp_path / "afile" / "p.json", "is a file, not a folder"),
                         (tmp_path, "is a folder")):
        res = _cli("plan", root / "a", "--from-plan", root / "plan_a.json", "--json", target)
        assert res.returncode == 2 and said in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
