"""The workstation window driven with pytest-qt (real window, real loader, real VTK)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# VTK's X11 backend keeps one probe connection to the X server open until the process ends;
# pytest-xvfb stops Xvfb before that, and Xlib then ends the run with exit code 1. The window
# tests therefore render VTK with OSMesa (as with Qt offscreen, STACK.md); the X11 backend is
# exercised by the command-line test below, which runs in its own process.
if os.environ.get("DISPLAY"):
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from fluoroplan.io import scan  # noqa: E402
from fluoroplan.io.analysis_json import analysis_json  # noqa: E402
from fluoroplan.io.dicom_write import new_study_uids, write_series  # noqa: E402
from fluoroplan.io.errors import EmptyFolder  # noqa: E402
from fluoroplan.resources.phantom import make_phantom, write_phantom  # noqa: E402

pytestmark = pytest.mark.gui

SHAPE = (192, 192, 160)
GRID = {"shape_ijk": SHAPE, "pixel_mm": 1.5, "slice_mm": 1.5}
READY_MS = 60000


@pytest.fixture(scope="session")
def phantom():
    return make_phantom(0, **GRID)


@pytest.fixture(scope="session")
def case_dir(phantom, tmp_path_factory) -> Path:
    """The small phantom written as one DICOM series; returns the DICOM folder."""
    root = tmp_path_factory.mktemp("case")
    write_phantom(root, phantom)
    return root / "dicom"


@pytest.fixture(scope="session")
def multi_dir(phantom, tmp_path_factory) -> Path:
    """A folder with three series: the thin CT, a thick (3 mm) CT and a one-image series."""
    root = tmp_path_factory.mktemp("multi")
    vol = phantom.volume
    write_phantom(root / "thin", phantom, study={"series_number": 2,
                                                  "series_description": "Spine 1.5 mm"})
    uids = {k: v for k, v in vol.identifiers.items() if k == "study_instance_uid"}
    thick = vol.lps_from_ijk @ np.diag([1.0, 1.0, 2.0, 1.0])
    for number, desc, hu in ((3, "Spine 3 mm", vol.hu[::2]), (4, "Single image", vol.hu[80:81])):
        study = {**new_study_uids(), **uids, "series_number": number, "series_description": desc}
        write_series(np.ascontiguousarray(hu), thick, root / f"s{number}", study=study,
                     patient_position=vol.patient_position)
    return root


@pytest.fixture
def window(qtbot, tmp_path):
    from fluoroplan.app.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings)
    win.demo_root = tmp_path / "demo"
    qtbot.addWidget(win)
    win.resize(1280, 860)
    win.show()
    win.activateWindow()
    qtbot.waitActive(win)
    yield win
    win.close()


@pytest.fixture
def boxes(monkeypatch):
    """Capture QMessageBox calls instead of showing modal dialogs: list of (kind, title, text)."""
    seen = []
    for kind in ("information", "warning", "critical"):
        def fake(parent, title, text, *args, _kind=kind, **kwargs):
            seen.append((_kind, title, text))
            return QMessageBox.StandardButton.Ok

        monkeypatch.setattr(QMessageBox, kind, staticmethod(fake))
    return seen


def _load(qtbot, win, path):
    with qtbot.waitSignal(win.ready, timeout=READY_MS):
        win.open_folder(path)
    assert win.volume is not None


def _grey(view, lps) -> int:
    """Grey value shown by a slice view at an LPS point (from its grabbed picture)."""
    img = view.grab().toImage()
    p = view.widget_from_lps(np.asarray(lps, float)) * img.devicePixelRatio()
    return img.pixelColor(int(p.x()), int(p.y())).red()


def _click(qtbot, view, lps) -> None:
    p = view.widget_from_lps(np.asarray(lps, float))
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(round(p.x()), round(p.y())))


# --- loading and the three reformats ---------------------------------------------------------
def test_open_folder_shows_volume_in_three_views(qtbot, window, case_dir, phantom):
    _load(qtbot, window, case_dir)
    vol = window.volume
    assert vol.shape_ijk == SHAPE
    assert vol.patient_position == "HFP"
    assert "HFP" in window.windowTitle()
    screw = next(s for s in phantom.truth["screws"] if not s["loose"])
    mid = (np.array(screw["head_lps"]) + np.array(screw["tip_lps"])) / 2
    window.state.set_crosshair(mid)
    qtbot.wait(50)
    for name, view in window.views.items():
        # metal at the crosshair (drawn white in the bone window; the crosshair leaves a gap)
        assert _grey(view, window.state.crosshair_lps) >= 240, name
        # the image's first pixel is shown with its own HU through the window
        corner = view.grid.lps_from_uv(np.array([[0.5, 0.5]]) * view.grid.pixel_mm,
                                       view.grid.depth_of(window.state.crosshair_lps))[0]
        expected = np.clip((view._hu[0, 0] + 500) / 2000 * 255, 0, 255)
        assert abs(_grey(view, corner) - expected) <= 12, name
        if name == "axial":  # outside the trunk: air, black
            assert _grey(view, corner) <= 10
    # a vertebral body centre shows bone (cortex/trabecular) brighter than soft tissue around
    body = np.array(phantom.truth["vertebrae"][2]["centroid_lps"])
    window.state.set_crosshair(body)
    qtbot.wait(50)
    assert window.state.hu_at(body) > 100


def test_prone_orientation_letters(qtbot, window, case_dir):
    _load(qtbot, window, case_dir)
    letters = {n: v.grid.axes.edge_letters() for n, v in window.views.items()}
    # HFP: axial as the patient lies (back up, patient's left on screen left)
    assert letters["axial"] == {"left": "L", "right": "R", "top": "P", "bottom": "A"}
    assert letters["coronal"] == {"left": "L", "right": "R", "top": "H", "bottom": "F"}
    assert letters["sagittal"] == {"left": "A", "right": "P", "top": "H", "bottom": "F"}
    # and the picture agrees: the table (under the belly) is in the lower part of the axial
    view = window.views["axial"]
    hu = view._hu
    rows = np.nonzero((hu > 100) & (hu < 200))[0]
    assert rows.size and np.median(rows) > hu.shape[0] * 0.5


def test_click_sets_crosshair_and_status_shows_lps_and_hu(qtbot, window, case_dir, phantom):
    _load(qtbot, window, case_dir)
    screw = next(s for s in phantom.truth["screws"] if not s["loose"])
    target = (np.array(screw["head_lps"]) + np.array(screw["tip_lps"])) / 2
    # coronal click sets x and z; axial click then sets x and y at that z
    _click(qtbot, window.views["coronal"], [target[0], window.state.crosshair_lps[1], target[2]])
    assert abs(window.state.crosshair_lps[2] - target[2]) < 2.0
    _click(qtbot, window.views["axial"], [target[0], target[1], window.state.crosshair_lps[2]])
    c = window.state.crosshair_lps
    assert np.linalg.norm(c - target) < 2.5, (c, target)
    shown = window.cursor_lps_hu()
    assert shown is not None, window.cursor_label.text()
    lps, hu = shown
    np.testing.assert_allclose(lps, c, atol=0.051)
    assert hu == int(window.volume.hu_at_lps(c[None])[0])
    assert hu >= 2500  # inside the screw
    # the sagittal view now cuts through the crosshair's x
    sag = window.views["sagittal"]
    assert abs(sag.grid.depth_of(c) - sag._depth_shown) < 1e-6


def test_keys_scroll_slices_and_presets(qtbot, window, case_dir):
    _load(qtbot, window, case_dir)
    axial = window.views["axial"]
    axial.setFocus()
    z0 = window.state.crosshair_lps[2]
    qtbot.keyClick(axial, Qt.Key.Key_PageUp)
    assert window.state.crosshair_lps[2] == pytest.approx(z0 + 10 * 1.5)
    qtbot.keyClick(axial, Qt.Key.Key_Down)
    assert window.state.crosshair_lps[2] == pytest.approx(z0 + 9 * 1.5)

    # a soft-tissue pixel of the axial image, away from edges
    hu = axial._hu
    soft = (hu > 0) & (hu < 100)
    from scipy import ndimage

    soft = ndimage.binary_erosion(soft, iterations=3)
    r, c = np.argwhere(soft)[len(np.argwhere(soft)) // 2]
    lps = axial.grid.lps_from_uv(np.array([[c * axial.grid.pixel_mm[0], r * axial.grid.pixel_mm[1]]]),
                                 axial.grid.depth_of(window.state.crosshair_lps))[0]
    value = float(hu[r, c])

    def expected(w, lv):
        return np.clip((value - (lv - w / 2)) / w * 255, 0, 255)

    assert window.preset_actions["bone"].isChecked()
    assert abs(_grey(axial, lps) - expected(2000, 500)) < 12
    qtbot.keyClick(window, Qt.Key.Key_2)
    assert (window.state.window_width, window.state.window_level) == (400, 40)
    assert window.preset_actions["soft tissue"].isChecked()
    assert abs(_grey(axial, lps) - expected(400, 40)) < 25
    qtbot.keyClick(window, Qt.Key.Key_3)
    assert (window.state.window_width, window.state.window_level) == (4000, 1500)
    qtbot.keyClick(window, Qt.Key.Key_1)
    assert (window.state.window_width, window.state.window_level) == (2000, 500)
    # Shift+left-drag changes the window and clears the preset check mark
    start = QPoint(axial.width() // 2 + 20, axial.height() // 2 + 20)
    qtbot.mousePress(axial, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, start)
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QMouseEvent

    move = QMouseEvent(QMouseEvent.Type.MouseMove, QPointF(start + QPoint(60, 30)),
                       QPointF(axial.mapToGlobal(start + QPoint(60, 30))),
                       Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.ShiftModifier)
    axial.mouseMoveEvent(move)
    qtbot.mouseRelease(axial, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier,
                       start + QPoint(60, 30))
    assert window.state.window_width > 2000 and window.state.window_level < 500
    assert not any(a.isChecked() for a in window.preset_actions.values())


def test_zoom_keeps_point_under_cursor(qtbot, window, case_dir):
    _load(qtbot, window, case_dir)
    view = window.views["coronal"]
    pos = QPoint(view.width() // 3, view.height() // 3)
    before = view.lps_from_widget(pos)
    view.zoom_by(2.0, pos)
    after = view.lps_from_widget(pos)
    np.testing.assert_allclose(before, after, atol=1e-6)
    assert view._zoom == pytest.approx(2.0)


# --- errors ------------------------------------------------------------------------------------
def test_empty_folder_shows_message_and_window_survives(qtbot, window, tmp_path, boxes, case_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmptyFolder) as expected:
        scan(empty)
    window.open_folder(empty)
    qtbot.waitUntil(lambda: bool(boxes), timeout=10000)
    kind, title, text = boxes[0]
    assert kind == "warning" and text == str(expected.value)
    assert "Traceback" not in text
    assert window.isVisible() and not window.busy
    # not DICOM at all
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    window.open_folder(junk)
    qtbot.waitUntil(lambda: len(boxes) == 2, timeout=10000)
    assert "No readable DICOM images" in boxes[1][2]
    # the window still loads a good folder afterwards
    _load(qtbot, window, case_dir)


def test_unexpected_error_is_short_and_logged(qtbot, window, monkeypatch, boxes, tmp_path, caplog):
    import fluoroplan.app.main_window as mw

    def broken(path, progress, cancel):
        raise RuntimeError("disk on fire\nsecond line of detail")

    monkeypatch.setattr(mw, "_scan_then_load", broken)
    window.open_folder(tmp_path)
    qtbot.waitUntil(lambda: bool(boxes), timeout=10000)
    kind, title, text = boxes[0]
    assert kind == "critical"
    assert "disk on fire" in text and "second line" not in text and "Traceback" not in text
    assert window.isVisible()


def test_cancel_loading(qtbot, window, case_dir, boxes):
    window.open_folder(case_dir)
    assert window.cancel_button.isVisible()
    qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(boxes), timeout=10000)
    kind, title, text = boxes[0]
    assert kind == "information" and "Cancelled" in text
    assert window.volume is None
    assert not window.busy and not window.cancel_button.isVisible()


# --- series chooser, demo, recent ---------------------------------------------------------------
def test_series_chooser_for_several_series(qtbot, window, multi_dir):
    window.open_folder(multi_dir)
    qtbot.waitUntil(lambda: window.series_chooser is not None and window.series_chooser.isVisible(),
                    timeout=20000)
    dlg = window.series_chooser
    table = dlg.table
    assert table.rowCount() == 3
    descriptions = [table.item(r, 1).text() for r in range(3)]
    assert descriptions == ["Spine 1.5 mm", "Spine 3 mm", "Single image"]
    # default (most images) preselected; the single image is disabled with its reason
    assert dlg.selected().description == "Spine 1.5 mm"
    assert table.item(2, 0).flags() == Qt.ItemFlag.NoItemFlags
    assert table.item(2, table.columnCount() - 1).text().startswith("no: ")
    assert dlg.open_button.isEnabled()
    table.selectRow(1)
    assert dlg.selected().description == "Spine 3 mm"
    with qtbot.waitSignal(window.ready, timeout=READY_MS):
        dlg.open_button.click()
    assert window.volume.shape_ijk == (SHAPE[0], SHAPE[1], SHAPE[2] // 2)
    assert window.volume.spacing_mm[2] == pytest.approx(3.0)


def test_demo_action_and_recent_folders(qtbot, window, phantom, case_dir):
    write_phantom(window.demo_root / "case", phantom)  # the demo folder already holds a case
    with qtbot.waitSignal(window.ready, timeout=READY_MS):
        window.act_demo.trigger()
    assert window.volume.shape_ijk == SHAPE
    assert window.recent_folders() == []  # the demo is not a recent folder
    _load(qtbot, window, case_dir)
    assert window.recent_folders() == [str(case_dir.resolve())]
    window._fill_recent_menu()
    texts = [a.text() for a in window.recent_menu.actions()]
    assert any(str(case_dir.resolve()) in t for t in texts)


def test_layout_is_remembered(qtbot, tmp_path):
    from fluoroplan.app.main_window import MainWindow

    ini = str(tmp_path / "layout.ini")
    win = MainWindow(settings=QSettings(ini, QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.show()
    win.resize(780, 560)  # fits the 800 x 600 screen of pytest-xvfb
    win.splitters[0].setSizes([200, 600, 300])
    qtbot.wait(20)
    sizes = win.splitters[0].sizes()
    win.close()
    again = MainWindow(settings=QSettings(ini, QSettings.Format.IniFormat))
    qtbot.addWidget(again)
    again.show()
    qtbot.wait(20)
    assert again.size().width() == 780 and again.size().height() == 560
    assert again.splitters[0].sizes() == sizes
    again.close()


# --- 3-D view and screenshots ----------------------------------------------------------------
def test_screenshot_shows_views_and_3d(qtbot, window, case_dir, tmp_path, phantom):
    from fluoroplan.app.capture import capture_window

    _load(qtbot, window, case_dir)
    v3 = window.view3d
    assert v3.surfaces is not None
    assert v3.surfaces.bone.GetNumberOfPoints() > 1000
    assert v3.surfaces.metal.GetNumberOfPoints() > 100
    image = capture_window(window)
    dpr = image.devicePixelRatio()
    path = tmp_path / "shot.png"
    assert image.save(str(path), "PNG")
    arr = _qimage_rgb(image)
    bg = np.array(v3.background_rgb8())
    tl = v3.vtk_widget.mapTo(window, QPoint(0, 0))
    x0, y0 = int(tl.x() * dpr), int(tl.y() * dpr)
    w, h = int(v3.vtk_widget.width() * dpr), int(v3.vtk_widget.height() * dpr)
    pane = arr[y0:y0 + h, x0:x0 + w].astype(int)
    # the top-right corner of the 3-D pane is background (the orientation cube sits bottom-left)
    assert np.abs(pane[2, w - 3] - bg).max() <= 2
    assert np.abs(pane[: h // 10, -w // 10:] - bg).max() <= 2
    # the centre holds the spine: most pixels differ from the background
    centre = pane[h * 3 // 8: h * 5 // 8, w * 3 // 8: w * 5 // 8]
    differs = np.abs(centre - bg).max(axis=2) > 20
    assert differs.mean() > 0.3
    # the blue metal appears (rods and screw heads) and bone-coloured pixels appear
    blue = (pane[..., 2] > pane[..., 0] + 40)
    bone = (pane[..., 0] > 150) & (pane[..., 0] >= pane[..., 2] + 15)
    assert blue.sum() > 200 and bone.sum() > 2000
    # each reformat's region shows an image, not a blank widget
    for view in window.views.values():
        tl = view.mapTo(window, QPoint(0, 0))
        region = arr[int(tl.y() * dpr): int((tl.y() + view.height()) * dpr),
                     int(tl.x() * dpr): int((tl.x() + view.width()) * dpr)]
        assert region.std() > 20, view.name


def test_3d_overlays_render_where_expected(qtbot, window, case_dir, phantom):
    _load(qtbot, window, case_dir)
    v3 = window.view3d
    # a needle-like cylinder posterior to the spine (nearer to the camera, which is behind)
    start = np.array([-60.0, 120.0, -10.0])
    end = np.array([-60.0, 120.0, 50.0])
    v3.add_cylinder(start, end, radius_mm=4.0, rgb=(1.0, 0.0, 0.0), group="needles")
    v3.add_label(end + [0, 0, 10], "T1", group="needles")
    v3.add_polyline(np.array([start, end]) + [30, 0, 0], rgb=(0.0, 1.0, 0.0), group="lines")
    img = v3.capture()
    x, y = v3.display_from_lps((start + end) / 2)
    px = img[int(round(y)), int(round(x))].astype(int)
    assert px[0] > 120 and px[1] < 60 and px[2] < 60, px
    assert set(v3.group_names()) == {"needles", "lines"}
    v3.remove_group("needles")
    img = v3.capture()
    px = img[int(round(y)), int(round(x))].astype(int)
    assert not (px[0] > 120 and px[1] < 60 and px[2] < 60)


def _qimage_rgb(image) -> np.ndarray:
    from PySide6.QtGui import QImage

    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()


# --- the command line -------------------------------------------------------------------------
def _env(**changes) -> dict:
    env = dict(os.environ)
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def test_cli_without_display_says_so(tmp_path):
    env = _env(DISPLAY=None, WAYLAND_DISPLAY=None, QT_QPA_PLATFORM=None)
    r = subprocess.run([sys.executable, "-m", "fluoroplan.cli", "gui", "--demo"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "needs a display" in r.stderr and "xvfb-run" in r.stderr


@pytest.mark.parametrize("platform", ["offscreen", "x11"])
def test_cli_screenshot(tmp_path, case_dir, platform):
    shot = tmp_path / "cli.png"
    if platform == "x11":
        if not os.environ.get("DISPLAY"):
            pytest.skip("no X display (Xvfb) in this run")
        env = _env(QT_QPA_PLATFORM="xcb", VTK_DEFAULT_OPENGL_WINDOW=None)
    else:
        env = _env(DISPLAY=None, QT_QPA_PLATFORM="offscreen", VTK_DEFAULT_OPENGL_WINDOW=None)
    env.update(XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    r = subprocess.run([sys.executable, "-m", "fluoroplan.cli", "gui", str(case_dir),
                        "--screenshot", str(shot)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    from PySide6.QtGui import QImage

    img = QImage(str(shot))
    assert not img.isNull() and img.width() > 600 and img.height() > 400
    arr = _qimage_rgb(img)
    from fluoroplan.app.view3d import BACKGROUND_RGB

    bg = np.round(np.array(BACKGROUND_RGB) * 255).astype(int)
    # the 3-D pane (where its background colour is) has the spine in it
    is_bg = np.abs(arr.astype(int) - bg).max(axis=2) <= 2
    ys, xs = np.nonzero(is_bg)
    assert ys.size > 0.03 * is_bg.size  # the pane is shown
    pane = is_bg[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    assert 0.3 < pane.mean() < 0.97


def test_run_app_with_a_loaded_volume(tmp_path, case_dir):
    """The path ``fluoroplan demo`` takes with a display: ``app.run_app(volume=...)``."""
    shot = tmp_path / "volume.png"
    code = (
        "import sys; from fluoroplan import app; from fluoroplan.io import load_ct; "
        f"sys.exit(app.run_app(volume=load_ct({str(case_dir)!r}), screenshot={str(shot)!r}))"
    )
    env = _env(DISPLAY=None, QT_QPA_PLATFORM="offscreen", VTK_DEFAULT_OPENGL_WINDOW=None,
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    from PySide6.QtGui import QImage

    arr = _qimage_rgb(QImage(str(shot)))
    axial = arr[: arr.shape[0] // 2, : arr.shape[1] // 2]
    assert axial.std() > 20  # the axial quadrant shows the CT, not an empty view


def test_cli_screenshot_with_plan(tmp_path, case_dir):
    """``fluoroplan gui CT --plan PLAN --screenshot``: the plan's first trajectory is drawn."""
    from fluoroplan.io import load_ct
    from fluoroplan.io.planfile import save_plan
    from fluoroplan.planner.propose import plan_case
    from fluoroplan.segmentation.analysis import analyze

    volume = load_ct(case_dir)
    plan = plan_case(volume, analysis_json(analyze(volume)))
    assert plan.trajectories
    plan_path = tmp_path / "plan.json"
    save_plan(plan, plan_path, directory=tmp_path / "recovery")
    shot = tmp_path / "plan.png"
    env = _env(DISPLAY=None, QT_QPA_PLATFORM="offscreen", VTK_DEFAULT_OPENGL_WINDOW=None,
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    r = subprocess.run([sys.executable, "-m", "fluoroplan.cli", "gui", str(case_dir), "--plan",
                        str(plan_path), "--screenshot", str(shot)], env=env, capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    from PySide6.QtGui import QImage

    arr = _qimage_rgb(QImage(str(shot))).astype(int)
    # the selected trajectory's yellow (255, 200-205, 0) in the reformats, the needle views and
    # the C-arm: without a plan only the needle views' titles have it (~400 px at this size)
    yellow = (arr[..., 0] > 240) & (arr[..., 1] > 185) & (arr[..., 1] < 215) & (arr[..., 2] < 25)
    assert yellow.sum() > 1200, yellow.sum()
    # a plan of nothing: refused before a window opens
    r = subprocess.run([sys.executable, "-m", "fluoroplan.cli", "gui", str(case_dir), "--plan",
                        str(tmp_path / "missing.json"), "--screenshot", str(shot)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "does not exist" in r.stdout
