"""The plan's edits from the planning controller: choosing a target, proposing trajectories
for it (worker) and accepting one, removing one, placing one by hand (entry, then target) and
dragging an end (the reformats redraw at once, the rest after a rest). Every edit is an
undoable command on the document (``app/undo.py``)."""

from __future__ import annotations

import time

import numpy as np

from fluoroplan.app.document import same_geometry
from fluoroplan.app.planning.workers import _propose_all
from fluoroplan.app.qtcompat import emit
from fluoroplan.app.tasks import Task
from fluoroplan.app.undo import AddTrajectory, EditTrajectory, RemoveTrajectory


class EditingMixin:
    """Targets, proposals, placing and dragging of :class:`PlanningController`."""

    # --- targets and proposals ---------------------------------------------------------------
    def _target_chosen(self, target_id, point) -> None:
        self.doc.set_target(target_id)
        if point is not None:
            self.win.state.set_crosshair(np.asarray(point, float))
        if target_id is not None and self.proposals_for != target_id:
            self.proposals_panel.set_results([])

    def select_target(self, target_id: str) -> None:
        t = self.doc.target(target_id)
        if t is None:
            raise KeyError(target_id)
        key = f"screw:{t.ref}" if t.kind == "loose-screw" else (
            f"vertebra:{t.ref}" if t.kind == "fracture" else f"cage:{t.ref}")
        if not self.targets_panel.select_key(key):
            self._target_chosen(target_id, t.point_lps)

    def propose(self) -> None:
        target = self.doc.target(self.doc.target_id)
        if self.doc.case is None or target is None:
            self.win.statusBar().showMessage(
                "Select a target first (Targets: a loose screw, a fracture, a cage)", 8000)
            return
        if self.propose_task is not None:
            return
        case = self.doc.case
        task = Task("propose", lambda p, c: _propose_all(case, target, p, c))
        task.target_id = target.id
        self.propose_task = task
        self.docks["proposals"].raise_()
        self._run(task, self._on_proposals, f"Proposing for {target.ref}")

    def _on_proposals(self, task, results) -> None:
        if task is not self.propose_task:
            return
        self.propose_task = None
        self._show_busy(None)
        self.proposals_for = task.target_id
        self.proposals_panel.set_results(results)
        self._update_actions()
        n_ok = sum(1 for r in results if hasattr(r, "entry_lps"))
        self.win.statusBar().showMessage(
            f"{n_ok} of {len(results)} approaches found a trajectory, the recommended one is "
            "shown; Ctrl+click a second to compare, Accept (Ctrl+Enter) to add it to the plan",
            10000)
        emit(self.proposals_ready)

    def _preview_changed(self, traj, others) -> None:
        """A proposal selected in Proposals: draw it in every view (reformats, 3-D, needle
        views, C-arm) before it is accepted, the other proposals faint."""
        if traj is self.preview and list(others) == self.preview_others:
            return
        self.preview = traj
        self.preview_others = list(others) if traj is not None else []
        self._draw_trajectories()
        self._redraw_2d()
        self._follow_views()
        self._update_actions()

    def clear_preview(self) -> None:
        """Stop showing a proposal (one was accepted, or a plan trajectory chosen)."""
        self.proposals_panel.table.blockSignals(True)
        self.proposals_panel.table.clearSelection()
        self.proposals_panel.table.blockSignals(False)
        self._preview_changed(None, [])

    def accept_selected(self) -> None:
        traj = self.proposals_panel.selected()
        if traj is not None:
            self.accept(traj)

    def accept(self, traj) -> None:
        from dataclasses import replace

        traj = replace(traj, id=self.doc.unique_id(traj.id))
        self.preview, self.preview_others = None, []  # the accepted one is now the selection
        self.stack.push(AddTrajectory(self.doc, traj, f"accept {traj.id}"))
        self.clear_preview()
        self.docks["plan"].raise_()

    def _plan_row_selected(self, traj_id) -> None:
        """A trajectory chosen in the Plan table: select it and show its target's slices."""
        if traj_id is not None and self.preview is not None:
            self.clear_preview()
        self.doc.select(traj_id)
        traj = self.doc.selected
        if traj is not None:
            self.win.state.set_crosshair(traj.target_lps)

    def remove_selected(self) -> None:
        if self.doc.selected is not None:
            self.stack.push(RemoveTrajectory(self.doc, self.doc.selected_id))

    # --- placing and dragging ---------------------------------------------------------------
    def toggle_place(self) -> None:
        if self.placing:
            self.cancel_place()
            return
        if self.doc.case is None:
            self.win.statusBar().showMessage("Wait for the analysis before placing a trajectory",
                                             8000)
            self.act_place.setChecked(False)
            return
        self.placing = True
        self._place_entry = self._place_cursor = None
        self.act_place.setChecked(True)
        self.win.statusBar().showMessage(
            "Placing a trajectory: click the skin entry, then the target, in any reformat "
            "(Esc cancels)")

    def cancel_place(self) -> None:
        if self.cancel_measure():
            return
        if self._drag is not None:
            self.cancel_drag()
        if not self.placing:
            return
        self.placing = False
        self._place_entry = self._place_cursor = None
        self.act_place.setChecked(False)
        self.win.statusBar().showMessage("Placing cancelled", 3000)
        self._redraw_2d()

    def place_point(self, lps) -> None:
        lps = np.asarray(lps, float)
        if self._place_entry is None:
            self._place_entry = lps
            self.win.statusBar().showMessage("Entry set; now click the target (Esc cancels)")
            self._redraw_2d()
            return
        entry, self._place_entry = self._place_entry, None
        self.placing = False
        self.act_place.setChecked(False)
        try:
            traj = self.new_trajectory(entry, lps)
        except ValueError as exc:
            self.error(exc, "placing the trajectory")
            self._redraw_2d()
            return
        self.stack.push(AddTrajectory(self.doc, traj, f"place {traj.id}"))

    def placing_cursor(self, lps) -> None:
        if self._place_entry is not None:
            self._place_cursor = np.asarray(lps, float)
            self._redraw_2d()

    def placing_points(self):
        return (self._place_entry, self._place_cursor) if self.placing else (None, None)

    def new_trajectory(self, entry_lps, target_lps):
        """A hand-placed trajectory toward the current target (or a manual one at the click);
        the planner decides its side and level (``planner.propose.manual_trajectory``)."""
        from dataclasses import replace

        from fluoroplan.planner.propose import manual_trajectory
        from fluoroplan.planner.targets import manual_target

        case = self.doc.case
        target = self.doc.target(self.doc.target_id)
        if target is None:  # a new manual target, named uniquely in this plan
            n = sum(t.approach == "manual" for t in self.doc.trajectories) + 1
            target = manual_target(case, target_lps, f"manual-{n}")
        traj = manual_trajectory(case, entry_lps, target_lps, target)
        return replace(traj, id=self.doc.unique_id(traj.id))

    def begin_drag(self, traj_id: str, which: str) -> None:
        if self.preview is not None:  # a plan trajectory grabbed: it is what the views show
            self.clear_preview()
        before = self.doc.trajectory(traj_id)
        self._drag = {"id": traj_id, "which": which, "before": before, "preview": before}
        self._live_preview = None
        self.doc.select(traj_id)

    def _moved(self, lps):
        d = self._drag
        kw = {"entry_lps": lps} if d["which"] == "entry" else {"target_lps": lps}
        return d["before"].moved(**kw)

    def drag_to(self, lps) -> None:
        """Move the dragged end: the reformats redraw now, the rest after a rest."""
        if self._drag is None:
            return
        t0 = time.perf_counter()
        try:
            preview = self._moved(np.asarray(lps, float))
        except ValueError:  # the ends would meet
            return
        self._drag["preview"] = preview
        self._live_preview = None
        for v in self.win.views.values():
            v.repaint()
        self._show_live(preview)
        self.drag_ms.append((time.perf_counter() - t0) * 1000.0)
        self._live_timer.start()
        self._recheck_timer.start()

    def end_drag(self, lps) -> None:
        if self._drag is None:
            return
        d, self._drag = self._drag, None
        try:
            after = d["before"].moved(**({"entry_lps": np.asarray(lps, float)}
                                         if d["which"] == "entry"
                                         else {"target_lps": np.asarray(lps, float)}))
        except ValueError:
            after = d["preview"]
        if same_geometry(after, d["before"]):
            self._redraw_2d()
            return
        self.stack.push(EditTrajectory(self.doc, d["before"], after,
                                       f"move the {d['which']} of {after.id}"))

    def cancel_drag(self) -> None:
        self._drag = None
        self._redraw_2d()
        self._follow_views()

    def move_end(self, traj_id: str, which: str, lps) -> None:
        """Move an end of a trajectory as one undoable edit (what a drag ends with)."""
        self.begin_drag(traj_id, which)
        self.end_drag(lps)

    def drawn_trajectories(self):
        out = []
        drag = self._drag
        for t in self.doc.trajectories:
            if drag is not None and t.id == drag["id"]:
                t = drag["preview"]
            out.append((t.id, t.entry_lps, t.aim_lps, t.target_lps,
                        t.id == self.doc.selected_id and self.preview is None))
        return out

    def drawn_proposals(self):
        """The proposals drawn while one is looked at: (entry, aim, target, current)."""
        if self.preview is None:
            return []
        return [(t.entry_lps, t.aim_lps, t.target_lps, t is self.preview)
                for t in [*self.preview_others, self.preview]]

    def shown_selected(self):
        """The trajectory the views show: the drag preview while an end is dragged, else the
        proposal looked at in Proposals, else the plan's selected trajectory."""
        if self._drag is not None and self._drag["id"] == self.doc.selected_id:
            return self._drag["preview"]
        if self.preview is not None:
            return self.preview
        return self.doc.selected

    def current_target_point(self):
        t = self.doc.target(self.doc.target_id)
        return None if t is None else t.point_lps
