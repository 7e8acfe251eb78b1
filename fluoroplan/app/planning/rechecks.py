"""Re-running a trajectory's checks on a worker thread after an edit, a new analysis, or
while an end is dragged (the live checks of the preview); one trajectory at a time."""

from __future__ import annotations

from fluoroplan.app.document import same_geometry
from fluoroplan.app.qtcompat import emit
from fluoroplan.app.tasks import Task


class RechecksMixin:
    """The checks' re-runs of :class:`PlanningController`."""

    # --- checks -----------------------------------------------------------------------------
    def _queue_rechecks(self) -> None:
        for t in self.doc.trajectories:
            if not t.checks:
                self.pending_checks.add(t.id)
        if self.pending_checks and self.doc.case is not None:
            self._recheck_timer.start()

    def _start_recheck(self) -> None:
        if self.recheck_task is not None or self.doc.case is None:
            if self.recheck_task is not None:
                self._recheck_timer.start()
            return
        traj = None
        if self._drag is not None:  # live checks of the dragged end
            traj = self._drag["preview"]
        else:
            for tid in list(self.pending_checks):
                traj = self.doc.trajectory(tid)
                if traj is not None and (not traj.checks or tid in self.stale_checks):
                    break
                self.pending_checks.discard(tid)
                self.stale_checks.discard(tid)
                traj = None
        if traj is None:
            self._refresh_plan_panel()
            return
        from fluoroplan.planner.propose import recheck

        case = self.doc.case
        task = Task("recheck", lambda p, c: recheck(case, traj))
        task.traj_id = traj.id
        task.case = case
        self.recheck_task = task
        self._run(task, self._on_recheck, "")

    def _on_recheck(self, task, traj) -> None:
        if task is not self.recheck_task:
            return
        self.recheck_task = None
        if task.case is not self.doc.case:  # the analysis was replaced meanwhile: again
            self._recheck_timer.start()
            return
        if self.doc.update_checked(traj):
            self.pending_checks.discard(traj.id)
            self.stale_checks.discard(traj.id)
            emit(self.checks_updated, traj.id)
        elif self._drag is not None and same_geometry(self._drag["preview"], traj):
            self._live_preview = traj
            self.plan_panel.show_checks(traj, False)
        if self.pending_checks:
            self._start_recheck()
        else:
            self._refresh_plan_panel()
            self._update_actions()
            if self.doc.selected is not None:
                self.carm.refresh()
