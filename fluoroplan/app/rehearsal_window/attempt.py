"""The attempt in the rehearsal window: the session prepared on a worker, and the trainee's
actions on it (C-arm moves, fluoro shots, declared views, the needle's picks, placement,
advance and withdrawal, the end of the attempt and its score dialog). All of them go through
:class:`fluoroplan.rehearsal.session.RehearsalSession`; a refused one becomes a dialog."""

from __future__ import annotations

import numpy as np

from fluoroplan.app.qtcompat import emit
from fluoroplan.app.rehearsal_window.common import NUDGE_MM, SLIDER_STEPS_PER_DEG
from fluoroplan.app.rehearsal_window.views import ScoreDialog
from fluoroplan.app.tasks import Task
from fluoroplan.geometry.carm import signed
from fluoroplan.geometry.conventions import LATERAL_PLANE_LIMITS
from fluoroplan.io.errors import FluoroplanError
from fluoroplan.rehearsal.session import RehearsalError, RehearsalSession


def _build_session(case, target, plan_json, trainee, progress, cancel, lateral_limits=None):
    """Worker: the session (the expert reference is computed here) and a first render that
    builds the attenuation volume, so the first shot is quick. Not counted: no shot event.
    ``lateral_limits``: a biplane suite's lateral plane (None: monoplane)."""
    progress(0.1, f"Preparing the rehearsal of {target.description or target.id}")
    session = RehearsalSession(case, target, plan_json=plan_json, trainee=trainee,
                               lateral_limits=lateral_limits)
    cancel.check()
    progress(0.7, "Preparing the simulated fluoroscopy")
    session.renderer(session.pose, session.setup.isocenter_lps, [])
    return session


class AttemptMixin:
    """The attempt's actions of :class:`~fluoroplan.app.rehearsal_window.RehearsalWindow`."""

    # --- the attempt ------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._task is not None

    def start_attempt(self, index: int) -> None:
        """Start a new attempt at target ``index`` (the session is prepared on a worker)."""
        if self.replay_data is not None:
            self.leave_replay()
        target = self.targets[index]
        self.target_combo.setCurrentIndex(index)
        if self.session is not None:
            self.session.unsubscribe(self._on_event)
        self.session = None
        self.entry_pick = self.target_pick = None
        self.depth_text = ""
        self._shot_key = None
        self.set_pick_mode(None)
        self.fluoro.set_shot(None)
        self.viewer.set_crosshair(target.point_lps)
        if self.score_dialog is not None:
            self.score_dialog.close()
            self.score_dialog = None
        lateral = LATERAL_PLANE_LIMITS if self.biplane_check.isChecked() else None
        self.fluoro_lateral.set_shot(None)
        if self.fluoro_lateral.isHidden() == (lateral is not None):  # the suite changed
            self.fluoro_lateral.setVisible(lateral is not None)
            self.split.setSizes([1000, 1000, 1000])  # monitors and the axial view share it
        self.lateral_shot_button.setVisible(lateral is not None)
        task = Task("rehearsal", lambda p, c: _build_session(
            self.case, target, self.plan_json, self.trainee_edit.text().strip(), p, c,
            lateral))
        self._task = task
        task.signals.progress.connect(self._on_task_progress)
        task.signals.succeeded.connect(self._on_session)
        task.signals.failed.connect(self._on_session_failed)
        self.status_label.setText(f"Preparing the rehearsal of {target.description}\u2026")
        self._refresh()
        task.start(self._pool)

    def _on_task_progress(self, task, fraction: float, message: str) -> None:
        if task is self._task:
            self.status_label.setText(message)

    def _on_session(self, task, session) -> None:
        if task is not self._task:
            return
        self._task = None
        session.trainee = self.trainee_edit.text().strip()
        self.session = session
        session.subscribe(self._on_event)
        ph = session.phase
        self.status_label.setText(
            f"Target: {session.target.description}. Reach the views of Task 1, declaring each "
            f"one (first: {ph.label if ph else '-'}); then place and drive the needle.")
        self._refresh()
        emit(self.session_ready)

    def _on_session_failed(self, task, exc) -> None:
        if task is not self._task:
            return
        self._task = None
        self.status_label.setText("This target cannot be rehearsed.")
        self._refresh()
        self.report_error(exc, "preparing the rehearsal")

    def _new_attempt_same_target(self) -> None:
        if self.targets:
            self.start_attempt(self.target_combo.currentIndex())

    def _on_target_chosen(self, index: int) -> None:
        if self.session is not None and index == self.targets.index(self.session.target):
            return
        self.start_attempt(index)

    def _on_trainee(self, text: str) -> None:
        if self.session is not None and not self.session.state.ended:
            self.session.trainee = text.strip()

    def _on_event(self, session, event: dict) -> None:
        self._refresh()

    def _do(self, what: str, fn):
        """Run a session action; a refused action becomes a dialog, the window goes on."""
        if self.session is None or self.replay_data is not None:
            return None
        try:
            return fn(self.session)
        except FluoroplanError as exc:
            self.report_error(exc, what)
        except Exception as exc:  # an engine bug must not take the trainee's attempt down
            self.report_error(exc, what)
        return None

    def rotate(self, d_deg: float) -> None:
        self._do("rotating the C-arm", lambda s: s.rotate(d_deg))

    def angulate(self, d_deg: float) -> None:
        self._do("angulating the C-arm", lambda s: s.angulate(d_deg))

    def move_to(self, rotation_deg: float, angulation_deg: float) -> None:
        self._do("moving the C-arm", lambda s: s.move_to(rotation_deg, angulation_deg))

    def _on_slider(self) -> None:
        if self._syncing or self.session is None:
            return
        self.move_to(self.rot_slider.value() / SLIDER_STEPS_PER_DEG,
                     self.ang_slider.value() / SLIDER_STEPS_PER_DEG)

    def _on_spin(self) -> None:
        if self._syncing or self.session is None:
            return
        self.move_to(self.rot_spin.value(), self.ang_spin.value())

    def go_lateral(self) -> None:
        """Drive the C-arm to the progression (lateral) view of the needle line (no shot)."""
        self._do("turning to the progression view",
                 lambda s: s.move_to(*s.lateral_pose().table_angles_deg))

    def take_shot(self) -> None:
        """A fluoro shot: the monitor shows the new image, the counters go up."""
        drr = self._do("taking the shot", lambda s: s.shot())
        if drr is None:  # no attempt, a replay, or refused (a dialog said why)
            return
        st = self.session.state
        r, a = st.table_deg
        self.depth_text = self._depth_now()
        self._shot_key = self._needle_key()
        self.fluoro.set_shot(drr.image, drr.projection,
                             f"Shot {st.shots}: rotation {signed(r)}\u00b0, angulation {signed(a)}\u00b0")
        self._refresh()
        emit(self.shot_taken, st.shots)

    def take_lateral_shot(self) -> None:
        """Biplane suite: a shot of the lateral plane (the vertebra's true lateral); the
        frontal plane stays where it is. Counted as one more exposure."""
        # on a monoplane suite the session refuses it in words (a dialog): turn to a lateral
        drr = self._do("taking the lateral shot", lambda s: s.lateral_shot())
        if drr is None:
            return
        s = self.session
        st = s.state
        pose = drr.projection.pose
        depth = ""
        if st.entry_lps is not None and st.depth_mm > 0.0:
            try:
                d = s.depth_reading(plane="lateral")
                depth = (f"; tip {d['mm_anterior_of_posterior_wall']:.1f} mm anterior of the "
                         "posterior wall")
            except RehearsalError as exc:
                depth = f"; depth not readable: {exc}"
        self.fluoro_lateral.set_shot(drr.image, drr.projection,
                                     f"Shot {st.shots} (lateral plane): {pose.text}{depth}")
        self._refresh()
        emit(self.shot_taken, st.shots)

    def _on_biplane(self, on: bool) -> None:
        """The suite for the attempts: the current one restarts when nothing was done in it
        yet, else the choice applies from the next attempt."""
        s = self.session
        if s is None:
            return
        if s.setup.biplane == bool(on):
            return
        untouched = all(e["type"] == "start" for e in s.events)
        if untouched and not self.busy:
            self.start_attempt(self.target_combo.currentIndex())
        else:
            self.status_label.setText(
                f"{'Biplane' if on else 'Monoplane'} suite from the next attempt (this one has "
                "begun on the other).")

    def _needle_key(self):
        st = self.session.state
        tip = None if st.entry_lps is None else tuple(np.round(st.tip_lps, 4))
        return (tuple(np.round(st.table_deg, 4)), tip)

    def _depth_now(self) -> str:
        """The depth read-out the new shot allows (only a progression view shows depth)."""
        s = self.session
        if s.state.entry_lps is None or s.state.depth_mm <= 0.0:
            return ""
        try:
            d = s.depth_reading()
        except RehearsalError as exc:
            return f"Depth not readable on this shot: {exc}."
        ahead = d["mm_anterior_of_posterior_wall"]
        where = (f"{ahead:.1f} mm anterior of the posterior wall of the body"
                 if ahead >= 0 else f"{-ahead:.1f} mm behind the posterior wall of the body")
        return (f"Depth on this lateral shot: tip {where} "
                f"({100 * d['fraction_of_body_depth']:.0f} % of the body's depth).")

    def declare(self, phase_name: str) -> None:
        s = self.session
        if s is None or self.replay_data is not None:
            return
        ph = s.phase
        if ph is None or ph.name != phase_name:
            want = ph.label if ph is not None else "nothing (Task 1 is done)"
            self.report_error(RehearsalError(f"the view to declare now is the {want}"),
                              "declaring the view")
            return
        self._do("declaring the view", lambda s: s.declare_view())

    # needle
    def set_pick_mode(self, mode: str | None) -> None:
        self.axial.pick_mode = mode
        self.pick_entry_button.setChecked(mode == "entry")
        self.pick_target_button.setChecked(mode == "target")
        self.axial.update()
        self._refresh_picks()

    def _on_picked(self, mode: str, lps) -> None:
        self.set_pick(mode, lps)

    def set_pick(self, mode: str, lps) -> None:
        """Set the picked entry or target (LPS mm) as a click on the axial view does."""
        p = np.asarray(lps, float).reshape(3).copy()
        if mode == "entry":
            self.entry_pick = p
        else:
            self.target_pick = p
        self._refresh_picks()
        self._refresh()

    def nudge(self, direction: str) -> None:
        """Move the point being picked by 1 mm on the axial screen or one slice."""
        mode = self.axial.pick_mode
        point = self.entry_pick if mode == "entry" else self.target_pick if mode else None
        if point is None:
            self.report_error(FluoroplanError(
                "choose Pick entry or Pick target and click the axial view first; the arrows "
                "then move that point"), "nudging")
            return
        a = self.viewer.axes["axial"]
        step = {"left": -a.right_lps, "right": a.right_lps, "up": -a.down_lps,
                "down": a.down_lps}.get(direction)
        if step is None:
            depth = self.viewer.grids["axial"].depth_step_mm
            step = (1 if direction == "in" else -1) * depth * a.into_screen_lps
            self.viewer.set_crosshair(self.viewer.crosshair_lps + step)
        else:
            step = NUDGE_MM * step
        self.set_pick(mode, point + step)

    def place_needle(self) -> None:
        if self.entry_pick is None or self.target_pick is None:
            self.report_error(FluoroplanError(
                "pick an entry and a target on the axial view first (Pick entry, click; Pick "
                "target, click; scroll the slices with the mouse wheel)"), "placing the needle")
            return
        e, t = self.entry_pick.copy(), self.target_pick.copy()
        if self._do("placing the needle", lambda s: s.place(e, t)) is not None:
            self.set_pick_mode(None)

    def step_needle(self, kind: str, mm: float) -> None:
        if kind == "advance":
            self._do("advancing the needle", lambda s: s.advance(mm))
        else:
            self._do("withdrawing the needle", lambda s: s.withdraw(mm))

    def end_attempt(self):
        """End the attempt; show the score dialog; returns the Score (None if refused)."""
        s = self.session
        if s is None or self.replay_data is not None:
            return None
        score = self._do("ending the attempt", lambda s: s.end())
        if score is None:
            return None
        self.finished_attempts.append(s.attempt_json())
        self.show_score(score, f"{s.trainee or '(unnamed)'} \u2014 {s.target.description}")
        emit(self.attempt_ended, score)
        return score

    def show_score(self, score, title: str = "") -> ScoreDialog:
        if self.score_dialog is not None:
            self.score_dialog.close()
        self.score_dialog = ScoreDialog(score, title, self)
        self.score_dialog.show()
        return self.score_dialog
