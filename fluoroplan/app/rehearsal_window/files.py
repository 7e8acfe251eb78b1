"""The rehearsal window's files: saving the attempt as ``fluoroplan.rehearsal/1`` JSON and the
summary sheet (PDF) of the attempts ended here or chosen from saved files."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from fluoroplan.io.errors import FluoroplanError
from fluoroplan.rehearsal.session import load_attempt
from fluoroplan.rehearsal.summary import write_summary_pdf


class FilesMixin:
    """Saving and summarising of :class:`~fluoroplan.app.rehearsal_window.RehearsalWindow`."""

    # --- files ------------------------------------------------------------------------------
    def save_attempt(self, path) -> Path:
        """Save the current attempt (ended or not) as ``fluoroplan.rehearsal/1`` JSON."""
        if self.session is None:
            raise FluoroplanError("there is no attempt to save yet")
        path = Path(path)
        self.session.save(path)
        self._saved_events = len(self.session.events)
        self.statusBar().showMessage(f"Attempt saved to {path}", 8000)
        return path

    def _save_dialog(self) -> None:
        s = self.session
        if s is None:
            return
        stem = f"rehearsal-{(s.trainee or 'trainee').replace(' ', '_')}-" \
               f"{s.target.ref}-{s.started[:16].replace(':', '')}.json"
        name, _ = QFileDialog.getSaveFileName(self, "Save attempt", stem,
                                              "Rehearsal attempts (*.json)")
        if name:
            try:
                self.save_attempt(name)
            except (FluoroplanError, OSError) as exc:
                self.report_error(exc, "saving the attempt")

    def _open_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open an attempt to replay", "",
                                              "Rehearsal attempts (*.json)")
        if name:
            self.open_attempt(name)

    def export_summary(self, pdf_path, attempts: list[dict] | None = None) -> Path | None:
        """Write the summary sheet of ``attempts`` (default: those ended in this window)."""
        attempts = list(self.finished_attempts if attempts is None else attempts)
        if not attempts:
            self.report_error(FluoroplanError(
                "no attempt to summarise: end an attempt here or choose saved attempt files"),
                "exporting the summary")
            return None
        try:
            out = write_summary_pdf(attempts, pdf_path)
        except (FluoroplanError, OSError) as exc:
            self.report_error(exc, "exporting the summary")
            return None
        self.statusBar().showMessage(f"Summary of {len(attempts)} attempt(s) saved to {out}",
                                     8000)
        return out

    def _summary_dialog(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(
            self, "Attempts to add to the summary (cancel: only those ended here)", "",
            "Rehearsal attempts (*.json)")
        attempts = list(self.finished_attempts)
        try:
            attempts += [load_attempt(n) for n in names]
        except (FluoroplanError, OSError) as exc:
            self.report_error(exc, "reading the attempts")
            return
        if not attempts:
            self.export_summary("", [])
            return
        out, _ = QFileDialog.getSaveFileName(self, "Save the summary sheet",
                                             "rehearsal-summary.pdf", "PDF (*.pdf)")
        if out:
            self.export_summary(out, attempts)
