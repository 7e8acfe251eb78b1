"""Replay in the rehearsal window: a saved attempt opened and stepped through its states, each
shot re-rendered from its pose (when the attempt was made on this CT), the score shown at its
last step."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fluoroplan.app.rehearsal_window.common import _lps_words
from fluoroplan.geometry.carm import signed
from fluoroplan.io.errors import FluoroplanError
from fluoroplan.io.plan_json import pose_from_json
from fluoroplan.io.rehearsal_json import score_from_json, setup_from_json
from fluoroplan.rehearsal.session import DrrRenderer, load_attempt, replay


class ReplayMixin:
    """The replay of :class:`~fluoroplan.app.rehearsal_window.RehearsalWindow`."""

    # --- replay -----------------------------------------------------------------------------
    def open_attempt(self, path_or_json) -> bool:
        """Open a saved attempt and replay it here (step through its states)."""
        try:
            attempt = (load_attempt(path_or_json) if isinstance(path_or_json, (str, Path))
                       else path_or_json)
            setup = setup_from_json(attempt)
            states = list(replay(attempt))
        except (FluoroplanError, OSError, KeyError, ValueError) as exc:
            if isinstance(exc, (KeyError, ValueError)):
                exc = FluoroplanError(f"this file is not a readable rehearsal attempt "
                                      f"({type(exc).__name__}: {exc})")
            self.report_error(exc, "opening the attempt")
            return False
        if not states:
            self.report_error(FluoroplanError("the attempt has no events to replay"),
                              "opening the attempt")
            return False
        want = attempt.get("case", {}).get("fingerprint")
        have = self.volume.fingerprint() if hasattr(self.volume, "fingerprint") else None
        same_ct = not (want and have and want != have)
        self.set_pick_mode(None)
        self.replay_data = {"attempt": attempt, "setup": setup, "states": states,
                            "same_ct": same_ct, "images": {}, "index": 0}
        self.replay_bar.setVisible(True)
        self.panel.setEnabled(False)
        for act in (*self.carm_actions, *self.needle_actions):
            act.setEnabled(False)
        self.replay_slider.blockSignals(True)
        self.replay_slider.setRange(0, len(states) - 1)
        self.replay_slider.setValue(0)
        self.replay_slider.blockSignals(False)
        who = attempt.get("trainee") or "(unnamed)"
        note = "" if same_ct else " (made on another CT: the shots cannot be re-rendered)"
        self.statusBar().showMessage(f"Replaying the attempt of {who}{note}")
        self.replay_step(0)
        return True

    def replay_step(self, index: int) -> None:
        rd = self.replay_data
        if rd is None:
            return
        index = int(min(max(index, 0), len(rd["states"]) - 1))
        rd["index"] = index
        if self.replay_slider.value() != index:
            self.replay_slider.blockSignals(True)
            self.replay_slider.setValue(index)
            self.replay_slider.blockSignals(False)
        self._show_replay_state()

    def _replay_button(self, name: str) -> None:
        rd = self.replay_data
        if rd is None:
            return
        last = len(rd["states"]) - 1
        i = {"first": 0, "prev": rd["index"] - 1, "next": rd["index"] + 1, "last": last}[name]
        self.replay_step(i)

    def _show_replay_state(self) -> None:
        rd = self.replay_data
        i = rd["index"]
        setup, states, events = rd["setup"], rd["states"], rd["attempt"]["events"]
        st = states[i]
        self._show_pose(setup, st)
        self.phase_label.setText(self._phase_text(setup, st))
        self._show_needle(setup, st)
        self.depth_label.setText("")
        ev = events[i]
        self.replay_label.setText(f"step {i + 1}/{len(states)}: {ev['type']} at "
                                  f"{float(ev.get('t_s', 0.0)):.1f} s")
        # the monitor: the last shot taken up to this step, re-rendered from its pose
        j = next((k for k in range(i, -1, -1) if events[k]["type"] == "shot"), None)
        if j is None:
            self.fluoro.set_shot(None)
        elif rd["same_ct"]:
            if j not in rd["images"]:
                shot_state = states[j]
                pose = pose_from_json(events[j]["pose"], setup.patient_position, **setup.chain)
                needles = []
                if shot_state.entry_lps is not None and shot_state.depth_mm >= 0.5:
                    needles = [(shot_state.entry_lps.copy(), shot_state.tip_lps)]
                rd["images"][j] = self._renderer()(pose, setup.isocenter_lps, needles)
            drr = rd["images"][j]
            r, a = states[j].table_deg
            self.fluoro.set_shot(drr.image, drr.projection,
                                 f"Replay, shot {states[j].shots}: rotation {signed(r)}\u00b0, "
                                 f"angulation {signed(a)}\u00b0")
        else:
            self.fluoro.set_shot(None)
            self.fluoro.empty_text = "Shot taken (made on another CT: not re-rendered)"
        expert = None
        if st.ended:
            ref = setup.reference
            expert = (np.asarray(ref["entry_lps"], float), np.asarray(ref["target_lps"], float))
        needle = None
        if st.entry_lps is not None and st.depth_mm > 0.0:
            needle = (st.entry_lps.copy(), st.tip_lps.copy())
        self.axial.set_marks(st.entry_lps, st.aim_lps, needle, expert)
        self.picks_label.setText("\n".join(
            f"{name}: {_lps_words(p) if p is not None else 'not placed yet'}"
            for name, p in (("Entry", st.entry_lps), ("Target", st.aim_lps))))
        if st.ended and i == len(states) - 1 and rd["attempt"].get("score"):
            self.status_label.setText(
                f"Replayed attempt scored {float(rd['attempt']['score']['total']):.1f} / 100")
            if self.score_dialog is None or self.score_dialog.score is not rd.get("score"):
                rd["score"] = score_from_json(rd["attempt"]["score"])
                self.show_score(rd["score"], f"Replay: {rd['attempt'].get('trainee') or ''}")

    def _renderer(self):
        if self.session is not None:
            return self.session.renderer
        if not hasattr(self, "_own_renderer"):
            self._own_renderer = DrrRenderer(self.volume)
        return self._own_renderer

    @property
    def replay_index(self) -> int | None:
        return None if self.replay_data is None else self.replay_data["index"]

    def leave_replay(self) -> None:
        if self.replay_data is None:
            return
        self.replay_data = None
        self.replay_bar.setVisible(False)
        self.panel.setEnabled(True)
        self.fluoro.empty_text = "No shot yet.\nPress Space or F (Fluoro) to take one."
        self.fluoro.set_shot(None)
        self._shot_key = None
        if self.session is not None and self.session.last_image is not None:
            self.fluoro.set_shot(self.session.last_image.image,
                                 self.session.last_image.projection, "last shot of this attempt")
            self._shot_key = None
        self._refresh_picks()
        self._refresh()
