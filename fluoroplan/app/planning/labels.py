"""Naming the vertebrae: renaming every level from "this vertebra is ..." (worker, undoable)
and replacing the analysis' vertebrae with a label map made elsewhere (TotalSegmentator,
3D Slicer); the views' context menu offers both.

The analysis with a label map is :func:`.workers._analyse`, looked up on its module when it
starts, as the CT's analysis is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMenu

from fluoroplan.app.messages import count
from fluoroplan.app.planning import workers
from fluoroplan.app.planning.workers import _case_state, label_map_source
from fluoroplan.app.qtcompat import emit
from fluoroplan.app.tasks import Task
from fluoroplan.app.undo import Relabel
from fluoroplan.segmentation.levels import LEVELS


class LabelsMixin:
    """Relabelling and imported label maps of :class:`PlanningController`."""

    # --- relabelling --------------------------------------------------------------------------
    def _vertebra_at(self, lps):
        an = self.doc.analysis
        if an is None:
            return None
        vol = self.doc.volume
        ijk = np.round(vol.ijk_from_lps_points(np.asarray(lps, float))[0]).astype(int)
        labels = an.anatomy.labels
        ni, nj, nk = vol.shape_ijk
        if 0 <= ijk[0] < ni and 0 <= ijk[1] < nj and 0 <= ijk[2] < nk:
            value = int(labels[ijk[2], ijk[1], ijk[0]])
            for v in an.anatomy.vertebrae:
                if value and v.label_value == value:
                    return v.index, v.label
        best = None
        for v in self.doc.case.findings.vertebrae:
            d = float(np.linalg.norm(v.vertebra_centroid_lps - lps))
            if d < 25.0 and (best is None or d < best[0]):
                best = (d, v.index, v.label)
        return None if best is None else best[1:]

    def _view_context_menu(self, lps, global_pos) -> None:
        found = self._vertebra_at(lps)
        menu = QMenu(self.win)
        act_relabel = None
        if found is not None:
            act_relabel = menu.addAction(f"This vertebra ({found[1]}) is \u2026")
        act_place = menu.addAction("Place a trajectory (T)")
        act_place.setEnabled(self.doc.case is not None)
        chosen = menu.exec(global_pos)
        if chosen is act_relabel and found is not None:
            self.ask_relabel(*found)
        elif chosen is act_place:
            self.toggle_place()

    def relabel_at_crosshair(self) -> None:
        found = self._vertebra_at(self.win.state.crosshair_lps)
        if found is None:
            self.win.statusBar().showMessage(
                "Put the crosshair on a vertebra (click it) to name it", 6000)
            return
        self.ask_relabel(*found)

    def ask_relabel(self, index: int, current: str) -> None:
        items = list(LEVELS)
        level, ok = QInputDialog.getItem(
            self.win, "Name this vertebra",
            f"The vertebra now labelled {current} is:\n(every other level follows by counting)",
            items, items.index(current) if current in items else 0, False)
        if ok and level and level != current:
            self.relabel(index, level)

    def relabel(self, index: int, level: str) -> None:
        """Rename all levels from "vertebra ``index`` is ``level``" (worker; undoable)."""
        if self.doc.analysis is None or self.relabel_task is not None:
            return
        analysis, volume = self.doc.analysis, self.doc.volume
        before = self.doc.analysis_state()

        def work(progress, cancel):
            progress(0.1, f"Renaming the levels ({level})")
            return _case_state(volume, analysis.relabel(index, level), progress)

        task = Task("relabel", work)
        task.before = before
        task.text = f"name vertebra {index + 1} {level}"
        self.relabel_task = task
        self._run(task, self._on_relabel, "Renaming levels")

    def _on_relabel(self, task, result) -> None:
        if task is not self.relabel_task:
            return
        self.relabel_task = None
        self._show_busy(None)
        self.stack.push(Relabel(self.doc, task.before, result, task.text))
        emit(self.analysis_ready)

    # --- vertebra labels made elsewhere ---------------------------------------------------------
    def choose_labels(self) -> None:
        start = str(self.win.settings.value("labels_folder", self._plan_folder()))
        name, _ = QFileDialog.getOpenFileName(
            self.win, "Import vertebra labels (for a TotalSegmentator folder, pick any of its "
            "vertebrae_*.nii.gz)", start,
            "Label maps (*.nii.gz *.nii *.seg.nrrd *.nrrd);;All files (*)")
        if name:
            self.import_labels(name)

    def import_labels(self, path: str | Path) -> bool:
        """Analyse the CT again with the vertebrae of a label map made elsewhere (worker) and
        replace the analysis as one undoable step (the plan's trajectories are kept and
        re-checked against the new analysis). An unusable map is explained in a dialog and the
        analysis is unchanged. False when nothing was started."""
        if self.doc.volume is None or self.analysis_task is not None \
                or self.relabel_task is not None:
            self.win.statusBar().showMessage(
                "Open a CT and wait for its analysis before importing vertebra labels", 8000)
            return False
        source = label_map_source(path)
        volume = self.doc.volume
        task = Task("labels", lambda p, c: workers._analyse(volume, p, c, label_map=str(source)))
        task.before = self.doc.analysis_state()
        task.source = source
        task.text = f"import vertebra labels from {source.name}"
        self.relabel_task = task
        self.win.settings.setValue("labels_folder", str(Path(path).parent))
        self._run(task, self._on_labels, f"Reading the labels of {source.name}")
        return True

    def _on_labels(self, task, result) -> None:
        if task is not self.relabel_task:
            return
        self.relabel_task = None
        self._show_busy(None)
        self.stack.push(Relabel(self.doc, task.before, result, task.text))
        levels = result[2].findings.levels
        self.win.statusBar().showMessage(
            f"Vertebrae from {task.source.name}: {', '.join(levels)}; {count(len(result[3]), 'target')} "
            "(Ctrl+Z goes back to the previous analysis)", 10000)
        self._update_actions()
        emit(self.analysis_ready)
