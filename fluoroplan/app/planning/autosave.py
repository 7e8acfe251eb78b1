"""Autosaving the plan after every edit, and offering (or restoring) the autosave of the
loaded CT's unsaved plan; discarding it is asked for first."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox

from fluoroplan.io.errors import FluoroplanError
from fluoroplan.io.planfile import autosave, discard_recovery, find_recovery


class AutosaveMixin:
    """The autosave and the recovery of :class:`PlanningController`."""

    def _after_edit(self, _index: int) -> None:
        self._update_title()
        self.autosave()

    def autosave(self) -> None:
        plan = self.doc.plan
        if plan is None:
            return
        try:
            autosave(plan, self.doc.path)
        except (OSError, FluoroplanError) as exc:
            if not self._autosave_warned:
                self._autosave_warned = True
                self.error(exc, "autosaving the plan (your edits are kept in this window; "
                                "save the plan to keep them)")

    def series_key(self) -> str | None:
        """The key of the loaded CT's autosave (its series UID, else its fingerprint)."""
        vol = self.doc.volume
        if vol is None:
            return None
        return str(vol.identifiers.get("series_instance_uid") or vol.fingerprint())

    def _offer_recovery(self, restore: bool = False) -> None:
        """Offer the autosave of the loaded CT's unsaved plan; with ``restore`` (the user chose
        it at start-up) restore it without asking."""
        key = self.series_key()
        try:
            rec = find_recovery(series_uid=key)
        except FluoroplanError as exc:
            self.win.statusBar().showMessage(f"An autosave could not be read: {exc}", 10000)
            return
        if rec is None or not rec.plan.trajectories:
            if restore:
                self.win.statusBar().showMessage(
                    "The autosaved plan of this CT is no longer there; nothing was restored",
                    10000)
            return
        if restore:
            self.restore_recovery(rec)
            return
        if not self.win.interactive:
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Recover the plan?",
                          f"{rec.text} Restore it?", QMessageBox.StandardButton.Yes
                          | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self.win)
        box.setObjectName("recovery_box")
        box.button(QMessageBox.StandardButton.Cancel).setText("Keep for later")
        box.setDefaultButton(QMessageBox.StandardButton.Yes)
        box.setEscapeButton(QMessageBox.StandardButton.Cancel)  # closing it loses nothing

        def done(_code: int) -> None:
            clicked = box.clickedButton()
            box.deleteLater()
            if clicked is box.button(QMessageBox.StandardButton.Yes):
                self.restore_recovery(rec)
            elif clicked is box.button(QMessageBox.StandardButton.Discard):
                self._confirm_discard_recovery(rec, key)
            else:
                self.win.statusBar().showMessage(
                    "The autosaved plan is kept; it is offered again when this CT is opened",
                    8000)

        box.finished.connect(done)
        box.open()

    def _confirm_discard_recovery(self, rec, key: str) -> None:
        """Discarding an autosaved plan loses it: ask first (Cancel keeps it)."""
        n = len(rec.plan.trajectories)
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Discard the autosaved plan?",
            f"{rec.text}\n\nDiscard it? Its {n} trajector{'y' if n == 1 else 'ies'} cannot be "
            "recovered afterwards.",
            QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel, self.win)
        box.setObjectName("recovery_discard_box")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def answered(_code: int) -> None:
            sure = box.clickedButton() is box.button(QMessageBox.StandardButton.Discard)
            box.deleteLater()
            if not sure:
                self.win.statusBar().showMessage("The autosaved plan is kept", 6000)
                return
            try:
                discard_recovery(series_uid=key)
            except OSError as exc:
                self.win.report_error(exc, "discarding the autosaved plan")
            else:
                self.win.statusBar().showMessage("Discarded the autosaved plan", 6000)

        box.finished.connect(answered)
        box.open()

    def restore_recovery(self, rec) -> None:
        """Make the recovered plan ``rec`` (of the loaded CT) the plan being edited; it is not
        saved anywhere, so the window shows unsaved changes. The autosave is kept until the
        plan is saved."""
        self.doc.set_plan(rec.plan, None)
        self.stack.clear()
        self.stack.resetClean()
        self._mark_dirty()
        self.win.statusBar().showMessage(
            f"Restored the autosaved plan ({len(rec.plan.trajectories)} trajectories); save it "
            "to keep it", 10000)

    def _mark_dirty(self) -> None:
        # a recovered plan is not saved anywhere: make the stack unclean with no undo step
        self.stack.setClean()
        self.stack.resetClean()
        self._update_title()
