"""Plan files: round trip, atomic autosave that survives SIGKILL, refusal of another series,
of damaged files and of other versions."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from phantom_fixtures import small_phantom

from fluoroplan.io.errors import FluoroplanError
from fluoroplan.io.plan_json import check_to_json, plan_to_json
from fluoroplan.io.planfile import (
    BadFileError,
    UnsupportedVersionError,
    WrongSeriesError,
    autosave,
    autosave_path,
    discard_recovery,
    find_recoveries,
    find_recovery,
    load_plan,
    plan_document,
    save_plan,
)
from fluoroplan.model.plan import Plan

PROJECT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def _plan() -> Plan:
    from fluoroplan.planner.propose import plan_case

    ph = small_phantom()
    return plan_case(ph.volume, ph.truth, planner="Dr Test")


@pytest.fixture(autouse=True)
def _recovery_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FLUOROPLAN_RECOVERY_DIR", str(tmp_path / "recovery"))


@pytest.fixture(scope="module")
def plan():
    p = _plan()
    assert len(p.trajectories) >= 4
    return p


def test_round_trip_unchanged(plan, tmp_path):
    path = tmp_path / "PLAN.json"
    doc = save_plan(plan, path)
    on_disk = json.loads(path.read_text())
    assert on_disk == doc
    assert on_disk["schema"] == "fluoroplan.plan/1"
    for key in ("series_instance_uid", "study_instance_uid", "fingerprint"):
        assert on_disk["series"][key]
    assert on_disk["analysis"]["levels"] and on_disk["analysis"]["screws"]
    loaded = load_plan(path, small_phantom().volume)
    assert plan_document(loaded) == on_disk  # loading changes nothing
    save_plan(loaded, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == path.read_text()
    # the numbers survive to the micrometre
    for a, b in zip(plan.trajectories, loaded.trajectories, strict=True):
        assert np.allclose(a.entry_lps, b.entry_lps, atol=6e-4)
        assert abs(a.depth_mm - b.depth_mm) < 0.01
        assert [check_to_json(c) for c in a.checks] == [check_to_json(c) for c in b.checks]
        assert a.views == b.views


def test_user_edit_round_trips(plan, tmp_path):
    t0 = plan.trajectories[0]
    moved = t0.moved(entry_lps=t0.entry_lps + np.array([3.0, 0.0, 1.0]))
    edited = dataclasses.replace(plan, trajectories=(moved,) + plan.trajectories[1:])
    save_plan(edited, tmp_path / "p.json")
    back = load_plan(tmp_path / "p.json")
    assert back.trajectories[0].edited is True
    assert np.allclose(back.trajectories[0].entry_lps, t0.entry_lps + [3.0, 0.0, 1.0], atol=1e-3)
    assert all(not t.edited for t in back.trajectories[1:])


def test_autosave_survives_sigkill(plan, tmp_path):
    plan_path = tmp_path / "case" / "PLAN.json"
    save_plan(plan, plan_path)
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from dataclasses import replace
        from fluoroplan.io.planfile import autosave, load_plan
        plan = load_plan({str(plan_path)!r})
        for step in range(1, 4):   # three edits, an autosave after each
            t = plan.trajectories[0]
            t = t.moved(entry_lps=t.entry_lps + np.array([1.0, 0.0, 0.0]))
            plan = replace(plan, trajectories=(t,) + plan.trajectories[1:])
            autosave(plan, {str(plan_path)!r})
        print("edited", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=PROJECT)
    try:
        assert proc.stdout.readline().strip() == "edited"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert autosave_path(plan_path) == plan_path.with_name(".PLAN.json.autosave")
    rec = find_recovery(plan_path)
    assert rec is not None and rec.newer_than_saved and rec.plan_path == plan_path.resolve()
    t = rec.plan.trajectories[0]
    assert t.edited
    assert np.allclose(t.entry_lps, plan.trajectories[0].entry_lps + [3.0, 0, 0], atol=2e-3)
    assert "recovered" in rec.text
    # the saved plan itself is untouched; saving again clears the recovery
    assert not load_plan(plan_path).trajectories[0].edited
    save_plan(rec.plan, plan_path)
    assert find_recovery(plan_path) is None


def test_unsaved_plan_autosaves_per_series(plan, tmp_path):
    uid = plan.series["series_instance_uid"]
    file = autosave(plan)
    assert file == tmp_path / "recovery" / f"{uid}.json"
    rec = find_recovery(series_uid=uid)
    assert rec is not None and rec.plan_path is None
    assert plan_document(rec.plan) == plan_document(plan)
    assert [r.autosave_path for r in find_recoveries()] == [file]
    assert discard_recovery(series_uid=uid) and not file.exists()
    assert find_recovery(series_uid=uid) is None and not discard_recovery(series_uid=uid)


def test_other_series_refused_naming_both(plan, tmp_path):
    save_plan(plan, tmp_path / "p.json")
    vol = small_phantom().volume
    other = dataclasses.replace(vol, identifiers={**vol.identifiers,
                                                  "series_instance_uid": "1.2.3.4.5",
                                                  "series_description": "Other CT 2mm"})
    with pytest.raises(WrongSeriesError) as err:
        load_plan(tmp_path / "p.json", other)
    msg = str(err.value)
    assert plan.series["series_instance_uid"] in msg and "1.2.3.4.5" in msg
    assert "Other CT 2mm" in msg
    assert isinstance(err.value, FluoroplanError)
    # same UID, other voxels: refused by the fingerprint
    hu = vol.hu.copy()
    hu[::7, ::7, ::7] += 100
    changed = dataclasses.replace(vol, hu=hu)
    with pytest.raises(WrongSeriesError, match="fingerprint"):
        load_plan(tmp_path / "p.json", changed)


def _damaged(tmp_path, doc: dict, name="bad.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("damage, field", [
    (lambda d: d["trajectories"][0].__setitem__("entry_lps", "12,3,4"), "entry_lps"),
    (lambda d: d["trajectories"][1].__setitem__("depth_mm", "deep"), "depth_mm"),
    (lambda d: d["trajectories"][0].__setitem__("depth_mm", 12.0), "depth_mm"),
    (lambda d: d["trajectories"][0]["checks"][0].__setitem__("status", "fine"), "status"),
    (lambda d: d["trajectories"][0]["bullseye"].__setitem__("primary_deg", None), "primary_deg"),
    (lambda d: d["trajectories"][0]["needle"].__setitem__("length_mm", 120.0), "needle"),
    (lambda d: d["trajectories"][0].__delitem__("edited"), "edited"),
    (lambda d: d["trajectories"][0].__setitem__("edited", "yes"), "edited"),
    (lambda d: d["targets"].pop(0), "not among the plan's targets"),
    (lambda d: d.__setitem__("trajectories", {}), "trajectories"),
    (lambda d: d.__setitem__("colour", "red"), "colour"),
    (lambda d: d["series"].__setitem__("series_instance_uid", 7), "series_instance_uid"),
])
def test_wrong_types_refused(plan, tmp_path, damage, field):
    doc = plan_document(plan)
    damage(doc)
    path = _damaged(tmp_path, doc)
    with pytest.raises(BadFileError) as err:
        load_plan(path)
    assert field in str(err.value) and "bad.json" in str(err.value)


def test_truncated_file_refused(plan, tmp_path):
    path = tmp_path / "PLAN.json"
    save_plan(plan, path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(BadFileError, match="damaged"):
        load_plan(path)
    path.write_text("")
    with pytest.raises(BadFileError):
        load_plan(path)
    with pytest.raises(BadFileError, match="does not exist"):
        load_plan(tmp_path / "nowhere.json")


def test_versions(plan, tmp_path):
    doc = plan_document(plan)
    doc["schema"] = "fluoroplan.plan/2"
    with pytest.raises(UnsupportedVersionError, match="newer fluoroplan"):
        load_plan(_damaged(tmp_path, doc))
    doc["schema"] = "fluoroplan.plan/0"
    with pytest.raises(UnsupportedVersionError, match="version 0"):
        load_plan(_damaged(tmp_path, doc))
    doc["schema"] = "fluoroplan.analysis/1"
    with pytest.raises(BadFileError, match="not a fluoroplan plan"):
        load_plan(_damaged(tmp_path, doc))


def test_cli_plan_file_loads(tmp_path):
    """The CLI's plan JSON is the same schema: `fluoroplan plan` output opens unchanged."""
    from fluoroplan.io.jsonio import write_json_atomic

    doc = plan_to_json(_plan())  # what `fluoroplan plan --json` writes (through write_json_atomic)
    write_json_atomic(tmp_path / "cli.json", doc)
    loaded = load_plan(tmp_path / "cli.json")
    assert len(loaded.trajectories) == len(doc["trajectories"])
    assert loaded.trajectories[0].depth_mm == pytest.approx(doc["trajectories"][0]["depth_mm"],
                                                            abs=0.01)


def test_damaged_autosave_reported(plan, tmp_path):
    path = tmp_path / "P.json"
    save_plan(plan, path)
    autosave(plan, path)
    auto = autosave_path(path)
    auto.write_text(auto.read_text()[:100])
    with pytest.raises(BadFileError):
        find_recovery(path)


def _as_other_session(file: Path) -> None:
    """Make an autosave look written by another (still running) session."""
    doc = json.loads(file.read_text())
    doc["pid"] = os.getpid() + 100000
    file.write_text(json.dumps(doc))


def test_saving_another_plan_of_the_series_keeps_another_sessions_recovery(plan, tmp_path):
    """The workstation autosaved edits of an unsaved plan; a command then writes a plan of the
    same series (as `plan --from-plan ... --json` does): the recovery copy stays."""
    uid = plan.series["series_instance_uid"]
    t = plan.trajectories[0]
    edited = dataclasses.replace(plan, trajectories=(
        t.moved(entry_lps=t.entry_lps + np.array([2.0, 0.0, 0.0])),) + plan.trajectories[1:])
    file = autosave(edited)
    _as_other_session(file)
    save_plan(plan, tmp_path / "from_command.json")
    assert file.exists() and find_recovery(series_uid=uid) is not None
    # the session that made it saving its plan clears it; so does saving the plan it holds
    autosave(edited)
    save_plan(edited, tmp_path / "mine.json")
    assert not file.exists()
    file = autosave(edited)
    _as_other_session(file)
    save_plan(find_recovery(series_uid=uid).plan, tmp_path / "restored.json")
    assert not file.exists()


def test_cli_plan_from_plan_keeps_the_workstations_recovery(plan, tmp_path):
    folder = tmp_path / "ct"
    from fluoroplan.resources.phantom import write_phantom

    write_phantom(folder, small_phantom())
    saved = tmp_path / "plan.json"
    save_plan(plan, saved)
    t = plan.trajectories[0]
    edited = dataclasses.replace(plan, trajectories=(
        t.moved(entry_lps=t.entry_lps + np.array([2.0, 0.0, 0.0])),) + plan.trajectories[1:])
    file = autosave(edited)
    _as_other_session(file)
    res = subprocess.run([sys.executable, "-m", "fluoroplan.cli", "plan", str(folder),
                          "--from-plan", str(saved), "--json", str(tmp_path / "again.json")],
                         capture_output=True, text=True, timeout=300, cwd=PROJECT,
                         env={**os.environ, "FLUOROPLAN_RECOVERY_DIR": str(file.parent)})
    assert res.returncode == 0, res.stderr
    assert file.exists(), "the workstation's unsaved edits were deleted"


def test_interrupted_saves_leave_no_temporary_files(plan, tmp_path):
    import time

    target = tmp_path / "case" / "PLAN.json"
    target.parent.mkdir()
    old = target.with_name(".PLAN.json.k1ll3d.tmp")
    fresh = target.with_name(".PLAN.json.w0rking.tmp")
    for f in (old, fresh):
        f.write_text("{")
    past = time.time() - 3600
    os.utime(old, (past, past))
    save_plan(plan, target)
    assert not old.exists() and fresh.exists()  # a save in progress elsewhere is left alone
    rec = tmp_path / "recovery"
    rec.mkdir(exist_ok=True)
    stale = rec / ".1.2.3.json.x.tmp"
    stale.write_text("{")
    os.utime(stale, (past, past))
    find_recoveries()  # what the workstation does at start-up
    assert not stale.exists()
