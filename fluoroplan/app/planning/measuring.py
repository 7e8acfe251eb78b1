"""Distances and angles measured on the reformats: D starts a distance (two clicks), A an
angle (three clicks, the vertex second); each is one undoable edit of the plan and is saved
with it. Esc cancels one being measured; Edit > Clear measurements removes them all (undoable).
"""

from __future__ import annotations

import numpy as np

from fluoroplan.app.undo import SetMeasurements
from fluoroplan.model.plan import MEASUREMENT_KINDS, Measurement


class MeasuringMixin:
    """The distance and angle tools of :class:`PlanningController`."""

    def start_measure(self, kind: str) -> None:
        if kind not in MEASUREMENT_KINDS:
            raise ValueError(kind)
        if self.doc.plan is None:
            self.win.statusBar().showMessage("Open a CT first, then measure on its reformats",
                                             6000)
            return
        if self.placing:
            self.cancel_place()
        self.measuring = kind
        self._measure_pts: list[np.ndarray] = []
        self._measure_cursor = None
        self.win.statusBar().showMessage(
            "Distance: click its two ends in a reformat (Esc cancels)" if kind == "distance"
            else "Angle: click a point on one arm, the vertex, then a point on the other arm "
                 "(Esc cancels)")

    def cancel_measure(self) -> bool:
        if self.measuring is None:
            return False
        self.measuring, self._measure_pts, self._measure_cursor = None, [], None
        self.win.statusBar().showMessage("Measuring cancelled", 3000)
        self._redraw_2d()
        return True

    def measure_point(self, view, lps) -> None:
        self._measure_pts.append(np.asarray(lps, float))
        kind = self.measuring
        if len(self._measure_pts) < MEASUREMENT_KINDS[kind]:
            self._redraw_2d()
            return
        n = 1 + sum(m.kind == kind for m in self.doc.measurements)
        taken = {m.id for m in self.doc.measurements}
        prefix = "d" if kind == "distance" else "a"
        while f"{prefix}{n}" in taken:
            n += 1
        m = Measurement(f"{prefix}{n}", kind, np.array(self._measure_pts), view.name)
        self.measuring, self._measure_pts, self._measure_cursor = None, [], None
        before = self.doc.measurements
        self.stack.push(SetMeasurements(self.doc, before, before + (m,),
                                        f"measure {m.kind} {m.id} ({m.text})"))
        self.win.statusBar().showMessage(f"{m.kind.capitalize()} {m.id}: {m.text} (saved with "
                                         "the plan; Ctrl+Z removes it)", 8000)

    def measure_cursor(self, lps) -> None:
        if self.measuring is not None and self._measure_pts:
            self._measure_cursor = np.asarray(lps, float)
            self._redraw_2d()

    def measuring_points(self) -> list:
        """The points clicked so far and the cursor (rubber band), while measuring."""
        if self.measuring is None:
            return []
        return list(self._measure_pts) + ([self._measure_cursor]
                                          if self._measure_cursor is not None else [])

    def remove_measurement(self, mid: str) -> None:
        before = self.doc.measurements
        after = tuple(m for m in before if m.id != mid)
        if after != before:
            self.stack.push(SetMeasurements(self.doc, before, after, f"remove {mid}"))

    def clear_measurements(self) -> None:
        before = self.doc.measurements
        if before:
            self.stack.push(SetMeasurements(self.doc, before, (), "clear the measurements"))
