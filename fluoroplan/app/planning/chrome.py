"""The planning controller's window furniture: the docks (C-arm, Targets, Proposals, Plan),
the actions with their menus, shortcuts and toolbar buttons, the progress and Stop button in
the status bar, and keeping the actions' enabled state and the window title up to date."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QLabel, QMenu, QProgressBar, QPushButton

from fluoroplan.geometry.carm import angulation_end, rotation_side


class ChromeMixin:
    """Docks, actions, menus and the status bar of :class:`PlanningController`."""

    # --- construction -----------------------------------------------------------------------
    def _build_docks(self) -> None:
        w = self.win
        self.docks = {}
        area = Qt.DockWidgetArea.RightDockWidgetArea
        for name, title, widget in (("carm", "Virtual C-arm", self.carm),
                                    ("targets", "Targets", self.targets_panel),
                                    ("proposals", "Proposals", self.proposals_panel),
                                    ("plan", "Plan", self.plan_panel),
                                    ("notes", "Notes", self.notes_panel)):
            dock = QDockWidget(title, w)
            dock.setObjectName(f"dock_{name}")
            dock.setWidget(widget)
            dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                             | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
            w.addDockWidget(area, dock)
            self.docks[name] = dock
        w.splitDockWidget(self.docks["carm"], self.docks["targets"], Qt.Orientation.Vertical)
        w.tabifyDockWidget(self.docks["targets"], self.docks["proposals"])
        w.tabifyDockWidget(self.docks["proposals"], self.docks["plan"])
        w.tabifyDockWidget(self.docks["plan"], self.docks["notes"])
        self.docks["targets"].raise_()
        w.resizeDocks([self.docks["carm"]], [max(460, int(w.width() * 0.3))],
                      Qt.Orientation.Horizontal)
        w.resizeDocks([self.docks["carm"], self.docks["targets"]], [540, 460],
                      Qt.Orientation.Vertical)

    def name_nudges(self, position: str) -> None:
        """Name the C-arm menu's nudges for the patient position: "Rotate toward the
        patient's RIGHT 1 deg (table rotation +1)"."""
        for act, (d_rot, d_ang) in self.nudge_actions:
            if d_rot:
                act.setText(f"Rotate toward the patient's {rotation_side(position, d_rot)} "
                            f"{abs(d_rot)} deg (table rotation {d_rot:+d})")
            else:
                act.setText(f"Angulate toward the {angulation_end(position, d_ang)} "
                            f"{abs(d_ang)} deg (table angulation {d_ang:+d})")

    def _action(self, text: str, slot, shortcut=None, tip: str = "", menu=None) -> QAction:
        act = QAction(text, self.win)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        key = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        act.setToolTip(f"{tip or text.replace('&', '').rstrip('.…')}" + (f" ({key})" if key else ""))
        act.setStatusTip(tip or text.replace("&", ""))
        act.triggered.connect(lambda _=False: slot())
        self.win.addAction(act)
        if menu is not None:
            menu.addAction(act)
        return act

    def _build_actions(self) -> None:
        w = self.win
        bar = w.menuBar()
        file_menu = w.file_menu
        first = file_menu.actions()[3] if len(file_menu.actions()) > 3 else None
        plan_menu = QMenu("Plan file", w)
        self.act_open_plan = self._action("Open &plan\u2026", self.choose_plan, "Ctrl+Shift+O",
                                          "Open a saved plan of this CT", plan_menu)
        self.act_save = self._action("&Save plan", self.save, QKeySequence.StandardKey.Save,
                                     "Save the plan", plan_menu)
        self.act_save_as = self._action("Save plan &as\u2026", self.save_as, "Ctrl+Shift+S",
                                        "Save the plan under a new name", plan_menu)
        self.act_pdf = self._action("&Export PDF report\u2026", self.export_pdf, "Ctrl+E",
                                    "Write the plan report as a PDF", plan_menu)
        for act in plan_menu.actions():
            file_menu.insertAction(first, act)
        file_menu.insertSeparator(first)
        self.act_import_labels = self._action(
            "&Import vertebra labels\u2026", self.choose_labels,
            tip="Replace the vertebrae found by fluoroplan with a label map made elsewhere "
                "(TotalSegmentator multilabel NIfTI or one mask of its output folder, 3D Slicer "
                ".seg.nrrd); undoable")
        file_menu.insertAction(first, self.act_import_labels)
        file_menu.insertSeparator(first)

        edit = QMenu("&Edit", w)
        bar.insertMenu(w.view_menu.menuAction(), edit)
        self.act_undo = self.stack.createUndoAction(w, "&Undo")
        self.act_undo.setShortcut(QKeySequence.StandardKey.Undo)
        self.act_redo = self.stack.createRedoAction(w, "&Redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        for act in (self.act_undo, self.act_redo):
            w.addAction(act)
            edit.addAction(act)
        edit.addSeparator()
        self.act_propose = self._action("&Propose", self.propose, "Ctrl+P",
                                        "Propose trajectories for the selected target", edit)
        self.act_accept = self._action("&Accept proposal", self.accept_selected, "Ctrl+Return",
                                       "Add the selected proposal to the plan", edit)
        self.act_place = self._action("Place &trajectory", self.toggle_place, "T",
                                      "Click the entry, then the target, in any reformat", edit)
        self.act_place.setCheckable(True)
        self.act_remove = self._action("&Remove trajectory", self.remove_selected,
                                       QKeySequence.StandardKey.Delete,
                                       "Remove the selected trajectory from the plan", edit)
        self.act_cancel = self._action("Cancel placing", self.cancel_place, "Esc")
        edit.addSeparator()
        self.act_distance = self._action("Measure &distance", lambda: self.start_measure(
            "distance"), "D", "Click the two ends of a distance in a reformat (saved with the "
            "plan, undoable)", edit)
        self.act_angle = self._action("Measure an&gle", lambda: self.start_measure("angle"),
                                      "A", "Click a point on one arm, the vertex, then a point "
                                      "on the other arm (saved with the plan, undoable)", edit)
        self.act_clear_measures = self._action("Clear &measurements", self.clear_measurements,
                                               tip="Remove every distance and angle (undoable)",
                                               menu=edit)
        self.act_relabel = self._action("This vertebra &is\u2026", self.relabel_at_crosshair,
                                        "Ctrl+L", "Name the vertebra at the crosshair; all "
                                        "levels follow", edit)

        carm = QMenu("&C-arm", w)
        bar.insertMenu(w.view_menu.menuAction(), carm)
        self.act_views = {}
        for name, text, key in (("bullseye", "&Bull's-eye view", "B"),
                                ("working_view", "&Working view", "W"),
                                ("progression", "&Progression view", "P")):
            self.act_views[name] = self._action(text, lambda n=name: self.go_view(n), key,
                                                menu=carm)
        carm.addSeparator()
        self.act_biplane = carm.addAction("Bi&plane suite (lateral plane beside)")
        self.act_biplane.setCheckable(True)
        self.act_biplane.setShortcut("Ctrl+Shift+L")
        self.act_biplane.setToolTip("Show the lateral plane's progression view beside the "
                                    "frontal plane")
        self.act_biplane.toggled.connect(self.carm.set_biplane)
        self.carm.biplane_button.toggled.connect(self.act_biplane.setChecked)
        carm.addSeparator()
        # each item says where it turns the detector in patient terms (renamed for the CT's
        # patient position: name_nudges)
        self.nudge_actions = []
        for key, d in (("Alt+Left", (-1, 0)), ("Alt+Right", (1, 0)), ("Alt+Up", (0, 1)),
                       ("Alt+Down", (0, -1)), ("Alt+Shift+Left", (-5, 0)),
                       ("Alt+Shift+Right", (5, 0)), ("Alt+Shift+Up", (0, 5)),
                       ("Alt+Shift+Down", (0, -5))):
            act = self._action("", lambda d=d: self.carm.nudge(*d), key, menu=carm)
            self.nudge_actions.append((act, d))
        self.name_nudges("HFP")

        for act in (self.act_place, self.act_remove):
            self.plan_panel.add_button(act)
        tb = w.toolbar
        tb.addSeparator()
        for act in (self.act_undo, self.act_redo, self.act_propose, self.act_place,
                    self.act_views["bullseye"]):
            tb.addAction(act)
        self._update_actions()

    def _build_status(self) -> None:
        sb = self.win.statusBar()
        self.progress = QProgressBar()
        self.progress.setObjectName("planning_progress")
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(self.win.fontMetrics().averageCharWidth() * 30)
        self.cancel_button = QPushButton("Stop")
        self.cancel_button.setObjectName("planning_cancel")
        self.cancel_button.setToolTip("Stop the analysis or the proposals")
        self.cancel_button.clicked.connect(self.cancel)
        self.task_label = QLabel("")
        sb.addPermanentWidget(self.task_label)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_button)
        self._show_busy(None)

    def _show_busy(self, text: str | None, fraction: float = 0.0) -> None:
        busy = text is not None
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.task_label.setVisible(busy)
        if busy:
            self.task_label.setText(text)
            self.progress.setValue(int(round(fraction * 1000)))

    def _update_actions(self) -> None:
        has_case = self.doc.case is not None
        sel = self.doc.selected is not None
        target = self.doc.target(self.doc.target_id)
        self.act_propose.setEnabled(has_case and target is not None and self.propose_task is None)
        self.act_place.setEnabled(has_case)
        for act in (self.act_distance, self.act_angle):
            act.setEnabled(self.doc.plan is not None)
        self.act_clear_measures.setEnabled(bool(self.doc.measurements))
        self.act_remove.setEnabled(sel)
        self.act_accept.setEnabled(self.proposals_panel.selected() is not None)
        self.act_relabel.setEnabled(has_case and self.relabel_task is None)
        self.act_import_labels.setEnabled(self.doc.volume is not None and self.analysis_done
                                          and self.analysis_task is None
                                          and self.relabel_task is None)
        shown = self.shown_selected() is not None  # a proposal looked at has its views too
        for act in self.act_views.values():
            act.setEnabled(shown)
        self.act_save.setEnabled(self.doc.plan is not None)
        self.act_save_as.setEnabled(self.doc.plan is not None)
        self.act_open_plan.setEnabled(self.doc.volume is not None)
        self.act_pdf.setEnabled(self.doc.plan is not None and self.pdf_task is None)
        self.carm.trajectory_changed(shown)
        self.proposals_panel.set_busy(self.propose_task is not None,
                                      has_case and target is not None)

    def _update_title(self) -> None:
        base = self.win.windowTitle().lstrip("*").split("  [")[0]  # the CT's part
        name = Path(self.doc.path).name if self.doc.path else None
        if name:
            base += f"  [{name}]"
        self.win.setWindowTitle(("*" if not self.stack.isClean() else "") + base)
