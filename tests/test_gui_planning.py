"""The planning workstation driven with pytest-qt: analysis, targets, proposals, edits with
re-checks, undo/redo, the virtual C-arm, plan files, the PDF report and screenshots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("DISPLAY"):  # see test_gui_shell.py: VTK draws with OSMesa in-process
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, QSettings, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from fluoroplan.resources.phantom import make_phantom, write_phantom  # noqa: E402

pytestmark = pytest.mark.gui

GRID = {"shape_ijk": (192, 192, 160), "pixel_mm": 1.5, "slice_mm": 1.5}
WAIT_MS = 90000
YELLOW_MIN = (200, 150)  # r, g of the selected trajectory's colour; blue below 90


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(0, **GRID)


@pytest.fixture(scope="module", autouse=True)
def analysed_once():
    """Each CT of the module is analysed once: the worker's analysis (``workers._analyse``,
    still called on the worker for every CT opened) returns the first result for a CT with
    the same content. The first test of a CT checks that analysis; the later ones reuse it
    instead of repeating 2-3 s of the same computation. Analyses with a label map, and
    cancelled ones, are not kept. Yields the kept results by CT fingerprint."""
    import threading

    from fluoroplan.app.planning import workers

    real = workers._analyse
    kept: dict[str, tuple] = {}
    lock = threading.Lock()

    def once(volume, progress, cancel, label_map=None):
        if label_map is not None:
            return real(volume, progress, cancel, label_map=label_map)
        key = volume.fingerprint()
        with lock:
            if key not in kept:
                kept[key] = real(volume, progress, cancel)
            return kept[key]

    mp = pytest.MonkeyPatch()
    mp.setattr(workers, "_analyse", once)
    yield kept
    mp.undo()


@pytest.fixture(scope="module")
def case_dir(phantom, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plancase")
    write_phantom(root, phantom)
    return root / "dicom"


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory) -> Path:
    """Another CT (another seed: other UIDs and voxels)."""
    root = tmp_path_factory.mktemp("othercase")
    write_phantom(root, make_phantom(1, **GRID))
    return root / "dicom"


@pytest.fixture
def boxes(monkeypatch):
    """Record message boxes instead of showing them: list of (kind, title, text)."""
    seen = []
    for kind in ("information", "warning", "critical"):
        def fake(parent, title, text, *args, _kind=kind, **kwargs):
            seen.append((_kind, title, text))
            return QMessageBox.StandardButton.Ok

        monkeypatch.setattr(QMessageBox, kind, staticmethod(fake))

    def question(parent, title, text, *args, **kwargs):
        seen.append(("question", title, text))
        return QMessageBox.StandardButton.Discard

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return seen


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, boxes):
    from fluoroplan.app.main_window import MainWindow

    monkeypatch.setenv("FLUOROPLAN_RECOVERY_DIR", str(tmp_path / "recovery"))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.resize(1500, 950)
    win.show()
    qtbot.waitActive(win)
    yield win
    win.close()


def _open(qtbot, win, path) -> None:
    pl = win.planning
    with qtbot.waitSignal(pl.analysis_ready, timeout=WAIT_MS):
        win.open_folder(path)
    qtbot.waitUntil(lambda: win.is_ready and pl.is_settled(), timeout=WAIT_MS)


def _settle(qtbot, win) -> None:
    qtbot.waitUntil(win.planning.is_settled, timeout=WAIT_MS)


def _loose(phantom) -> dict:
    return next(s for s in phantom.truth["screws"] if s["loose"])


def _yellow(px) -> bool:
    r, g, b = (int(v) for v in px[:3])
    return r >= YELLOW_MIN[0] and g >= YELLOW_MIN[1] and b < 90


def _rgb(image) -> np.ndarray:
    from PySide6.QtGui import QImage

    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()


def _drag(qtbot, view, start: QPointF, end: QPointF) -> None:
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=start.toPoint())
    for f in (0.25, 0.5, 0.75, 1.0):
        p = start + (end - start) * f
        ev = QMouseEvent(QMouseEvent.Type.MouseMove, p, QPointF(view.mapToGlobal(p.toPoint())),
                         Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton,
                         Qt.KeyboardModifier.NoModifier)
        view.mouseMoveEvent(ev)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=end.toPoint())


def _key(qtbot, win, key, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    """A key press as the user makes it: to the active window (shortcuts need it active)."""
    from PySide6.QtWidgets import QApplication

    if QApplication.activeWindow() is not win:
        win.activateWindow()
        qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)
    qtbot.keyClick(win, key, modifiers)


def _accept_proposal(qtbot, win, target_id: str, boxes):
    pl = win.planning
    pl.select_target(target_id)
    assert pl.doc.target_id == target_id
    _key(qtbot, win, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    assert pl.propose_task is not None
    qtbot.waitUntil(lambda: pl.propose_task is None, timeout=WAIT_MS)
    assert not boxes
    assert pl.proposals_panel.selected() is not None
    _key(qtbot, win, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert len(pl.doc.trajectories) == 1
    _settle(qtbot, win)
    return pl.doc.trajectories[0]


# --- analysis and targets ------------------------------------------------------------------------
def test_analysis_fills_targets_and_3d(qtbot, window, case_dir, phantom):
    _open(qtbot, window, case_dir)
    pl = window.planning
    loose = _loose(phantom)
    tree = pl.targets_panel
    item = tree.items[f"screw:{loose['id']}"]
    assert "LOOSE" in item.text(0) and "halo" in item.text(1)
    halo = float(item.text(1).split("halo ")[1].split(" mm")[0])
    assert halo > 1.0  # a loose screw: the halo is wider than 1 mm
    tight = next(s for s in phantom.truth["screws"] if not s["loose"])
    assert "LOOSE" not in tree.items[f"screw:{tight['id']}"].text(0)
    fractured = [v["label"] for v in pl.doc.analysis_json["vertebrae"] if v["fracture_grade"]]
    assert fractured and all("Genant grade" in tree.items[f"vertebra:{lv}"].text(1)
                             for lv in fractured)
    # 3-D: the loose screw's head cap is orange, a tight one's is grey-blue
    v3 = window.view3d
    img = v3.capture()
    screws = {s["id"]: s for s in pl.doc.analysis_json["screws"]}

    def cap_pixel(s):
        head, tip = np.array(s["head_lps"]), np.array(s["tip_lps"])
        axis = (tip - head) / np.linalg.norm(tip - head)
        x, y = v3.display_from_lps(head - 18.9 * axis)  # the cap's outer face
        return img[int(round(y)), int(round(x))].astype(int)

    r, g, b = cap_pixel(screws[loose["id"]])
    assert r > 150 and r > b + 60, (r, g, b)
    r, g, b = cap_pixel(screws[tight["id"]])
    assert b > r + 20, (r, g, b)
    # selecting the loose screw makes it the target and moves the crosshair to it
    tree.tree.setCurrentItem(item)
    assert pl.doc.target_id == f"loose-screw:{loose['id']}"
    target = pl.doc.target(pl.doc.target_id)
    np.testing.assert_allclose(window.state.crosshair_lps, target.point_lps, atol=1.6)
    assert pl.act_propose.isEnabled()


@pytest.fixture(scope="module")
def construct_phantom():
    """A cross-link at L1-L2 and vertebroplasty cement in L4."""
    return make_phantom(0, crosslinks=("L1",), cement=("L4",), **GRID)


@pytest.fixture(scope="module")
def construct_dir(construct_phantom, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("constructcase")
    write_phantom(root, construct_phantom)
    return root / "dicom"


def _violet(px) -> bool:
    r, g, b = (int(v) for v in px[:3])
    return r > g + 40 and b > g + 60


def test_crosslinks_and_cement_in_tree_and_3d(qtbot, window, construct_dir, construct_phantom):
    from fluoroplan.app.planning import CEMENT_RGB, CONNECTOR_RGB

    _open(qtbot, window, construct_dir)
    pl = window.planning
    aj = pl.doc.analysis_json
    assert len(aj["connectors"]) == 1 and len(aj["cement"]) == 1
    truth_link = construct_phantom.truth["crosslinks"][0]
    tree = pl.targets_panel
    link = tree.items["cross-link:L1-L2"]
    assert link.parent().text(0) == "Cross-links"
    assert link.text(0) == "cross-link L1-L2" and "between L1 and L2" in link.text(1)
    length = float(link.text(1).split(" mm")[0])
    assert length == pytest.approx(truth_link["length_mm"], abs=5.0)
    cement = tree.items["cement:L4"]
    assert cement.parent().text(0) == "Cement"
    assert cement.text(0) == "cement L4" and "vertebroplasty" in cement.text(1)
    assert "augmenting" not in cement.text(1)
    ml = float(cement.text(1).split(", ")[1].split(" ml")[0])
    assert 0.3 < ml <= construct_phantom.truth["cement"][0]["volume_ml"]
    # choosing the cement moves the crosshair to it (no target: it is not treated)
    tree.tree.setCurrentItem(cement)
    assert pl.doc.target_id is None
    np.testing.assert_allclose(window.state.crosshair_lps, construct_phantom.truth["cement"][0]
                               ["center_lps"], atol=3.0)

    # 3-D: the cross-link is a violet bar from rod to rod, drawn where it projects
    v3 = window.view3d
    props = v3.renderer.GetViewProps()
    props = [props.GetItemAsObject(n) for n in range(props.GetNumberOfItems())]

    def coloured(rgb):
        return [a for a in props if hasattr(a, "GetProperty")
                and a.GetProperty().GetColor() == pytest.approx(rgb)]

    bars = coloured(CONNECTOR_RGB)
    assert len(bars) == 1
    b = bars[0].GetBounds()
    ends = np.array(truth_link["ends_lps"])
    assert b[0] < ends[:, 0].min() + 4 and b[1] > ends[:, 0].max() - 4  # spans rod to rod
    img = v3.capture()
    hits = 0
    for f in (0.2, 0.3, 0.7, 0.8):  # between a rod and the spinous process
        x, y = v3.display_from_lps(ends[0] + f * (ends[1] - ends[0]))
        hits += _violet(img[int(round(y)), int(round(x))])
    assert hits >= 3
    # the cement lies inside bone: a translucent blob where it is, and a "cement" label
    blobs = [a for a in coloured(CEMENT_RGB) if a.GetProperty().GetOpacity() < 1.0]
    assert len(blobs) == 1
    centre = np.array([(lo + hi) / 2 for lo, hi in zip(*[iter(blobs[0].GetBounds())] * 2,
                                                         strict=True)])
    np.testing.assert_allclose(centre, construct_phantom.truth["cement"][0]["center_lps"],
                               atol=4.0)
    labels = [a for a in props if hasattr(a, "GetInput") and a.GetInput() == "cement"]
    assert len(labels) == 1
    lx, ly = v3.display_from_lps(labels[0].GetPosition())
    h, w, _ = img.shape
    assert 0 <= lx < w and 0 <= ly < h  # in view
    patch = img[int(ly) - 8: int(ly) + 9, int(lx) - 20: int(lx) + 21].reshape(-1, 3).astype(int)
    near_cement = np.abs(patch - np.array(CEMENT_RGB) * 255).max(axis=1) < 40
    assert near_cement.sum() >= 10  # the label's text is drawn in the cement colour


def test_other_metal_listed_and_cement_named_by_where_it_is_on_a_real_ct(qtbot, window):
    from conftest import shared_data

    path = shared_data("totalseg-abdomen-ct", "ct.nii.gz")
    pl = window.planning
    with qtbot.waitSignal(pl.analysis_ready, timeout=WAIT_MS):
        window.open_file(path)
    qtbot.waitUntil(lambda: window.is_ready and pl.is_settled(), timeout=WAIT_MS)
    tree = pl.targets_panel
    # the femoral implant: its two metal objects are listed, said where they are
    others = [tree.items[k] for k in tree.items if k.startswith("other:")]
    assert len(others) == 2
    for it in others:
        assert it.text(0).startswith("metal, ") and " ml" in it.text(0)
        assert "not at a vertebra" in it.text(1) and "below S1" in it.text(1)
        assert "patient's LEFT" in it.text(1)  # a left femoral implant
    # cement: the deposit that counts, named by where it is (not a vertebra), no 0.0 ml rows
    cement = [tree.items[k] for k in tree.items if k.startswith("cement:")]
    assert len(cement) == 1, [c.text(0) for c in cement]
    assert cement[0].text(0) == "cement (not in a vertebra)"
    assert "not at a vertebra" in cement[0].text(1) and "0.0 ml" not in cement[0].text(1)
    # one 3-D label for it (the three overlapping labels of the specks are gone)
    props = pl.win.view3d.renderer.GetViewProps()
    labels = [props.GetItemAsObject(i) for i in range(props.GetNumberOfItems())]
    assert sum(1 for a in labels if hasattr(a, "GetInput") and a.GetInput() == "cement") == 1
    # issue 16, point 2: every loader note and analysis warning is in Notes, the grades that
    # the CT cannot tell apart named by their level and badged there
    notes = pl.notes_panel.table
    assert notes.rowCount() == len(window.volume.notes) + len(pl.doc.analysis_json["warnings"])
    graded = [notes.item(r, 1).text() for r in range(notes.rowCount())
              if "check it on the sagittal view" in notes.item(r, 2).text()]
    assert graded and all(tree.items[f"vertebra:{lv}"].icon(0).isNull() is False
                          for lv in graded)


# --- the main flow --------------------------------------------------------------------------------
def test_propose_accept_bullseye_drag_undo_save_pdf(qtbot, window, case_dir, phantom, tmp_path,
                                                    boxes):
    from fluoroplan.geometry.drr import NEEDLE_COLOUR
    from fluoroplan.planner.approaches import applicable

    _open(qtbot, window, case_dir)
    pl = window.planning
    target_id = f"loose-screw:{_loose(phantom)['id']}"
    traj = _accept_proposal(qtbot, window, target_id, boxes)
    jobs = applicable(pl.doc.case, pl.doc.target(target_id))
    assert pl.proposals_panel.table.rowCount() == len(jobs) >= 2
    assert pl.proposals_panel.checks.rowCount() > 5  # the checks of the selected proposal
    assert traj.checks and pl.plan_panel.checks.rowCount() == len(traj.checks)
    assert window.windowTitle().startswith("*")  # unsaved

    # the bull's-eye view: the needle is a dot where the projection puts it
    _key(qtbot, window, Qt.Key.Key_B)
    _settle(qtbot, window)
    carm = pl.carm
    assert carm.last_size == 512
    drr = carm.view.drr
    uv_aim = drr.projection.detector_px_from_lps(traj.aim_lps)
    uv_entry = drr.projection.detector_px_from_lps(traj.entry_lps)
    assert np.linalg.norm(uv_aim - uv_entry) < 1.0  # end-on: one point
    u, v = (int(round(c)) for c in uv_aim)
    assert tuple(drr.image[v, u]) == NEEDLE_COLOUR
    shown = _rgb(carm.view.grab().toImage())
    dpr = carm.view.devicePixelRatioF()
    w = carm.view.widget_from_px(uv_aim) * dpr
    assert _yellow(shown[int(round(w.y())), int(round(w.x()))])
    text = carm.angles_label.text()
    assert "patient's" in text and "DICOM primary" in text and "Bull's-eye" in text
    assert carm.pose.primary_deg == pytest.approx(traj.views["bullseye"]["primary_deg"], abs=0.01)
    assert carm.visibility_label.text()  # the metal-visibility verdict for this view
    # the needle views show the selected trajectory
    assert window.needle_views["across"].grid is not None

    # an Alt+arrow moves the C-arm 1 deg and keeps the sentence and the DICOM pair
    rot0 = carm.pose.table_angles_deg[0]
    _key(qtbot, window, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    assert carm.pose.table_angles_deg[0] == pytest.approx(rot0 + 1.0, abs=0.05)
    assert "patient's" in carm.angles_label.text() and "DICOM" in carm.angles_label.text()
    _settle(qtbot, window)
    assert carm.preview_ms and carm.full_ms

    # drag the entry in the axial view: geometry now, checks once the worker is done
    axial = window.views["axial"]
    window.state.set_crosshair(traj.entry_lps)
    start = axial.widget_from_lps(traj.entry_lps)
    end = start + QPointF(12.0, 4.0)
    before_checks = {c.name: c.value for c in traj.checks}
    with qtbot.waitSignal(pl.checks_updated, timeout=WAIT_MS):
        _drag(qtbot, axial, start, end)
        moved = pl.doc.selected
        assert moved.edited and not np.allclose(moved.entry_lps, traj.entry_lps)
        np.testing.assert_allclose(moved.target_lps, traj.target_lps)
    moved = pl.doc.selected
    np.testing.assert_allclose(axial.widget_from_lps(moved.entry_lps).x(), end.x(), atol=1.0)
    assert moved.checks and moved.depth_mm != pytest.approx(traj.depth_mm)
    after_checks = {c.name: c.value for c in moved.checks}
    assert after_checks["skin entry from the midline"] != before_checks["skin entry from the midline"]
    assert pl.drag_ms  # the drag redraw was timed

    # undo / redo restore the geometry exactly, with checks
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_allclose(pl.doc.selected.entry_lps, traj.entry_lps)
    assert pl.doc.selected.checks
    _key(qtbot, window, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_allclose(pl.doc.selected.entry_lps, moved.entry_lps)
    _settle(qtbot, window)

    # autosaved after each edit; saving writes the plan and clears the autosave and the "*"
    from fluoroplan.io.planfile import autosave_path

    series = pl.doc.plan.series["series_instance_uid"]
    auto = autosave_path(series_uid=series)
    assert auto.is_file()
    saved = tmp_path / "plan.json"
    assert pl.save_to(str(saved))
    assert not window.windowTitle().startswith("*") and not auto.exists()
    doc = json.loads(saved.read_text())
    assert len(doc["trajectories"]) == 1 and doc["trajectories"][0]["edited"] is True
    # change it, then reopen the saved file: the saved geometry comes back
    _key(qtbot, window, Qt.Key.Key_Delete)
    assert not pl.doc.trajectories
    assert pl.open_plan(str(saved))
    assert len(pl.doc.trajectories) == 1
    np.testing.assert_allclose(pl.doc.selected.entry_lps, moved.entry_lps, atol=1e-3)
    assert not boxes

    # the PDF report
    pdf = tmp_path / "plan.pdf"
    with qtbot.waitSignal(pl.pdf_written, timeout=WAIT_MS):
        assert pl.export_pdf(str(pdf))
    assert pdf.read_bytes()[:5] == b"%PDF-"


# --- placing by clicking, screenshots ---------------------------------------------------------------
def test_biplane_shows_the_lateral_plane_beside_the_frontal(qtbot, window, case_dir, phantom,
                                                             boxes):
    from fluoroplan.io.plan_json import pose_from_json

    _open(qtbot, window, case_dir)
    pl = window.planning
    traj = _accept_proposal(qtbot, window, f"loose-screw:{_loose(phantom)['id']}", boxes)
    carm = pl.carm
    assert not carm.lateral.isVisible()
    # the C-arm menu's biplane item, by its shortcut, as a user would
    _key(qtbot, window, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier
         | Qt.KeyboardModifier.ShiftModifier)
    _settle(qtbot, window)
    assert carm.biplane and carm.biplane_button.isChecked() and pl.act_biplane.isChecked()
    qtbot.waitUntil(lambda: carm.lateral.drr is not None, timeout=WAIT_MS)
    assert carm.lateral.isVisible() and carm.view.isVisible()
    # the lateral plane is the trajectory's progression view: the true lateral of its vertebra
    want = pose_from_json(traj.views["progression"], pl.position)
    lat = carm.lateral.drr.projection.pose
    assert lat.primary_deg == pytest.approx(want.primary_deg, abs=1e-6)
    assert traj.views["progression"]["true_lateral"]
    text = carm.lateral_label.text()
    assert text.startswith("Lateral plane: true lateral of L") and "% of its length" in text
    assert "reachable by the lateral plane" in text and "patient's" in text
    assert "patient's" in carm.lateral_label.toolTip() and "DICOM primary" in \
        carm.lateral_label.toolTip()
    # its own letters: a lateral of a prone patient has A/P at its sides, H at the top
    letters = carm.lateral.drr.marks.letters
    assert {letters["left"][0], letters["right"][0]} == {"A", "P"}
    assert letters["top"][0] == "H"
    # moving the frontal plane leaves the lateral plane where it is
    _key(qtbot, window, Qt.Key.Key_B)
    _settle(qtbot, window)
    carm.nudge(10.0, 0.0)
    _settle(qtbot, window)
    assert carm.lateral.drr.projection.pose.primary_deg == pytest.approx(want.primary_deg)
    assert carm.view.drr.projection.pose.primary_deg != pytest.approx(want.primary_deg)
    carm.biplane_button.click()
    assert not carm.lateral.isVisible() and not pl.act_biplane.isChecked()


def _click_row(qtbot, table, row: int, ctrl: bool = False) -> None:
    rect = table.visualRect(table.model().index(row, 1))
    mods = Qt.KeyboardModifier.ControlModifier if ctrl else Qt.KeyboardModifier.NoModifier
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, mods, rect.center())


def _yellow_near(view, lps, radius: int = 4) -> bool:
    img = _rgb(view.grab().toImage())
    dpr = view.devicePixelRatioF()
    w = view.widget_from_lps(lps)
    x, y = int(round(w.x() * dpr)), int(round(w.y() * dpr))
    patch = img[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1]
    return any(_yellow(px) for px in patch.reshape(-1, 3))


def test_proposals_are_seen_compared_and_the_recommended_one_explained(qtbot, window, case_dir,
                                                                       phantom, boxes):
    """Issue 16, point 1: a proposal is drawn in every view before it is accepted, two are
    compared side by side, the recommended one is starred, selected and explained in clinical
    words, and at 1600x1000 the panel shows five proposals with their key numbers."""
    window.resize(1600, 1000)
    _open(qtbot, window, case_dir)
    pl = window.planning
    panel = pl.proposals_panel
    target_id = f"loose-screw:{_loose(phantom)['id']}"
    pl.select_target(target_id)
    _key(qtbot, window, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: pl.propose_task is None, timeout=WAIT_MS)
    _settle(qtbot, window)
    assert not boxes and not pl.doc.trajectories  # nothing accepted yet
    table = panel.table
    rec = panel.recommendation
    assert rec is not None and rec.index is not None
    # the recommended one: starred, selected, and why in words (no cost number)
    assert table.item(rec.index, 0).text() == "\u2605"
    assert all(table.item(r, 0).text() == "" for r in range(table.rowCount()) if r != rec.index)
    assert panel.selected() is panel.results[rec.index]
    why = panel.why.text()
    assert "Recommended" in why and "cost" not in why.lower()
    assert ("passes every check" in why or "warns on" in why) and "compared with" in why
    # it is drawn before it is accepted: reformats (yellow at its entry), needle views, 3-D,
    # and the C-arm's bull's-eye is the proposal's
    shown = panel.selected()
    assert pl.shown_selected() is shown
    axial = window.views["axial"]
    window.state.set_crosshair(shown.entry_lps)
    qtbot.wait(50)
    assert _yellow_near(axial, shown.entry_lps)
    assert window.needle_views["across"].grid is not None
    assert window.needle_views["along"].label == f"{shown.id} (proposal)"
    n_drawn = len(pl.drawn_proposals())
    assert n_drawn == sum(hasattr(r, "entry_lps") for r in panel.results) >= 2
    _key(qtbot, window, Qt.Key.Key_B)
    _settle(qtbot, window)
    assert "proposal, not accepted" in pl.carm.angles_label.text()
    assert pl.carm.pose.primary_deg == pytest.approx(shown.views["bullseye"]["primary_deg"],
                                                     abs=0.01)
    # another proposal clicked: it is the one drawn and the C-arm follows it
    other_row = next(r for r in range(table.rowCount())
                     if r != rec.index and hasattr(panel.results[r], "entry_lps"))
    other = panel.results[other_row]
    _click_row(qtbot, table, other_row)
    _settle(qtbot, window)
    assert pl.shown_selected() is other and panel.compared() is None
    window.state.set_crosshair(other.entry_lps)
    qtbot.wait(50)
    assert _yellow_near(axial, other.entry_lps)
    assert pl.carm.pose.primary_deg == pytest.approx(other.views["bullseye"]["primary_deg"],
                                                     abs=0.01)
    # Ctrl+click the recommended one too: the two side by side
    _click_row(qtbot, table, rec.index, ctrl=True)
    pair = panel.compared()
    assert pair is not None and {id(pair[0]), id(pair[1])} == {id(other), id(rec and
                                                                  panel.results[rec.index])}
    assert panel.compare.isVisible() and not panel.checks.isVisible()
    rows = {panel.compare.item(r, 0).text(): r for r in range(panel.compare.rowCount())}
    assert {"proposal", "status", "depth", "bull's-eye", "spinal canal clearance"} <= set(rows)
    a_depth = panel.compare.item(rows["depth"], 1).text()
    assert a_depth == f"{pair[0].depth_mm:.1f} mm"
    assert panel.compare.item(rows["depth"], 2).text() == f"{pair[1].depth_mm:.1f} mm"
    # the layout at 1600x1000: five proposal rows fit, the target text is not a word per line
    row_h = table.rowHeight(0)
    assert table.viewport().height() >= 5 * row_h, (table.viewport().height(), row_h)
    lines = panel.target_label.height() / panel.target_label.fontMetrics().lineSpacing()
    assert lines < 3.5, lines
    depth_col = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert {"Depth", "Canal", "Metal"} <= set(depth_col)
    # accepting takes the one shown; the preview ends, the accepted one is the selection
    _click_row(qtbot, table, rec.index)
    best = panel.results[rec.index]
    _key(qtbot, window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    _settle(qtbot, window)
    assert len(pl.doc.trajectories) == 1 and pl.preview is None and not pl.drawn_proposals()
    assert np.allclose(pl.doc.selected.entry_lps, best.entry_lps)


def test_notes_reach_the_screen_with_badges(qtbot, window, phantom, tmp_path, boxes,
                                           monkeypatch):
    """Issue 16, point 2: the loader's notes (a NIfTI: HFS assumed), the analysis' warnings
    (tied to the vertebra they concern) and the plan's (a failed check) are listed in Notes,
    badged on the vertebra and the trajectory, and said next to the target."""
    import nibabel as nib

    from fluoroplan.app.planning import workers

    vol = phantom.volume
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.lps_from_ijk
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(vol.hu.transpose(2, 1, 0)), ras), path)
    # the analysis' own sentence for a grade the CT cannot tell apart (labelling.py writes it)
    warning = ("Vertebra 3 from the top: graded 2 from a 27 % height loss, but heights read "
               "to +-1.5 mm on this CT allow grade 1 to 2: check it on the sagittal view.")
    real = workers._analyse

    def with_warning(volume, progress, cancel, label_map=None):
        analysis, aj, case, targets = real(volume, progress, cancel, label_map=label_map)
        return analysis, {**aj, "warnings": [*aj.get("warnings", []), warning]}, case, targets

    monkeypatch.setattr(workers, "_analyse", with_warning)
    pl = window.planning
    with qtbot.waitSignal(pl.analysis_ready, timeout=WAIT_MS):
        window.open_file(path)
    _settle(qtbot, window)
    label = next(v.label for v in pl.doc.case.findings.vertebrae if v.index == 2)
    notes = pl.notes_panel.table
    rows = [(notes.item(r, 0).text(), notes.item(r, 1).text(), notes.item(r, 2).text())
            for r in range(notes.rowCount())]
    assert ("CT", "", "NIfTI records no patient position: head first supine (HFS) is "
            "assumed.") in rows
    ours = [r for r in rows if r[0] == "Analysis" and "sagittal" in r[2]]
    assert ours == [("Analysis", label, f"{label} (vertebra 3 from the top): graded 2 from a "
                     "27 % height loss, but heights read to +-1.5 mm on this CT allow grade 1 "
                     "to 2: check it on the sagittal view.")]
    title = pl.docks["notes"].windowTitle()
    assert title.startswith("Notes (") and "\u26a0" in title
    # the badge on the vertebra it concerns, none on the others
    tree = pl.targets_panel
    item = tree.items[f"vertebra:{label}"]
    assert not item.icon(0).isNull() and "sagittal" in item.toolTip(1)
    assert all(tree.items[k].icon(0).isNull() for k in tree.items
               if k.startswith("vertebra:") and k != f"vertebra:{label}")
    # double-clicking the note shows the vertebra
    r = next(n for n, row in enumerate(rows) if row in ours)
    pl.docks["notes"].raise_()
    qtbot.wait(50)
    notes.scrollTo(notes.model().index(r, 2))
    rect = notes.visualRect(notes.model().index(r, 2))
    qtbot.mouseClick(notes.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(notes.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert tree.tree.currentItem() is item
    # a hand-placed path through the canal: the plan's note and the badge on its row
    v = next(v for v in pl.doc.case.findings.vertebrae if v.index == 2)
    centre = np.asarray(v.vertebra_centroid_lps, float)
    pl.targets_panel.tree.setCurrentItem(None)
    pl.doc.set_target(None)
    pl.toggle_place()
    pl.place_point(centre + np.array([0.0, 75.0, 0.0]))
    pl.place_point(centre)
    _settle(qtbot, window)
    traj = pl.doc.selected
    assert traj is not None and traj.status == "fail"
    mine = [n for n in pl.notes if n.about == f"trajectory:{traj.id}"]
    assert mine and mine[0].text.startswith(f"{traj.id}: FAILS '")
    assert not pl.plan_panel.table.item(0, 0).icon().isNull()
    assert mine[0].text in pl.plan_panel.table.item(0, 0).toolTip()


def _amber(px) -> bool:
    r, g, b = (int(v) for v in px[:3])
    return r > 200 and 170 < g < 230 and 90 < b < 160  # the edge letters' #ffd27f


def _bar_run(img: np.ndarray, bar) -> float:
    """Length in px of the longest bright horizontal run on the bar's row (measured on the
    drawn image, not from the code that draws it)."""
    y = int(bar.top() + 1.5)
    x0, x1 = max(0, int(bar.left()) - 12), int(bar.right()) + 12  # the bar's own stretch
    row = img[y, x0:x1].min(axis=1) > 220
    best = run = 0
    for v in row:
        run = run + 1 if v else 0
        best = max(best, run)
    return float(best)


def test_measuring_scale_bars_letters_spine_zoom_and_window_keys(qtbot, window, case_dir,
                                                                  phantom, tmp_path, boxes):
    """Issue 16, point 7: a scale bar and letters on every pane (needle panes included), the
    reformats zoomed on the spine, distance and angle tools that are undoable and saved with
    the plan, and the window presets on keys 1-3."""
    from fluoroplan.app.slice_view import PRESETS, SCALE_BAR_MM, draw_scale_bar

    window.resize(1600, 1000)
    _open(qtbot, window, case_dir)
    pl = window.planning
    axial = window.views["axial"]
    # the default zoom: the spine, not the whole field (the vertebrae fill the view)
    g = axial.grid
    fit_all = min(axial._view_rect().width() / (g.shape[1] * g.pixel_mm[0]),
                  axial._view_rect().height() / (g.shape[0] * g.pixel_mm[1]))
    assert axial.pixels_per_mm() > 1.15 * fit_all  # 288 mm field, 200 mm box here
    spine = np.mean([v.vertebra_centroid_lps for v in pl.doc.case.findings.vertebrae], axis=0)
    c = axial.widget_from_lps(spine)
    r = axial._view_rect()
    assert abs(c.x() - r.center().x()) < 0.2 * r.width()
    zoomed = axial.pixels_per_mm()
    axial.zoom_by(0.5)
    assert axial.pixels_per_mm() < zoomed
    _key(qtbot, window, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)  # reset: the spine
    assert axial.pixels_per_mm() == pytest.approx(zoomed, rel=1e-6)
    # the scale bar: its drawn length is a round number of mm at this zoom
    img = _rgb(axial.grab().toImage())
    from PySide6.QtGui import QImage, QPainter

    probe = QImage(axial.size(), QImage.Format.Format_RGB32)
    painter = QPainter(probe)
    bar = draw_scale_bar(painter, axial, axial.pixels_per_mm(), corner="left", lines_up=1.5)
    painter.end()
    run_mm = _bar_run(img, bar) / axial.pixels_per_mm()
    assert min(abs(run_mm - mm) for mm in SCALE_BAR_MM) < 1.5 / axial.pixels_per_mm(), run_mm
    # the needle panes have letters and a scale bar once a trajectory is shown
    traj = _accept_proposal(qtbot, window, f"loose-screw:{_loose(phantom)['id']}", boxes)
    for kind in ("along", "across"):
        nv = window.needle_views[kind]
        shot = _rgb(nv.grab().toImage())
        h, w = shot.shape[:2]
        left = shot[h // 3: 2 * h // 3, : w // 12]
        assert any(_amber(px) for px in left.reshape(-1, 3)), kind
        assert nv.grid.axes.edge_letters()["left"]
    # distance: D, then two clicks 120 px apart on the axial view
    window.state.set_crosshair(traj.target_lps)
    _key(qtbot, window, Qt.Key.Key_D)
    assert pl.measuring == "distance"
    a = r.center() + QPointF(-60.0, 10.0)
    b = a + QPointF(120.0, 0.0)
    qtbot.mouseClick(axial, Qt.MouseButton.LeftButton, pos=a.toPoint())
    qtbot.mouseClick(axial, Qt.MouseButton.LeftButton, pos=b.toPoint())
    assert len(pl.doc.measurements) == 1
    m = pl.doc.measurements[0]
    expected = (b.toPoint().x() - a.toPoint().x()) / axial.pixels_per_mm()
    assert m.kind == "distance" and m.value == pytest.approx(expected, abs=0.3)
    assert m.view == "axial" and pl.measure_overlay.in_plane(axial, m.points_lps)
    # angle: A, then an arm, the vertex and the other arm at a right angle
    _key(qtbot, window, Qt.Key.Key_A)
    v0 = r.center() + QPointF(0.0, 40.0)
    for q in (v0 + QPointF(90.0, 0.0), v0, v0 + QPointF(0.0, -90.0)):
        qtbot.mouseClick(axial, Qt.MouseButton.LeftButton, pos=q.toPoint())
    angle = pl.doc.measurements[-1]
    assert angle.kind == "angle" and angle.value == pytest.approx(90.0, abs=0.5)
    # both drawn with their values where the user measured them
    shown = _rgb(axial.grab().toImage())
    dpr = axial.devicePixelRatioF()
    mid = axial.widget_from_lps(m.points_lps.mean(axis=0))
    green = shown[int(mid.y() * dpr) - 2: int(mid.y() * dpr) + 3,
                  int(mid.x() * dpr) - 2: int(mid.x() * dpr) + 3].reshape(-1, 3)
    assert any(px[1] > 200 and px[0] < 170 and px[2] < 200 for px in green)
    # undoable: Ctrl+Z takes the angle away, Ctrl+Y puts it back
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [x.kind for x in pl.doc.measurements] == ["distance"]
    _key(qtbot, window, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert [x.kind for x in pl.doc.measurements] == ["distance", "angle"]
    # saved with the plan and read back
    path = tmp_path / "measured.json"
    assert pl.save_to(str(path))
    saved = json.loads(path.read_text())["measurements"]
    assert [x["kind"] for x in saved] == ["distance", "angle"]
    assert saved[0]["value"] == pytest.approx(m.value, abs=0.01)
    pl.clear_measurements()
    assert not pl.doc.measurements
    assert pl.open_plan(str(path))
    assert [round(x.value, 2) for x in pl.doc.measurements] == [round(m.value, 2),
                                                               round(angle.value, 2)]
    # window presets on keys, the reformat focused
    axial.setFocus()
    for key, name in ((Qt.Key.Key_2, "soft tissue"), (Qt.Key.Key_3, "metal"),
                      (Qt.Key.Key_1, "bone")):
        _key(qtbot, window, key)
        assert (window.state.window_width, window.state.window_level) == PRESETS[name]
    assert not boxes


def test_manual_planning_when_the_analysis_fails(qtbot, window, phantom, tmp_path, boxes):
    """Issue 16, point 5: a slab the analysis cannot read (no spine over two levels) still
    lets the user place a trajectory by hand; the canal and the levels are UNKNOWN and every
    check that needs them says so (not passed, not failed), in the checks, the plan table,
    the Notes and the Targets panel."""
    import nibabel as nib

    vol = phantom.volume
    slab = vol.hu[74:80]  # 9 mm: too thin for the analysis, which refuses it
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.lps_from_ijk
    path = tmp_path / "slab.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(slab.transpose(2, 1, 0)),
                             ras @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 74],
                                             [0, 0, 0, 1.0]])), path)
    pl = window.planning
    with qtbot.waitSignal(pl.analysis_ready, timeout=WAIT_MS):
        window.open_file(path)
    _settle(qtbot, window)
    # no spine over two levels: no vertebrae, no canal; the user is told and can go on
    assert not boxes
    assert pl.doc.case is not None and not pl.doc.case.canal_known
    assert "UNKNOWN" in pl.targets_panel.status.text()
    assert pl.act_place.isEnabled()
    # place one by hand: T, a click for the entry, a click for the target
    axial = window.views["axial"]
    centre = np.asarray(window.state.crosshair_lps, float)
    _key(qtbot, window, Qt.Key.Key_T)
    assert pl.placing
    for lps in (centre + np.array([40.0, 70.0, 0.0]), centre + np.array([0.0, -10.0, 0.0])):
        qtbot.mouseClick(axial, Qt.MouseButton.LeftButton,
                         pos=axial.widget_from_lps(lps).toPoint())
    _settle(qtbot, window)
    traj = pl.doc.selected
    assert traj is not None and traj.checks
    by_name = {c.name: c for c in traj.checks}
    unknown = {n for n, c in by_name.items() if c.status == "unknown"}
    assert {"spinal canal clearance", "bone in the way", "skin entry from the midline"} <= unknown
    assert by_name["metal clearance"].status in ("pass", "warn", "fail")  # measured: no spine
    # not passed: unknown, unless a measured check fails (metal, the tip's bone margin)
    measured_fail = any(c.status == "fail" for c in traj.checks)
    assert traj.status == ("fail" if measured_fail else "unknown")
    table = pl.plan_panel.checks
    statuses = {table.item(r, 0).text(): table.item(r, 3).text() for r in range(table.rowCount())}
    assert statuses["spinal canal clearance"] == "UNKNOWN"
    assert pl.plan_panel.table.item(0, 2).text() == traj.status.upper()
    notes = [n.text for n in pl.notes if n.about == f"trajectory:{traj.id}"]
    assert any("'spinal canal clearance' could not be checked" in t for t in notes)
    # an analysis that raises (a head CT: "No spinal column found"): the dialog says so and
    # offers planning by hand on the CT as it is
    from fluoroplan.app.planning import workers
    from fluoroplan.segmentation.errors import NoSpineFound

    def refuses(volume, progress, cancel, label_map=None):
        raise NoSpineFound("No spinal column found in this CT: the longest canal-like track "
                           "spans only 24 mm")

    mp = pytest.MonkeyPatch()
    mp.setattr(workers, "_analyse", refuses)
    try:
        with qtbot.waitSignal(pl.analysis_ready, timeout=WAIT_MS):
            window.open_file(path)
        _settle(qtbot, window)
    finally:
        mp.undo()
    assert len(boxes) == 1 and boxes[0][0] == "warning"
    text = boxes[0][2]
    assert "No spinal column found" in text and "plan by hand" in text and "UNKNOWN" in text
    assert pl.doc.case is not None and pl.act_place.isEnabled()
    assert "UNKNOWN" in pl.targets_panel.status.text()
    assert any(n.source == "analysis" and "did not finish" in n.text for n in pl.notes)
    assert not pl.placing
    pl.toggle_place()
    pl.place_point(centre + np.array([40.0, 70.0, 0.0]))
    pl.place_point(centre + np.array([0.0, -10.0, 0.0]))
    _settle(qtbot, window)
    again = pl.doc.selected
    assert again is not None and {c.status for c in again.checks
                                  if c.name == "spinal canal clearance"} == {"unknown"}


def test_every_angle_and_count_the_user_reads_is_worded(qtbot, window, case_dir, phantom):
    _open(qtbot, window, case_dir)
    pl = window.planning
    carm = pl.carm
    # the C-arm menu's nudges name the side they turn the detector toward (prone: + is right)
    texts = [a.text() for a, _ in pl.nudge_actions]
    assert all("patient's" in t or "HEAD" in t or "FEET" in t for t in texts), texts
    assert not any(t.startswith(("Rotate +", "Rotate \u2212", "Angulate +")) for t in texts)
    right = next(a for a, d in pl.nudge_actions if d == (1, 0))
    assert "patient's RIGHT" in right.text()  # HFP: table rotation + is the patient's right
    before = carm.pose.detector_dir_lps.copy()
    _key(qtbot, window, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    _settle(qtbot, window)
    assert carm.pose.detector_dir_lps[0] < before[0]  # it went to the patient's right (-x)
    # no "-0.0" in the angles the user reads (the straight PA's table angles are 0)
    carm.set_pose(carm.pose.from_table_angles(0.0, 0.0, carm.patient_position), "PA")
    _settle(qtbot, window)
    assert "-0.0" not in carm.angles_label.text()
    assert "table rotation 0.0 deg, angulation 0.0 deg" in carm.angles_label.text()
    # counts read as words: "1 loose screw", never "1 loose screw(s)" or "1 targets"
    status = pl.targets_panel.status.text()
    n = len(pl.doc.targets)
    assert status.startswith(f"{n} target{'s' if n != 1 else ''}:") and "(s)" not in status
    assert "1 loose screw," in status


def test_open_file_opens_a_dicom_image_s_series_a_nifti_and_refuses_other_files(
        qtbot, window, case_dir, phantom, tmp_path, monkeypatch, boxes):
    import nibabel as nib
    from PySide6.QtWidgets import QFileDialog

    _open(qtbot, window, case_dir)
    asked = []

    def dialog(parent, title, start, filters):
        asked.append(start)
        return str(chosen), filters

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(dialog))
    # one image of the series: the whole series opens (not one slice), the dialog starts in
    # the case's folder, not in the home folder
    chosen = sorted(case_dir.rglob("*.dcm"))[7]
    with qtbot.waitSignal(window.planning.analysis_ready, timeout=WAIT_MS):
        _key(qtbot, window, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier
             | Qt.KeyboardModifier.AltModifier)
    assert asked[-1] == str(case_dir)
    assert window.volume.hu.shape == phantom.volume.hu.shape
    # a NIfTI file (the same CT written as one, RAS affine)
    vol = phantom.volume
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.lps_from_ijk
    chosen = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(vol.hu.transpose(2, 1, 0)), ras), chosen)
    with qtbot.waitSignal(window.planning.analysis_ready, timeout=WAIT_MS):
        window.act_open_file.trigger()
    assert window.volume.hu.shape == vol.hu.shape
    np.testing.assert_allclose(window.volume.lps_from_ijk, vol.lps_from_ijk, atol=1e-3)
    # anything else: a sentence that says what is wrong and what to do; the case stays open
    chosen = tmp_path / "notes.txt"
    chosen.write_text("not a CT")
    shown = window.volume
    with qtbot.waitSignal(window.error_reported, timeout=5000) as err:
        window.act_open_file.trigger()
    assert "neither a NIfTI volume" in err.args[0] and "Open folder" in err.args[0]
    assert window.volume is shown
    assert asked[-1] == str(tmp_path)  # the dialog now starts where the NIfTI file was


def test_captions_follow_the_document(qtbot, window, case_dir, other_dir, phantom, boxes):
    from fluoroplan.geometry.carm import bullseye_pose

    _open(qtbot, window, case_dir)
    pl = window.planning
    carm = pl.carm
    traj = _accept_proposal(qtbot, window, f"loose-screw:{_loose(phantom)['id']}", boxes)
    _key(qtbot, window, Qt.Key.Key_B)
    _settle(qtbot, window)
    assert carm.angles_label.text().startswith(f"Bull's-eye of {traj.id}")
    # drag the entry: the C-arm caption follows the edited needle (its new bull's-eye)
    axial = window.views["axial"]
    window.state.set_crosshair(traj.entry_lps)
    start = axial.widget_from_lps(traj.entry_lps)
    with qtbot.waitSignal(pl.checks_updated, timeout=WAIT_MS):
        _drag(qtbot, axial, start, start + QPointF(14.0, 6.0))
    _settle(qtbot, window)
    moved = pl.doc.selected
    want = bullseye_pose(moved.entry_lps, moved.aim_lps, pl.position)
    assert carm.pose.primary_deg == pytest.approx(want.primary_deg, abs=0.05)
    assert carm.pose.secondary_deg == pytest.approx(want.secondary_deg, abs=0.05)
    assert f"{want.primary_deg:+.1f} deg" in carm.angles_label.text()
    # the 3-D caption says where the camera is after the user turns it
    v3 = window.view3d
    assert "viewed from the back" in v3.title.text()
    cam = v3.renderer.GetActiveCamera()
    cam.Azimuth(90.0)
    v3.interactor.InvokeEvent("EndInteractionEvent")
    assert "viewed from the back" not in v3.title.text()
    assert "patient's" in v3.title.text()
    # another CT: the needle panes and the title drop the old case's needle and plan file
    saved = case_dir.parent / "captions-plan.json"
    assert pl.save_to(str(saved))
    assert "captions-plan.json" in window.windowTitle()
    _open(qtbot, window, other_dir)
    assert "captions-plan.json" not in window.windowTitle()
    for nv in window.needle_views.values():
        assert nv.grid is None and nv.label == ""
    assert not carm.angles_label.text().startswith("Bull's-eye of")


def test_place_by_clicking_and_screenshot_content(qtbot, window, case_dir, phantom):
    from fluoroplan.app.capture import capture_window

    _open(qtbot, window, case_dir)
    pl = window.planning
    target = pl.doc.target(f"loose-screw:{_loose(phantom)['id']}")
    pl.select_target(target.id)
    axial = window.views["axial"]
    entry = target.point_lps + np.array([25.0, 70.0, 0.0])  # behind and to the left
    _key(qtbot, window, Qt.Key.Key_T)
    assert pl.placing
    for lps in (entry, target.point_lps):
        qtbot.mouseClick(axial, Qt.MouseButton.LeftButton,
                         pos=axial.widget_from_lps(lps).toPoint())
    assert not pl.placing and len(pl.doc.trajectories) == 1
    traj = pl.doc.selected
    assert traj.approach == "manual" and traj.target.id == target.id
    np.testing.assert_allclose(traj.target_lps[:2], target.point_lps[:2], atol=1.5)
    _settle(qtbot, window)
    assert pl.doc.selected.checks  # re-checked on the worker

    image = capture_window(window)
    arr = _rgb(image)
    dpr = image.devicePixelRatio()
    tl = axial.mapTo(window, QPoint(0, 0))
    a, b = axial.widget_from_lps(traj.entry_lps), axial.widget_from_lps(traj.target_lps)
    hits = 0
    for f in np.linspace(0.15, 0.85, 8):
        p = a + (b - a) * f
        x, y = int((tl.x() + p.x()) * dpr), int((tl.y() + p.y()) * dpr)
        patch = arr[y - 2: y + 3, x - 2: x + 3].reshape(-1, 3)
        hits += any(_yellow(px) for px in patch)
    assert hits >= 7  # the trajectory line is drawn where it projects (solid in this slice)
    # the 3-D pane: background in its top-right corner, the spine in its centre
    v3 = window.view3d
    tl3 = v3.vtk_widget.mapTo(window, QPoint(0, 0))
    x0, y0 = int(tl3.x() * dpr), int(tl3.y() * dpr)
    w, h = int(v3.vtk_widget.width() * dpr), int(v3.vtk_widget.height() * dpr)
    pane = arr[y0:y0 + h, x0:x0 + w].astype(int)
    bg = np.array(v3.background_rgb8())
    assert np.abs(pane[3, w - 4] - bg).max() <= 2
    centre = pane[h * 3 // 8: h * 5 // 8, w * 3 // 8: w * 5 // 8]
    assert (np.abs(centre - bg).max(axis=2) > 20).mean() > 0.3
    # the needle's skin-entry marker is yellow in 3-D where it projects
    ex, ey = v3.display_from_lps(traj.entry_lps)
    px = pane[int(ey * dpr / v3.devicePixelRatioF()), int(ex * dpr / v3.devicePixelRatioF())]
    assert _yellow(px), px
    # the C-arm pane shows an image (not the empty message)
    carm = pl.carm.view
    ctl = carm.mapTo(window, QPoint(0, 0))
    region = arr[int(ctl.y() * dpr): int((ctl.y() + carm.height()) * dpr),
                 int(ctl.x() * dpr): int((ctl.x() + carm.width()) * dpr)]
    assert region.std() > 20


# --- relabelling and errors -------------------------------------------------------------------------
def test_relabel_levels_is_undoable(qtbot, window, case_dir):
    _open(qtbot, window, case_dir)
    pl = window.planning
    before = [v["label"] for v in pl.doc.analysis_json["vertebrae"]]
    index = pl.doc.analysis_json["vertebrae"][2]["index"]
    with qtbot.waitSignal(pl.analysis_ready, timeout=WAIT_MS):
        pl.relabel(index, "L3")
    after = [v["label"] for v in pl.doc.analysis_json["vertebrae"]]
    assert after[2] == "L3" and after != before
    assert "vertebra:L3" in pl.targets_panel.items
    assert {s["level"] for s in pl.doc.analysis_json["screws"]} <= set(after)
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [v["label"] for v in pl.doc.analysis_json["vertebrae"]] == before


def test_plan_of_another_ct_and_damaged_files_are_refused(qtbot, window, case_dir, other_dir,
                                                          tmp_path, boxes, phantom, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from fluoroplan.app.main_window import MainWindow

    _open(qtbot, window, other_dir)
    pl = window.planning
    target = pl.doc.targets[0]
    pl.select_target(target.id)
    pl.toggle_place()
    pl.place_point(target.point_lps + [0.0, 60.0, 0.0])
    pl.place_point(target.point_lps)
    _settle(qtbot, window)
    other_plan = tmp_path / "other.json"
    # a plan that cannot be written there (a folder in the way) is offered "save elsewhere"
    # at once, and saved there; nothing of it is lost
    blocked = tmp_path / "blocked.json"
    blocked.mkdir()
    asked = []

    def warn(parent, title, text, *args, **kwargs):
        asked.append((title, text, args))
        return QMessageBox.StandardButton.Save

    fake = QMessageBox.warning
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(warn))
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(other_plan), "")))
    assert pl.save_to(str(blocked))
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(fake))
    (title, text, args), = asked
    assert "saving the plan" in title and "blocked.json" in text
    assert "still open and unchanged" in text and "another folder" in text
    assert args and args[0] & QMessageBox.StandardButton.Save
    assert other_plan.is_file() and pl.doc.path == str(other_plan)
    assert not window.windowTitle().startswith("*")

    second = MainWindow(settings=QSettings(str(tmp_path / "s2.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(second)
    second.show()
    _open(qtbot, second, case_dir)
    assert not second.planning.open_plan(str(other_plan))
    kind, title, text = boxes[-1]
    assert kind == "warning" and "was made on" in text and "nothing was loaded" in text
    damaged = tmp_path / "damaged.json"
    damaged.write_text(other_plan.read_text()[:200])
    assert not second.planning.open_plan(str(damaged))
    assert "Traceback" not in boxes[-1][2] and damaged.name in boxes[-1][2]
    # a trajectory whose ends meet is refused with a reason; the window carries on
    second.planning.select_target(f"loose-screw:{_loose(phantom)['id']}")
    second.planning.toggle_place()
    p = second.planning.doc.targets[0].point_lps
    second.planning.place_point(p)
    second.planning.place_point(p + [0.2, 0.0, 0.0])
    assert "1 mm apart" in boxes[-1][2] and not second.planning.doc.trajectories
    assert second.isVisible()
    second.close()
