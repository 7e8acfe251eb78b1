"""The rehearsal window driven with pytest-qt: a complete attempt with keys and buttons on the
small phantom, scored like the engine scores the same attempt; save, replay, summary PDF and a
screenshot whose fluoro pane and angle sentence are checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QSettings, Qt  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from PySide6.QtWidgets import QFileDialog  # noqa: E402

from fluoroplan.app.qtcompat import emit  # noqa: E402
from fluoroplan.io.plan_json import plan_to_json  # noqa: E402
from fluoroplan.model.plan import Plan  # noqa: E402
from fluoroplan.planner.case import PlanningCase  # noqa: E402
from fluoroplan.planner.propose import propose  # noqa: E402
from fluoroplan.planner.targets import targets_from_analysis  # noqa: E402
from fluoroplan.rehearsal import score as rs  # noqa: E402
from fluoroplan.rehearsal.session import (  # noqa: E402
    RehearsalSession,
    load_attempt,
    mark_reference,
)
from fluoroplan.resources.phantom import make_phantom  # noqa: E402

pytestmark = pytest.mark.gui

GRID = {"shape_ijk": (192, 192, 160), "pixel_mm": 1.5, "slice_mm": 1.5}
TIP_SHIFT_MM = 3.0


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(0, **GRID)


@pytest.fixture(scope="module")
def case(phantom):
    return PlanningCase(phantom.volume, phantom.truth)


@pytest.fixture(scope="module")
def plan_json(case):
    """A plan whose reference (the expert trajectory) is the loose screw's cranial
    extrapedicular access from the left."""
    target = next(t for t in targets_from_analysis(case) if t.kind == "loose-screw")
    expert = propose(case, target, "extrapedicular-cranial", "left")
    assert expert.status != "fail"
    plan = Plan(series={}, targets=(target,), trajectories=(expert,))
    return mark_reference(json.loads(json.dumps(plan_to_json(plan))), expert.id)


@pytest.fixture
def window(qtbot, tmp_path, phantom, plan_json, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from fluoroplan.app.rehearsal_window import RehearsalWindow

    # a test that turns the dialogs on may leave unsaved work: closing (by pytest-qt at the
    # end of the test) then discards it instead of waiting for an answer
    monkeypatch.setattr(QMessageBox, "question",
                        staticmethod(lambda *a, **k: QMessageBox.StandardButton.Discard))

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = RehearsalWindow(phantom.volume, phantom.truth, plan_json, trainee="Trainee T",
                          interactive=False, settings=settings)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    win.activateWindow()
    qtbot.waitActive(win)
    qtbot.waitUntil(lambda: win.session is not None, timeout=30000)
    yield win
    win.interactive = False
    win.close()


class Counter:
    """A renderer for the engine-only twin session: counts calls, returns a tiny image."""

    def __init__(self):
        self.calls = 0

    def __call__(self, pose, isocenter_lps, needles):
        self.calls += 1
        return np.zeros((4, 4), np.uint8)


def _keys(qtbot, win, delta_deg: float, plus, minus) -> None:
    """Press Shift+arrow (5 deg) and arrow (1 deg) keys to move about ``delta_deg``."""
    n = int(round(delta_deg))
    key = plus if n > 0 else minus
    for _ in range(abs(n) // 5):
        qtbot.keyClick(win, key, Qt.KeyboardModifier.ShiftModifier)
    for _ in range(abs(n) % 5):
        qtbot.keyClick(win, key)


def _pick(qtbot, win, button, lps) -> np.ndarray:
    """Pick a point on the axial view: its slice, zoomed in, one click at the point."""
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    view = win.axial
    win.viewer.set_crosshair(lps)
    view.reset_view()
    view.zoom_by(6.0, view.widget_from_lps(lps))
    p = view.widget_from_lps(lps)
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(round(p.x()), round(p.y())))
    return win.entry_pick if button is win.pick_entry_button else win.target_pick


def _grey(image: QImage) -> np.ndarray:
    img = image.convertToFormat(QImage.Format.Format_Grayscale8)
    a = np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes())
    return a.reshape(img.height(), img.bytesPerLine())[:, : img.width()].copy()


def test_complete_attempt_through_the_gui(qtbot, window, case, tmp_path):
    win = window
    errors = []
    win.error_reported.connect(errors.append)
    s = win.session
    # --- the loose screw's target is chosen in the list ----------------------------------
    idx = next(i for i, t in enumerate(win.targets) if t.kind == "loose-screw")
    win.target_combo.setCurrentIndex(idx)
    emit(win.target_combo.activated, idx)
    assert win.session is s and s.target.kind == "loose-screw"
    assert "loose screw" in win.target_combo.currentText()
    assert not win.fluoro.has_image  # nothing on the monitor before the first shot
    assert "patient's" in win.sentence_label.text()
    screw_phase, work_phase = s.setup.phases

    # --- Task 1: the screw's bull's-eye with the arrow keys (1 and 5 deg) ------------------
    r1, a1 = screw_phase.pose.table_angles_deg
    _keys(qtbot, win, r1, Qt.Key.Key_Right, Qt.Key.Key_Left)
    _keys(qtbot, win, a1, Qt.Key.Key_Up, Qt.Key.Key_Down)
    assert s.state.table_deg == (round(r1), round(a1))
    assert win.rot_spin.value() == pytest.approx(round(r1))
    assert f"rotation {round(r1):+.1f}" in win.angle_label.text()
    assert "DICOM primary" in win.angle_label.text()
    assert not win.fluoro.has_image  # moving the C-arm takes no picture
    qtbot.keyClick(win, Qt.Key.Key_Space)
    assert s.state.shots == 1 and win.fluoro.has_image
    assert "Shots 1" in win.dose_label.text()
    first_image = s.last_image.image.copy()
    qtbot.mouseClick(win.bullseye_button, Qt.MouseButton.LeftButton)
    assert "screw-bullseye" in s.state.declared
    assert not win.bullseye_button.isEnabled() and win.working_button.isEnabled()

    # --- the working view with the sliders (0.1 deg) ---------------------------------------
    r2, a2 = work_phase.pose.table_angles_deg
    win.rot_slider.setValue(round(r2 * 10))
    win.ang_slider.setValue(round(a2 * 10))
    assert s.state.table_deg == pytest.approx((round(r2, 1), round(a2, 1)), abs=1e-6)
    assert win.fluoro.stale_text  # the monitor still holds the bull's-eye shot
    qtbot.keyClick(win, Qt.Key.Key_F)  # the foot pedal
    assert s.state.shots == 2 and not win.fluoro.stale_text
    assert not np.array_equal(first_image, s.last_image.image)
    qtbot.mouseClick(win.working_button, Qt.MouseButton.LeftButton)
    assert s.phase is None

    # --- Task 2: a needle parallel to the expert's, its tip shifted 3 mm sideways -----------
    ref = s.reference
    n = ref.direction_lps
    perp = np.cross(n, [1.0, 0.0, 0.0])
    perp /= np.linalg.norm(perp)
    tip_want = ref.target_lps + TIP_SHIFT_MM * perp
    depth_mm = 2.0 * round(ref.depth_mm / 2.0)  # a whole number of 2 mm steps
    entry_want = tip_want - depth_mm * n
    entry = _pick(qtbot, win, win.pick_entry_button, entry_want)
    qtbot.mouseClick(win.nudge_buttons["right"], Qt.MouseButton.LeftButton)
    assert np.linalg.norm(win.entry_pick - entry) == pytest.approx(1.0)
    qtbot.mouseClick(win.nudge_buttons["left"], Qt.MouseButton.LeftButton)
    np.testing.assert_allclose(win.entry_pick, entry, atol=1e-9)
    target = _pick(qtbot, win, win.pick_target_button, tip_want)
    win.axial.reset_view()
    np.testing.assert_allclose(entry, entry_want, atol=0.15)
    np.testing.assert_allclose(target, tip_want, atol=0.15)
    assert "Entry: (" in win.picks_label.text() and "Target: (" in win.picks_label.text()
    qtbot.mouseClick(win.place_button, Qt.MouseButton.LeftButton)
    assert s.state.entry_lps is not None
    fives = int(depth_mm // 5)
    if (depth_mm - 5 * fives) % 2:
        fives -= 1
    twos = int(round((depth_mm - 5 * fives) / 2))
    for _ in range(fives):
        qtbot.keyClick(win, Qt.Key.Key_A, Qt.KeyboardModifier.ShiftModifier)
    for _ in range(twos):
        qtbot.keyClick(win, Qt.Key.Key_A)
    qtbot.keyClick(win, Qt.Key.Key_W)  # one step back and forth again
    assert s.state.depth_mm == pytest.approx(depth_mm - 2.0)
    qtbot.mouseClick(win.step_buttons["adv"], Qt.MouseButton.LeftButton)
    assert s.state.depth_mm == pytest.approx(depth_mm)
    assert f"{depth_mm:.1f} mm inserted" in win.needle_label.text()

    # re-aiming with the tip in bone is refused with a dialog that says what to do
    assert case.hu_at(s.state.tip_lps[None])[0] >= 150
    win.set_pick("target", target + np.array([0.0, 0.0, 4.0]))
    qtbot.mouseClick(win.place_button, Qt.MouseButton.LeftButton)
    assert errors and "in bone" in errors[-1] and "Withdraw" in errors[-1]
    assert s.state.corrections == 0 and s.state.depth_mm == pytest.approx(depth_mm)
    win.set_pick("target", target)

    # progression view: the C-arm turns, the trainee still has to shoot
    qtbot.mouseClick(win.lateral_button, Qt.MouseButton.LeftButton)
    lat = s.lateral_pose().table_angles_deg
    assert s.state.table_deg == pytest.approx(lat, abs=1e-6) and s.state.shots == 2
    qtbot.keyClick(win, Qt.Key.Key_Space)
    assert s.state.shots == 3
    assert "Depth on this lateral shot" in win.depth_label.text()
    assert "posterior wall" in win.depth_label.text()

    # --- a screenshot: the fluoro pane shows an image, the angles come with the sentence ----
    qtbot.wait(50)
    shot = win.grab().toImage()
    assert shot.save(str(tmp_path / "rehearsal.png"), "PNG")
    grey = _grey(shot)
    dpr = shot.devicePixelRatio()
    r = win.fluoro.image_rect()
    top_left = win.fluoro.mapTo(win, QPoint(int(r.left()), int(r.top())))
    y0, x0 = int(top_left.y() * dpr) + 4, int(top_left.x() * dpr) + 4
    pane = grey[y0: y0 + int(r.height() * dpr) - 8, x0: x0 + int(r.width() * dpr) - 8]
    assert pane.size > 100 * 100 and pane.std() > 15  # a DRR, not a flat field
    corner = win.fluoro.mapTo(win, QPoint(2, win.fluoro.height() // 2))
    assert grey[int(corner.y() * dpr), int(corner.x() * dpr)] < 10  # monitor background
    assert "patient's" in win.sentence_label.text()
    assert win.sentence_label.isVisible()

    # --- end: the score the window shows is the engine's for the same attempt -------------
    with qtbot.waitSignal(win.attempt_ended, timeout=10000) as ended:
        qtbot.mouseClick(win.end_button, Qt.MouseButton.LeftButton)
    score = ended.args[0]
    twin = RehearsalSession(case, s.target, plan_json=None, reference=s.reference,
                            renderer=Counter())
    for ev in s.events[1:]:
        kind = ev["type"]
        if kind == "move_to" or kind in ("rotate", "angulate"):
            twin.move_to(*ev["result_table_deg"])
        elif kind == "shot":
            twin.shot()
        elif kind == "declare":
            twin.declare_view()
        elif kind == "place":
            twin.place(ev["entry_lps"], ev["target_lps"])
        elif kind == "advance":
            twin.advance(ev["mm"])
        elif kind == "withdraw":
            twin.withdraw(ev["mm"])
    expected = twin.end()
    m = expected.metrics
    assert m["tip_error_mm"] == pytest.approx(TIP_SHIFT_MM, abs=0.2)
    assert m["shots"] == 3 == score.metrics["shots"]
    assert m["bullseye_error_deg"] < s.setup.tolerance_deg
    # the documented losses: nothing for views within tolerance or for 3 shots; 5 points per
    # mm of end-point error beyond the free 1 mm
    assert expected.parts["bullseye"] == 0.0 and expected.parts["shots"] == 0.0
    assert expected.parts["endpoint"] == pytest.approx(
        rs.POINTS_PER_MM * (m["tip_error_mm"] - rs.ENDPOINT_FREE_MM), abs=1e-3)
    assert expected.parts["endpoint"] == pytest.approx(10.0, abs=1.0)
    assert score.total == pytest.approx(expected.total, abs=1e-6)
    dlg = win.score_dialog
    assert dlg is not None and dlg.isVisible()
    assert dlg.total_label.text() == f"Score {expected.total:.1f} / 100"
    shown = dlg.lost_texts()
    for pts, reason in expected.lost:
        sign = f"-{pts:.1f}" if pts > 0 else "0.0"
        assert any(reason in line and line.strip().startswith(sign) for line in shown), reason
    assert any(f"{m['tip_error_mm']:.1f} mm from the expert target" in t for t in shown)
    assert win.axial.expert is not None  # the expert's trajectory is revealed now
    assert not win.fluoro_button.isEnabled()
    before = s.state.shots
    qtbot.keyClick(win, Qt.Key.Key_Space)  # no shot after the end
    assert s.state.shots == before

    # --- File > Save attempt, then open it again and replay it ------------------------------
    path = tmp_path / "attempt.json"
    orig = QFileDialog.getSaveFileName
    QFileDialog.getSaveFileName = staticmethod(lambda *a, **k: (str(path), ""))
    try:
        win.act_save.trigger()
    finally:
        QFileDialog.getSaveFileName = orig
    saved = load_attempt(path)
    assert saved["trainee"] == "Trainee T"
    assert saved["score"]["total"] == pytest.approx(expected.total, abs=1e-3)
    dlg.close()
    assert win.open_attempt(path)
    assert win.replay_bar.isVisible() and win.replay_index == 0
    assert not win.fluoro.has_image  # the start of the attempt: no shot yet
    steps = []
    while win.replay_index < len(saved["events"]) - 1:
        qtbot.mouseClick(win.replay_buttons["next"], Qt.MouseButton.LeftButton)
        steps.append((win.replay_index, win.fluoro.has_image, win.dose_label.text()))
    assert [i for i, _, _ in steps] == list(range(1, len(saved["events"])))
    first_shot = next(i for i, e in enumerate(saved["events"]) if e["type"] == "shot")
    assert all(has == (i >= first_shot) for i, has, _ in steps)
    assert "Shots 3" in steps[-1][2]
    last = win.replay_data["states"][-1]
    assert last.ended and last.depth_mm == pytest.approx(depth_mm)
    np.testing.assert_allclose(last.tip_lps, s.state.tip_lps, atol=1e-3)
    assert win.score_dialog is not None
    assert win.score_dialog.total_label.text() == f"Score {expected.total:.1f} / 100"
    qtbot.mouseClick(win.replay_buttons["first"], Qt.MouseButton.LeftButton)
    assert win.replay_index == 0
    win.leave_replay()
    assert not win.replay_bar.isVisible()

    # --- the summary sheet of the attempts ended here ---------------------------------------
    pdf = win.export_summary(tmp_path / "summary.pdf")
    assert pdf is not None and pdf.stat().st_size > 1000
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                              text=True, check=True).stdout
        row = next(line for line in text.splitlines() if "Trainee T" in line)
        assert f"{expected.total:.1f}" in row and "loose-screw:L2-left" in row
    assert len([e for e in errors if "in bone" not in e]) == 0, errors


def _button_places(win) -> dict:
    from PySide6.QtWidgets import QPushButton

    return {b.objectName(): b.mapTo(win, QPoint(0, 0)) for b in
            win.panel.findChildren(QPushButton) if b.isVisible()}


def test_buttons_stay_put_and_the_axial_pane_shows_the_spine(qtbot, window):
    """Issue 16, point 9: the panel's buttons do not move as the texts above them change
    (a shot, a declared view, picks, a placed and advanced needle), and the axial pane opens
    zoomed on the spine, not on the whole field."""
    win = window
    win.resize(1600, 1000)
    qtbot.wait(50)
    # the axial pane: zoomed on the spine (the vertebrae and screws fill it)
    ax = win.axial
    g = ax.grid
    r = ax._view_rect()
    fit_all = min(r.width() / (g.shape[1] * g.pixel_mm[0]), r.height() / (g.shape[0] * g.pixel_mm[1]))
    assert ax.pixels_per_mm() > 1.15 * fit_all
    spine = np.mean([v.vertebra_centroid_lps for v in win.case.findings.vertebrae], axis=0)
    c = ax.widget_from_lps(spine)
    assert r.contains(c)
    places = _button_places(win)
    assert {"fluoro_button", "bullseye_button", "pick_entry_button", "place_button",
            "end_button"} <= set(places)

    def same(when: str) -> None:
        now = _button_places(win)
        moved = {k: (places[k], now[k]) for k in places if k in now and now[k] != places[k]}
        assert not moved, f"after {when}: {moved}"

    s = win.session
    screw_phase, work_phase = s.setup.phases
    _keys(qtbot, win, screw_phase.pose.table_angles_deg[0], Qt.Key.Key_Right, Qt.Key.Key_Left)
    qtbot.keyClick(win, Qt.Key.Key_Space)
    same("a shot")
    qtbot.mouseClick(win.bullseye_button, Qt.MouseButton.LeftButton)
    same("declaring the bull's-eye")
    win.rot_slider.setValue(round(work_phase.pose.table_angles_deg[0] * 10))
    win.ang_slider.setValue(round(work_phase.pose.table_angles_deg[1] * 10))
    qtbot.keyClick(win, Qt.Key.Key_F)
    qtbot.mouseClick(win.working_button, Qt.MouseButton.LeftButton)
    same("declaring the working view")
    ref = s.reference
    _pick(qtbot, win, win.pick_entry_button, ref.entry_lps)
    _pick(qtbot, win, win.pick_target_button, ref.target_lps)
    same("picking the entry and the target")
    qtbot.mouseClick(win.place_button, Qt.MouseButton.LeftButton)
    for _ in range(4):
        qtbot.keyClick(win, Qt.Key.Key_A, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClick(win, Qt.Key.Key_Space)
    same("placing and advancing the needle")
    qtbot.mouseClick(win.lateral_button, Qt.MouseButton.LeftButton)
    qtbot.keyClick(win, Qt.Key.Key_Space)
    same("a progression view shot")


def test_biplane_suite_in_the_rehearsal_window(qtbot, window):
    win = window
    assert not win.fluoro_lateral.isVisible() and not win.lateral_shot_button.isVisible()
    # ticking the suite before anything is done restarts the attempt on a biplane suite
    qtbot.mouseClick(win.biplane_check, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: win.session is not None and win.session.setup.biplane,
                    timeout=30000)
    assert win.fluoro_lateral.isVisible() and win.lateral_shot_button.isVisible()
    frontal = win.session.state.table_deg
    with qtbot.waitSignal(win.shot_taken, timeout=30000):
        qtbot.keyClick(win, Qt.Key.Key_G)  # the lateral plane's shot, by its key
    st = win.session.state
    assert st.shots == 1 and st.table_deg == frontal  # counted; the frontal plane stayed
    assert win.fluoro_lateral.has_image and not win.fluoro.has_image
    pose = win.fluoro_lateral.projection.pose
    lat = win.case.vertebra(win.session.target.level).left_lps
    assert abs(pose.detector_dir_lps @ lat) == pytest.approx(1.0, abs=1e-6)  # true lateral
    assert "lateral plane" in win.fluoro_lateral.caption
    shown = _grey(win.fluoro_lateral.grab().toImage())
    assert shown.std() > 10  # an image, not an empty monitor
    # the frontal plane's shot goes to its own monitor
    with qtbot.waitSignal(win.shot_taken, timeout=30000):
        qtbot.keyClick(win, Qt.Key.Key_Space)
    assert win.fluoro.has_image and win.session.state.shots == 2


def test_space_in_an_angle_box_moves_the_c_arm_there_and_shoots(qtbot, window):
    win = window
    qtbot.waitUntil(lambda: win.session is not None, timeout=30000)
    win.rot_spin.setFocus()
    win.rot_spin.selectAll()
    qtbot.keyClicks(win.rot_spin, "12.5")
    with qtbot.waitSignal(win.shot_taken, timeout=30000):
        qtbot.keyClick(win.rot_spin, Qt.Key.Key_Space)
    st = win.session.state
    assert st.shots == 1
    assert st.table_deg[0] == pytest.approx(12.5)  # the typed angle, then the shot
    assert win.rot_spin.value() == pytest.approx(12.5)  # the box keeps it (not blanked)


def test_closing_with_an_unsaved_attempt_offers_to_save_it(qtbot, window, tmp_path,
                                                          monkeypatch):
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    win = window
    win.interactive = True
    qtbot.waitUntil(lambda: win.session is not None, timeout=30000)
    with qtbot.waitSignal(win.shot_taken, timeout=30000):
        qtbot.keyClick(win, Qt.Key.Key_Space)
    asked = []
    answer = [QMessageBox.StandardButton.Cancel]
    monkeypatch.setattr(QMessageBox, "question",
                        staticmethod(lambda *a, **k: asked.append(a[2]) or answer[0]))
    assert not win.close()  # Cancel: the window stays, the attempt with it
    assert win.isVisible() and "not been saved" in asked[-1]
    out = tmp_path / "attempt.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(out), "")))
    answer[0] = QMessageBox.StandardButton.Save
    assert win.close()
    assert json.loads(out.read_text())["schema"] == "fluoroplan.rehearsal/1"


def test_refused_actions_are_dialogs_and_the_window_survives(qtbot, window, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    seen = []
    monkeypatch.setattr(QMessageBox, "warning",
                        staticmethod(lambda parent, title, text, *a, **k: seen.append(
                            (title, text)) or QMessageBox.StandardButton.Ok))
    win = window
    win.interactive = True
    s = win.session
    # placing before Task 1 is done
    win.set_pick("entry", s.reference.entry_lps)
    win.set_pick("target", s.reference.target_lps)
    win.place_needle()
    assert seen and "Task 1" in seen[-1][1]
    # declaring the working view first
    win.declare("working-view")
    assert "screw L2-left bull's-eye" in seen[-1][1]
    # the C-arm stops at its limit and says so
    for _ in range(30):
        qtbot.keyClick(win, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    assert s.state.table_deg[0] == s.setup.limits.rotation_deg[1]
    assert "limit" in win.angle_label.text()
    # a file that is not an attempt
    bad = win.settings.fileName() + ".json"
    with open(bad, "w") as fh:
        fh.write('{"schema": "something else"}')
    assert not win.open_attempt(bad)
    assert win.replay_data is None and "rehearsal" in seen[-1][1].lower()
    # summary with nothing ended
    assert win.export_summary(bad + ".pdf") is None
    assert "No attempt to summarise" in seen[-1][1]
    # still alive: a shot works
    qtbot.keyClick(win, Qt.Key.Key_Space)
    assert s.state.shots == 1 and win.fluoro.has_image


def _env(**changes) -> dict:
    env = dict(os.environ)
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def test_cli_without_display_says_so():
    env = _env(DISPLAY=None, WAYLAND_DISPLAY=None, QT_QPA_PLATFORM=None)
    r = subprocess.run([sys.executable, "-m", "fluoroplan.cli", "rehearse", "gui", "--demo"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "needs a display" in r.stderr and "xvfb-run" in r.stderr


def test_cli_screenshot_of_a_case_folder(tmp_path, phantom):
    from fluoroplan.resources.phantom import write_phantom

    write_phantom(tmp_path / "case", phantom)
    shot = tmp_path / "rehearse.png"
    env = _env(DISPLAY=None, QT_QPA_PLATFORM="offscreen", VTK_DEFAULT_OPENGL_WINDOW=None,
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    r = subprocess.run([sys.executable, "-m", "fluoroplan.cli", "rehearse", "gui",
                        str(tmp_path / "case" / "dicom"), "--trainee", "CLI trainee",
                        "--screenshot", str(shot)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    img = QImage(str(shot))
    assert not img.isNull() and img.width() > 800
    grey = _grey(img)
    # the fluoro monitor (left third) holds the shot: varied grey, not a flat field
    left = grey[grey.shape[0] // 4: 3 * grey.shape[0] // 4, 30: grey.shape[1] // 3 - 30]
    assert left.std() > 15
