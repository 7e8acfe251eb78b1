"""Workstation responsiveness: ``python bench/gui_drag.py [--small] [--moves N]``.

Opens the real window offscreen (Qt offscreen platform, VTK through OSMesa) on the demo
phantom (512 x 512 x 400; ``--small``: 192 x 192 x 160), waits for the analysis, places a
trajectory to the loose screw and drags its entry across the axial reformat with real mouse
events. Prints three lines:

- ``gui_drag redraw median_ms=... p95_ms=... max_ms=... n=...``: from the mouse-move event to
  the three reformats repainted with the moved trajectory (synchronous repaints; the checks,
  3-D, needle views and C-arm follow later and are not included);
- ``gui_drr preview_median_ms=... full_median_ms=... n=...``: from a C-arm slider move (or its
  release) to the 256 preview (or the 512 image) shown in the pane, worker thread included;
- ``gui_recheck median_ms=...``: ``recheck`` of the dragged trajectory (the worker's share).

Numbers, never asserts (see STYLE.md, Tests).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="192 x 192 x 160 phantom")
    ap.add_argument("--moves", type=int, default=60, help="mouse moves of the drag")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="fluoroplan-bench-")
    os.environ["FLUOROPLAN_RECOVERY_DIR"] = tmp

    import numpy as np
    from PySide6.QtCore import QEventLoop, QPointF, QSettings, Qt
    from PySide6.QtGui import QMouseEvent

    from fluoroplan import app as fapp
    from fluoroplan.resources.phantom import make_phantom

    qapp = fapp.application()
    from fluoroplan.app.main_window import MainWindow
    from fluoroplan.app.undo import AddTrajectory

    grid = {"shape_ijk": (192, 192, 160), "pixel_mm": 1.5, "slice_mm": 1.5} if args.small else {}
    phantom = make_phantom(0, **grid)
    win = MainWindow(settings=QSettings(os.path.join(tmp, "s.ini"), QSettings.Format.IniFormat),
                     interactive=False)
    win.resize(1600, 1000)
    win.show()

    def wait(cond, timeout_s=300.0):
        t0 = time.time()
        while not cond():
            qapp.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.002)
            if time.time() - t0 > timeout_s:
                raise SystemExit("gui_drag: timed out waiting for the window")

    pl = win.planning
    win.set_volume(phantom.volume, "benchmark phantom")
    wait(lambda: win.is_ready and pl.is_settled())
    target = next(t for t in pl.doc.targets if t.kind == "loose-screw")
    pl.select_target(target.id)
    traj = pl.new_trajectory(target.point_lps + np.array([20.0, 80.0, 0.0]), target.point_lps)
    pl.stack.push(AddTrajectory(pl.doc, traj))
    wait(pl.is_settled)

    axial = win.views["axial"]
    win.state.set_crosshair(traj.entry_lps)
    qapp.processEvents()
    start = axial.widget_from_lps(traj.entry_lps)

    def mouse(kind, pos, buttons):
        button = Qt.MouseButton.LeftButton if kind != QMouseEvent.Type.MouseMove else \
            Qt.MouseButton.NoButton
        return QMouseEvent(kind, pos, QPointF(axial.mapToGlobal(pos.toPoint())), button, buttons,
                           Qt.KeyboardModifier.NoModifier)

    axial.mousePressEvent(mouse(QMouseEvent.Type.MouseButtonPress, start,
                                Qt.MouseButton.LeftButton))
    redraw = []
    for n in range(args.moves):
        pos = start + QPointF(25.0 * np.sin(n / 6.0), 0.5 * n)
        t0 = time.perf_counter()
        axial.mouseMoveEvent(mouse(QMouseEvent.Type.MouseMove, pos, Qt.MouseButton.LeftButton))
        redraw.append((time.perf_counter() - t0) * 1000.0)
        qapp.processEvents()  # timers and worker results are handled between moves
    axial.mouseReleaseEvent(mouse(QMouseEvent.Type.MouseButtonRelease, pos,
                                  Qt.MouseButton.NoButton))
    wait(pl.is_settled)

    carm = pl.carm
    pl.go_view("bullseye")
    wait(pl.is_settled)
    carm.preview_ms.clear()
    carm.full_ms.clear()
    base = carm.rotation.value()
    for n in range(12):  # slider steps, each waited for, then released
        carm.rotation.setValue(base + 20 * (n + 1))
        wait(lambda: carm._running is None and carm._waiting is None)
    carm.render_full()
    wait(lambda: not carm.busy)

    from fluoroplan.planner.propose import recheck

    moved = pl.doc.selected
    checks = []
    for _ in range(5):
        t0 = time.perf_counter()
        recheck(pl.doc.case, moved.moved(entry_lps=moved.entry_lps))
        checks.append((time.perf_counter() - t0) * 1000.0)

    shape = "x".join(str(v) for v in phantom.volume.shape_ijk)
    r = sorted(redraw)
    print(f"gui_drag redraw median_ms={statistics.median(r):.1f} "
          f"p95_ms={r[int(0.95 * (len(r) - 1))]:.1f} max_ms={r[-1]:.1f} n={len(r)} volume={shape}")
    print(f"gui_drr preview_median_ms={statistics.median(carm.preview_ms):.1f} "
          f"full_median_ms={statistics.median(carm.full_ms):.1f} n={len(carm.preview_ms)}")
    print(f"gui_recheck median_ms={statistics.median(checks):.1f}")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
