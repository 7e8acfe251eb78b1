"""The start-up offer of plans a previous session left unsaved, driven with pytest-qt on the
phantom case: open the case and restore the plan, discard it (after a confirmation), and a plan
whose CT folder the app does not know (the message names the series; the per-case offer then
appears when that CT is opened)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import test_gui_planning as gp  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

# the planning tests' fixtures (module-scoped ones run once here)
phantom, case_dir, boxes, analysed_once = gp.phantom, gp.case_dir, gp.boxes, gp.analysed_once
WAIT_MS, _settle = gp.WAIT_MS, gp._settle

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def crashed_plan(phantom, case_dir):
    """What a crashed session left: an unsaved plan of the phantom's series with two
    trajectories (not yet written). Returns (plan, volume)."""
    from fluoroplan.io import default_series, load_series, scan
    from fluoroplan.model.plan import Plan
    from fluoroplan.planner.case import PlanningCase
    from fluoroplan.planner.propose import manual_trajectory
    from fluoroplan.planner.targets import targets_from_analysis

    volume = load_series(default_series(scan(case_dir)))
    case = PlanningCase(volume, phantom.truth)
    screw = next(t for t in targets_from_analysis(case) if t.kind == "loose-screw")
    first = manual_trajectory(case, screw.point_lps + [25.0, 70.0, 0.0], screw.point_lps, screw)
    second = manual_trajectory(case, screw.point_lps + [5.0, 75.0, 10.0], screw.point_lps, screw)
    trajs = (first, replace(second, id=f"{second.id}-2"))
    return Plan(series=volume.series_json(), targets=(screw,), trajectories=trajs), volume


@pytest.fixture
def recovery(tmp_path, monkeypatch, crashed_plan):
    """The autosave of the crashed plan in an isolated recovery folder; returns its path."""
    from fluoroplan.io.planfile import autosave

    monkeypatch.setenv("FLUOROPLAN_RECOVERY_DIR", str(tmp_path / "recovery"))
    saved = autosave(crashed_plan[0])
    assert saved.parent == tmp_path / "recovery" and saved.is_file()
    return saved


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def start(qtbot, boxes):
    """Start a new main window on ``settings`` (as the app starts); returns it."""
    from fluoroplan.app.main_window import MainWindow

    made = []

    def make(settings):
        win = MainWindow(settings=settings)
        qtbot.addWidget(win)
        win.resize(1500, 950)
        win.show()
        made.append(win)
        return win

    yield make
    for win in made:
        win.close()


def _startup_box(qtbot, win) -> QMessageBox:
    qtbot.waitUntil(lambda: (b := win.findChild(QMessageBox, "startup_recovery_box")) is not None
                    and b.isVisible(), timeout=5000)
    return win.findChild(QMessageBox, "startup_recovery_box")


def _button(box: QMessageBox, text: str):
    found = [b for b in box.buttons() if b.text() == text]
    assert len(found) == 1, [b.text() for b in box.buttons()]
    return found[0]


def test_start_offers_the_autosaved_plan_and_restores_it_with_its_case(
        qtbot, start, settings, recovery, crashed_plan, case_dir, boxes):
    from fluoroplan.app.recovery import case_path, remember_case_path

    plan, volume = crashed_plan
    uid = volume.identifiers["series_instance_uid"]
    remember_case_path(settings, uid, str(case_dir.resolve()))  # as the app does on loading
    win = start(settings)
    box = _startup_box(qtbot, win)
    text = box.text()
    assert volume.identifiers["series_description"] in text
    assert "2 trajectories" in text and "autosaved on" in text
    assert str(case_dir.resolve()) in box.informativeText()
    assert win.volume is None and not win.busy  # nothing loaded before the answer
    pl = win.planning
    with qtbot.waitSignal(pl.analysis_ready, timeout=WAIT_MS):
        _button(box, "Open the case and restore the plan").click()
    assert win.volume.identifiers["series_instance_uid"] == uid
    qtbot.waitUntil(lambda: len(pl.doc.trajectories) == 2, timeout=5000)
    # restored without a second question
    per_case = win.findChild(QMessageBox, "recovery_box")
    assert per_case is None or not per_case.isVisible()
    assert [t.id for t in pl.doc.trajectories] == [t.id for t in plan.trajectories]
    for got, want in zip(pl.doc.trajectories, plan.trajectories, strict=True):
        np.testing.assert_allclose(got.entry_lps, want.entry_lps, atol=1e-3)
        np.testing.assert_allclose(got.target_lps, want.target_lps, atol=1e-3)
    assert pl.plan_panel.table.rowCount() == 2
    assert win.windowTitle().startswith("*")  # restored, not saved anywhere
    assert recovery.is_file()  # kept until the plan is saved
    assert case_path(settings, uid) == str(case_dir.resolve())
    _settle(qtbot, win)
    assert all(t.checks for t in pl.doc.trajectories)
    assert not boxes


def test_discard_at_start_asks_then_removes_the_autosave(qtbot, start, settings, recovery,
                                                         crashed_plan, case_dir, boxes):
    from fluoroplan.app.recovery import remember_case_path

    volume = crashed_plan[1]
    remember_case_path(settings, volume.identifiers["series_instance_uid"],
                       str(case_dir.resolve()))
    win = start(settings)
    box = _startup_box(qtbot, win)
    _button(box, "Discard").click()
    # a confirmation first; Cancel goes back to the question and keeps the file
    qtbot.waitUntil(lambda: win.startup_recovery.confirm_box is not None, timeout=5000)
    confirm = win.startup_recovery.confirm_box
    assert confirm.objectName() == "recovery_discard_box" and confirm.isVisible()
    assert "2 trajectories" in confirm.text()
    confirm.button(QMessageBox.StandardButton.Cancel).click()
    assert recovery.is_file()
    box = _startup_box(qtbot, win)
    _button(box, "Discard").click()
    qtbot.waitUntil(lambda: win.startup_recovery.confirm_box is not None, timeout=5000)
    win.startup_recovery.confirm_box.button(QMessageBox.StandardButton.Discard).click()
    qtbot.waitUntil(lambda: win.startup_recovery.done, timeout=5000)
    assert not recovery.exists()
    assert win.volume is None and not win.busy  # nothing opened
    assert not boxes
    # the next start has nothing to offer
    again = start(settings)
    qtbot.wait(100)
    assert again.findChild(QMessageBox, "startup_recovery_box") is None
    assert again.startup_recovery is None


def test_unknown_ct_folder_names_the_series_and_the_case_offers_it_when_opened(
        qtbot, start, settings, recovery, crashed_plan, case_dir, boxes):
    from fluoroplan.app.recovery import case_path

    volume = crashed_plan[1]
    uid = volume.identifiers["series_instance_uid"]
    win = start(settings)  # no folder remembered for this series
    box = _startup_box(qtbot, win)
    assert volume.identifiers["series_description"] in box.text() and uid in box.text()
    assert "open its CT folder" in box.informativeText()
    assert sorted(b.text() for b in box.buttons()) == ["Discard", "Keep for later"]  # no open
    _button(box, "Keep for later").click()
    qtbot.waitUntil(lambda: win.startup_recovery.done, timeout=5000)
    assert recovery.is_file() and win.volume is None
    # opening the CT: the path is remembered and the per-case offer appears (as before)
    pl = win.planning
    with qtbot.waitSignal(pl.analysis_ready, timeout=WAIT_MS):
        win.open_folder(case_dir)
    assert case_path(settings, uid) == str(case_dir.resolve())
    per_case = win.findChild(QMessageBox, "recovery_box")
    assert per_case is not None and per_case.isVisible() and "2 trajectories" in per_case.text()
    per_case.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: len(pl.doc.trajectories) == 2, timeout=5000)
    _settle(qtbot, win)
    assert not boxes


def test_restoring_from_a_folder_of_several_series_opens_the_plans_series(
        qtbot, start, settings, recovery, crashed_plan, case_dir, phantom, tmp_path, boxes):
    """The remembered folder holds the plan's series and a thicker one: the plan's series is
    loaded without the series chooser."""
    import shutil

    from fluoroplan.app.recovery import remember_case_path
    from fluoroplan.io.dicom_write import new_study_uids, write_series

    volume = crashed_plan[1]
    uid = volume.identifiers["series_instance_uid"]
    folder = tmp_path / "several"
    shutil.copytree(case_dir, folder / "thin")
    vol = phantom.volume
    study = {**new_study_uids(), "series_number": 3, "series_description": "Spine 3 mm"}
    write_series(np.ascontiguousarray(vol.hu[::2]), vol.lps_from_ijk @ np.diag([1.0, 1.0, 2.0, 1.0]),
                 folder / "thick", study=study, patient_position=vol.patient_position)
    remember_case_path(settings, uid, str(folder))
    win = start(settings)
    box = _startup_box(qtbot, win)
    pl = win.planning
    with qtbot.waitSignal(pl.analysis_ready, timeout=WAIT_MS):
        _button(box, "Open the case and restore the plan").click()
    assert win.series_chooser is None
    assert win.volume.identifiers["series_instance_uid"] == uid
    qtbot.waitUntil(lambda: len(pl.doc.trajectories) == 2, timeout=5000)
    _settle(qtbot, win)
    assert not boxes
