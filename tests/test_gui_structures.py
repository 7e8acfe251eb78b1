"""The segmented structures on the reformats: the canal's lumen drawn where the phantom drew it
(and nowhere else), the "Show canal and bones" toggle (remembered), the legend, and the new
checks in the Checks table (values as ``Check.display()``, the detail as the tooltip, a failing
"bone in the way" naming what it crosses)."""

from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("DISPLAY"):  # see test_gui_shell.py: VTK draws with OSMesa in-process
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import test_gui_planning as gp  # noqa: E402
from PySide6.QtCore import QPointF, QSettings  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402
from scipy import ndimage  # noqa: E402

from fluoroplan.resources.phantom import STRUCTURE_CODES, make_phantom, write_phantom  # noqa: E402

pytestmark = pytest.mark.gui

GRID = {"shape_ijk": (192, 192, 160), "pixel_mm": 1.5, "slice_mm": 1.5}
WAIT_MS = 90000
LEVEL = "L3"


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(0, **GRID)


# the CT is analysed once for the module (test_gui_planning.py's autouse fixture)
analysed_once = gp.analysed_once


@pytest.fixture(scope="module")
def case_dir(phantom, tmp_path_factory):
    root = tmp_path_factory.mktemp("structcase")
    write_phantom(root, phantom)
    return root / "dicom"


@pytest.fixture
def settings_file(tmp_path):
    return str(tmp_path / "settings.ini")


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, settings_file):
    from fluoroplan.app.main_window import MainWindow

    for kind in ("information", "warning", "critical"):
        monkeypatch.setattr(QMessageBox, kind,
                            staticmethod(lambda *a, **k: QMessageBox.StandardButton.Ok))
    monkeypatch.setattr(QMessageBox, "question",
                        staticmethod(lambda *a, **k: QMessageBox.StandardButton.Discard))
    monkeypatch.setenv("FLUOROPLAN_RECOVERY_DIR", str(tmp_path / "recovery"))
    win = MainWindow(settings=QSettings(settings_file, QSettings.Format.IniFormat))
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


def _rgb(view) -> np.ndarray:
    """The view as painted, (h, w, 3) int, in widget pixels (a QPainter widget: grab() is
    exact; device pixel ratio 1 offscreen and under Xvfb)."""
    image = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    assert image.devicePixelRatio() == 1.0
    h, w = image.height(), image.width()
    buf = np.frombuffer(image.constBits(), np.uint8, count=image.bytesPerLine() * h)
    return buf.reshape(h, image.bytesPerLine())[:, : w * 3].reshape(h, w, 3).astype(int)


def _canal_coloured(rgb: np.ndarray) -> np.ndarray:
    """Pixels tinted toward the canal's magenta (its outline, or its faint fill over grey):
    red and blue above green, red at least blue's (the foramina's violet has blue above red;
    no other overlay colour is magenta)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (r - g > 25) & (b - g > 20) & (r >= b - 10)


def _level(phantom, label):
    return next(v for v in phantom.truth["vertebrae"] if v["label"] == label)


def _widget_truth(view, phantom, code: int):
    """For every widget pixel of the view: whether it lies on the phantom's drawn structure
    ``code`` (nearest voxel of the shown slice), and its in-plane distance (mm) to it."""
    vol = phantom.volume
    h, w = view.height(), view.width()
    inv, ok = view.transform().inverted()
    assert ok
    g = view.grid
    depth = g.depth_of(view.state.crosshair_lps)
    ys, xs = np.mgrid[0:h, 0:w].astype(float) + 0.5
    # widget px -> plane mm: the transform is a scale and a shift
    p0, p1 = inv.map(0.0, 0.0), inv.map(1.0, 1.0)
    u = p0[0] + xs * (p1[0] - p0[0])
    v = p0[1] + ys * (p1[1] - p0[1])
    lps = g.lps_from_uv(np.column_stack([u.ravel(), v.ravel()]), depth)
    ijk = np.rint(vol.ijk_from_lps_points(lps)).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(vol.shape_ijk)), axis=1)
    kji = np.clip(ijk[:, ::-1], 0, np.array(phantom.structures.shape) - 1)
    k = int(np.bincount(kji[inside, 0]).argmax())  # the axial slice shown
    drawn2d = phantom.structures[k] == code
    dist2d = ndimage.distance_transform_edt(~drawn2d, sampling=vol.spacing_mm[[1, 0]])
    on = drawn2d[kji[:, 1], kji[:, 2]] & inside
    dist = np.where(inside, dist2d[kji[:, 1], kji[:, 2]], np.inf)
    return on.reshape(h, w), dist.reshape(h, w), drawn2d


def _mask_out(mask: np.ndarray, rect) -> np.ndarray:
    out = mask.copy()
    if rect is not None:
        x0, y0 = int(rect.left()) - 1, int(rect.top()) - 1
        x1, y1 = int(np.ceil(rect.right())) + 2, int(np.ceil(rect.bottom())) + 2
        out[max(y0, 0):y1, max(x0, 0):x1] = False
    return out


def test_canal_lumen_is_drawn_inside_the_drawn_lumen_and_the_toggle_removes_it(
        qtbot, window, case_dir, phantom, settings_file):
    from fluoroplan.app.main_window import SHOW_STRUCTURES_KEY

    _open(qtbot, window, case_dir)
    assert window.act_structures.isChecked()  # on by default
    labels = window.planning.doc.analysis.anatomy.labels
    from fluoroplan.model.anatomy import CANAL_LABEL

    assert (labels == CANAL_LABEL).any()
    level = _level(phantom, LEVEL)
    window.state.set_crosshair(np.array(level["origin_lps"]))  # the level's mid-body
    axial = window.views["axial"]
    axial.zoom_by(2.0)  # about 2 widget px per voxel: the outline is well resolved
    c = axial.widget_from_lps(np.array(level["canal_center_lps"]))
    r = QPointF(axial.rect().center())
    axial._pan += r - c  # the canal in the middle of the view (QPointF arithmetic)
    axial.repaint()
    qtbot.wait(50)

    rgb = _rgb(axial)
    overlay = window.structure_overlay
    legend = overlay.legend_rects.get("axial")
    assert legend is not None  # the legend is shown, with the canal in it
    assert "spinal canal" in overlay.legend_shown["axial"]
    coloured = _mask_out(_canal_coloured(rgb), legend)
    on, dist, drawn2d = _widget_truth(axial, phantom, STRUCTURE_CODES["canal"])
    assert drawn2d.sum() > 50  # the phantom drew a lumen in this slice
    n = int(coloured.sum())
    assert n > 300, n
    # inside the drawn lumen: within 1.5 voxels of it (the outline runs on the voxels' edges;
    # the segmented lumen agrees with the drawn one to Dice ~0.88); nowhere outside it
    near = coloured & (dist <= 2.25)
    assert near.sum() >= 0.97 * n, (near.sum(), n)
    assert not (coloured & (dist > 4.5)).any(), int((coloured & (dist > 4.5)).sum())
    # most of the drawn lumen's inside carries the faint fill
    core = on & ndimage.binary_erosion(on, iterations=6)
    assert core.sum() > 200
    assert (coloured & core).sum() >= 0.85 * core.sum(), ((coloured & core).sum(), core.sum())
    # the fill is faint: the CSF stays darker than the bone around it and visible through it
    inner = rgb[core]
    assert inner.max(axis=1).mean() < 160

    # the toggle removes it and is remembered
    window.act_structures.trigger()
    assert not window.act_structures.isChecked()
    axial.repaint()
    rgb_off = _rgb(axial)
    assert not _canal_coloured(rgb_off).any()
    window.settings.sync()
    again = QSettings(settings_file, QSettings.Format.IniFormat)
    assert str(again.value(SHOW_STRUCTURES_KEY)).lower() == "false"
    window.act_structures.trigger()
    axial.repaint()
    assert _canal_coloured(_rgb(axial)).sum() > 300


def test_structures_are_drawn_on_the_sagittal_and_coronal_views_too(qtbot, window, case_dir,
                                                                     phantom):
    _open(qtbot, window, case_dir)
    level = _level(phantom, LEVEL)
    window.state.set_crosshair(np.array(level["canal_center_lps"]))
    for name in ("sagittal", "coronal"):
        view = window.views[name]
        view.repaint()
        legend = window.structure_overlay.legend_rects.get(name)
        assert "spinal canal" in window.structure_overlay.legend_shown[name], name
        assert _mask_out(_canal_coloured(_rgb(view)), legend).sum() > 300, name


def test_overlay_redraw_is_fast_and_cached_per_plane(qtbot, window, case_dir, phantom):
    import time

    _open(qtbot, window, case_dir)
    overlay = window.structure_overlay
    level = _level(phantom, LEVEL)
    centre = np.array(level["canal_center_lps"])
    window.state.set_crosshair(centre)
    for v in window.views.values():
        v.repaint()
    n_built = len(overlay.build_ms)
    axial = window.views["axial"]
    # the crosshair moves within the axial plane: the axial cut comes from the cache
    window.state.set_crosshair(centre + np.array([4.0, 3.0, 0.0]))
    axial.repaint()
    assert overlay.cache_hits["axial"] >= 1
    # scrolling: a new cut per slice, each in a few ms
    t0 = time.perf_counter()
    for _ in range(10):
        axial.scroll_slices(1)
        axial.repaint()
    per_slice_ms = (time.perf_counter() - t0) * 100.0
    assert len(overlay.build_ms) > n_built
    assert max(overlay.build_ms[-10:]) < 60.0, overlay.build_ms[-10:]
    assert np.median(overlay.paint_ms[-10:]) < 30.0, overlay.paint_ms[-10:]
    assert per_slice_ms < 250.0  # the whole view (CT cut, overlays), not just ours


def test_checks_table_shows_the_new_checks_and_names_the_bone_in_the_way(qtbot, window,
                                                                         case_dir, phantom):
    from fluoroplan.app.panels import fill_checks

    _open(qtbot, window, case_dir)
    pl = window.planning
    # a path to L3's body through L2's drawn left transverse process
    l2 = _level(phantom, "L2")
    axes = np.array(l2["axes_lps"]).T  # columns: the vertebra's local axes in LPS
    index = l2["index"]
    kji = np.argwhere(phantom.labels == index)
    pts = phantom.volume.lps_from_ijk_points(kji[:, ::-1].astype(float))
    local = (pts - np.array(l2["origin_lps"])) @ axes
    tp = pts[local[:, 0] > 30.0]
    assert len(tp) > 10
    through = tp.mean(axis=0)
    l3 = _level(phantom, "L3")
    tip = np.array(l3["origin_lps"])
    entry = through + 50.0 * (through - tip) / np.linalg.norm(through - tip)
    pl.toggle_place()
    pl.place_point(entry)
    pl.place_point(tip)
    qtbot.waitUntil(lambda: bool(pl.doc.selected is not None and pl.doc.selected.checks
                                 and pl.is_settled()), timeout=WAIT_MS)
    traj = pl.doc.selected
    names = [c.name for c in traj.checks]
    for wanted in ("spinal canal clearance", "bone in the way",
                   "medial pedicle wall before the posterior wall"):
        assert wanted in names, names
    table = pl.plan_panel.checks
    assert table.rowCount() == len(traj.checks)
    for r, check in enumerate(traj.checks):
        assert table.item(r, 0).text() == check.name
        assert table.item(r, 1).text() == check.display()  # "> 10 mm" for an at_least value
        assert table.item(r, 3).text() == check.status.upper()
        if check.detail:
            assert table.item(r, 0).toolTip() == check.detail
            assert table.item(r, 4).toolTip() == check.detail
    bone = traj.check("bone in the way")
    assert bone.status == "fail", bone.detail
    row = names.index("bone in the way")
    assert "L2's left transverse process" in table.item(row, 4).text()
    assert "L2's left transverse process" in table.item(row, 0).toolTip()

    # a value beyond the search range reads "> 10 mm" in the table, never a number
    from fluoroplan.model.plan import Check

    fill_checks(table, [Check("lung / pleura clearance", None, 5.0, "pass", "mm",
                              "no lung within the range searched", at_least=10.0)])
    assert table.item(0, 1).text() == "> 10 mm"
    assert table.item(0, 1).toolTip() == "no lung within the range searched"
