"""What the rehearsal window shows of the attempt's state: which controls are enabled, the
C-arm's angles and the room sentence, the dose counters, the Task 1 checklist, the needle's
depth, the stale-shot warning and the marks on the axial reformat (the expert line only once
the attempt has ended)."""

from __future__ import annotations

import numpy as np

from fluoroplan.app.rehearsal_window.common import SLIDER_STEPS_PER_DEG, _lps_words
from fluoroplan.geometry.carm import signed


class DisplayMixin:
    """The state read-outs of :class:`~fluoroplan.app.rehearsal_window.RehearsalWindow`."""

    # --- showing the state ------------------------------------------------------------------
    def _refresh(self) -> None:
        if self.replay_data is not None:
            self._show_replay_state()
            return
        s = self.session
        live = s is not None and not s.state.ended
        for w in (self.rot_slider, self.rot_spin, self.ang_slider, self.ang_spin,
                  self.fluoro_button, self.end_button, self.pick_entry_button,
                  self.pick_target_button, *self.nudge_buttons.values()):
            w.setEnabled(live)
        for act in (*self.carm_actions, *self.needle_actions):
            act.setEnabled(live)
        self.act_save.setEnabled(s is not None)
        self.target_combo.setEnabled(not self.busy)
        if s is None:
            self.angle_label.setText("")
            self.sentence_label.setText("")
            self.dose_label.setText("")
            self.phase_label.setText("")
            self.needle_label.setText("")
            self.depth_label.setText("")
            for b in (self.bullseye_button, self.working_button, self.place_button,
                      self.lateral_button, *self.step_buttons.values()):
                b.setEnabled(False)
            self._refresh_picks()
            return
        st = s.state
        self._show_pose(s.setup, st)
        ph = s.phase
        names = [p.name for p in s.setup.phases]
        self.bullseye_button.setVisible("screw-bullseye" in names)
        self.bullseye_button.setEnabled(live and ph is not None and ph.name == "screw-bullseye")
        self.working_button.setEnabled(live and ph is not None and ph.name == "working-view")
        self.phase_label.setText(self._phase_text(s.setup, st))
        placed = st.entry_lps is not None
        self.place_button.setEnabled(live and ph is None and self.entry_pick is not None
                                     and self.target_pick is not None)
        for b in self.step_buttons.values():
            b.setEnabled(live and placed)
        self.lateral_button.setEnabled(live and placed)
        self._show_needle(s.setup, st)
        self.depth_label.setText(self.depth_text)
        stale = ""
        if self.fluoro.has_image and self._shot_key != self._needle_key():
            stale = ("The C-arm or the needle has moved since this shot: take a shot to see "
                     "the current view.")
        self.fluoro.set_stale(stale)
        expert = None
        if st.ended:
            ref = s.setup.reference
            expert = (np.asarray(ref["entry_lps"], float), np.asarray(ref["target_lps"], float))
        self._set_axial_marks(st, expert)

    def _show_pose(self, setup, st) -> None:
        pose = setup.pose(st.table_deg)
        r, a = st.table_deg
        self._syncing = True
        try:
            self.rot_slider.setValue(int(round(r * SLIDER_STEPS_PER_DEG)))
            self.ang_slider.setValue(int(round(a * SLIDER_STEPS_PER_DEG)))
            self.rot_spin.setValue(r)
            self.ang_spin.setValue(a)
        finally:
            self._syncing = False
        limit = "  (the C-arm is at its limit)" if st.clamped else ""
        self.angle_label.setText(
            f"Table: rotation {signed(r)}\u00b0, angulation {signed(a)}\u00b0{limit}\n"
            f"{pose.dicom_text} (patient-relative, {setup.patient_position})")
        self.sentence_label.setText(pose.text[0].upper() + pose.text[1:])
        self.dose_label.setText(
            f"Shots {st.shots}   fluoro time {st.fluoro_s:.1f} s   DAP proxy "
            f"{st.dap_cm2s:.0f} cm\u00b2\u00b7s")

    def _phase_text(self, setup, st) -> str:
        lines = []
        for i, p in enumerate(setup.phases):
            if p.name in st.declared:
                lines.append(f"\u2713 {p.label}: declared")
            elif i == st.phase_index:
                lines.append(f"\u25b6 now: reach the {p.label}, take a shot to check, declare it")
            else:
                lines.append(f"\u2022 then: the {p.label}")
        if st.phase_index >= len(setup.phases):
            lines.append("Task 1 done: pick the needle's entry and target on the axial view.")
        return "\n".join(lines)

    def _show_needle(self, setup, st) -> None:
        if st.entry_lps is None:
            self.needle_label.setText("Needle not placed yet.")
            return
        txt = (f"Needle {setup.needle_length_mm:.0f} mm: {st.depth_mm:.1f} mm inserted, "
               f"{setup.needle_length_mm - st.depth_mm:.1f} mm outside")
        if st.corrections:
            txt += f"; {st.corrections} correction(s)"
        self.needle_label.setText(txt)

    def _set_axial_marks(self, st, expert) -> None:
        needle = None
        if st.entry_lps is not None and st.depth_mm > 0.0:
            needle = (st.entry_lps.copy(), st.tip_lps.copy())
        entry = self.entry_pick if self.entry_pick is not None else st.entry_lps
        target = self.target_pick if self.target_pick is not None else st.aim_lps
        self.axial.set_marks(entry, target, needle, expert)

    def _refresh_picks(self) -> None:
        parts = []
        for name, p in (("Entry", self.entry_pick), ("Target", self.target_pick)):
            parts.append(f"{name}: {_lps_words(p) if p is not None else 'not picked'}")
        self.picks_label.setText("\n".join(parts))
