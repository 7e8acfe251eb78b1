"""The planning docks: Targets (what the analysis found), Proposals, and the Plan.

They show what the document holds and emit what the user asks for; the controller
(``app/planning/``) does the rest.
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import QItemSelectionModel, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fluoroplan.app.messages import count
from fluoroplan.app.qtcompat import emit
from fluoroplan.model.findings import Findings

STATUS_RGB = {"pass": "#7fd27f", "warn": "#ffc04d", "unknown": "#8ab4f8", "fail": "#ff6b6b"}
LOOSE_TEXT = "#ff9a4d"


def _table(columns: list[str], name: str) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setObjectName(name)
    t.setHorizontalHeaderLabels(columns)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.verticalHeader().setVisible(False)
    h = t.horizontalHeader()
    h.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    h.setStretchLastSection(True)
    t.setMinimumHeight(t.fontMetrics().height() * 3)  # the window must fit small screens
    return t


def _item(text: str, colour: str | None = None, tip: str = "") -> QTableWidgetItem:
    it = QTableWidgetItem(text)
    if colour:
        it.setForeground(QBrush(QColor(colour)))
    if tip:
        it.setToolTip(tip)
    return it


def select_row(table, row: int, column: int = 0) -> None:
    """Select one row (and make it current) whatever keys are held: ``selectRow()`` reads the
    keyboard's modifiers, so the Ctrl still down after Ctrl+P or Ctrl+Enter toggled the row
    off again."""
    flags = (QItemSelectionModel.SelectionFlag.ClearAndSelect
             | QItemSelectionModel.SelectionFlag.Rows)
    table.selectionModel().setCurrentIndex(table.model().index(row, column), flags)


def split_top(split: QSplitter, want_px: float, most_px: float) -> None:
    """Give the top pane of a two-pane splitter ``want_px`` (at most ``most_px``), the bottom
    the rest."""
    room = split.height()
    if room <= 0:
        return
    top = int(min(want_px, most_px))
    split.setSizes([top, room - top])


def _panel_layout(panel: QWidget, name: str, text: str) -> tuple[QVBoxLayout, QLabel]:
    """A dock panel's column, topped by a wrapping line of text that says its state."""
    panel.setObjectName(name)
    layout = QVBoxLayout(panel)
    layout.setContentsMargins(2, 2, 2, 2)
    label = QLabel(text)
    label.setWordWrap(True)
    layout.addWidget(label)
    return layout, label


def fill_checks(table: QTableWidget, checks, note: str = "") -> None:
    """One row per check: name, value, limit, status, what it means."""
    table.setRowCount(0)
    for c in checks:
        r = table.rowCount()
        table.insertRow(r)
        table.setItem(r, 0, _item(c.name, tip=c.detail))
        table.setItem(r, 1, _item(c.display(), tip=c.detail))  # "> 15 mm" beyond a search range
        table.setItem(r, 2, _item(c.limit_display(), tip=c.detail))
        table.setItem(r, 3, _item(c.status.upper(), STATUS_RGB[c.status], c.detail))
        table.setItem(r, 4, _item(c.detail, tip=c.detail))
    table.clearSpans()
    if not checks and note:
        table.insertRow(0)
        table.setItem(0, 0, _item(note, "#9aa0a6", note))
        table.setSpan(0, 0, 1, table.columnCount())  # a sentence, not a check name


def checks_table(name: str) -> QTableWidget:
    """Check, value, limit, status, detail. Long check names ("landmarks hidden by metal:
    bull's-eye view") wrap in a column of their own width so that the value and status stay
    in sight in a narrow dock; the detail is one line (and every cell's tooltip)."""
    t = _table(["Check", "Value", "Limit", "Status", "Detail"], name)
    t.setWordWrap(True)
    h = t.horizontalHeader()
    h.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
    t.setColumnWidth(0, t.fontMetrics().averageCharWidth() * 24)
    h.setStretchLastSection(False)  # a stretched detail would wrap and make every row tall
    t.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    return t


class TargetsPanel(QWidget):
    """Screws (halo width, loose ones marked), fractured vertebrae, cages, every level, rods,
    cross-links and bone cement.

    Signals: ``target_chosen(target_id or None, point LPS or None)``;
    ``relabel_requested(vertebra index, current label)``.
    """

    target_chosen = Signal(object, object)
    relabel_requested = Signal(int, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout, self.status = _panel_layout(self, "targets_panel",
                                            "Open a CT: the analysis runs once it is loaded.")
        self.tree = QTreeWidget()
        self.tree.setObjectName("targets_tree")
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["Found", "Details"])
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._menu)
        self.tree.currentItemChanged.connect(self._current)
        layout.addWidget(self.tree, 1)
        self.items: dict[str, QTreeWidgetItem] = {}
        self.badged: dict[str, list[str]] = {}

    def populate(self, findings: Findings | None, targets) -> None:
        self.tree.clear()
        self.items = {}
        if findings is None:
            return
        by_ref = {t.ref: t for t in targets}
        screws = QTreeWidgetItem(self.tree, ["Screws", ""])
        for s in findings.screws:
            it = QTreeWidgetItem(screws, [s.id + ("  LOOSE" if s.loose else ""),
                                          f"halo {s.halo_mm:.1f} mm, \u00d8 {s.diameter_mm:.1f} mm"])
            t = by_ref.get(s.id)
            point = t.point_lps if t is not None else list(0.5 * (s.head_lps + s.tip_lps))
            it.setData(0, Qt.ItemDataRole.UserRole, ("screw", t.id if t else None, point))
            if s.loose:
                for col in (0, 1):
                    it.setForeground(col, QBrush(QColor(LOOSE_TEXT)))
                it.setToolTip(0, "Loose: a radiolucent halo wider than 1 mm around the shaft")
            self.items[f"screw:{s.id}"] = it
        verts = QTreeWidgetItem(self.tree, ["Vertebrae", "right-click: this vertebra is \u2026"])
        for v in findings.vertebrae:
            grade = v.fracture_grade
            text = "no fracture" if not grade else f"fracture, Genant grade {grade}"
            t = by_ref.get(v.label) if grade else None
            it = QTreeWidgetItem(verts, [v.label, text])
            it.setData(0, Qt.ItemDataRole.UserRole,
                       ("vertebra", t.id if t else None,
                        t.point_lps if t is not None else list(v.vertebra_centroid_lps),
                        v.index, v.label))
            if grade:
                for col in (0, 1):
                    it.setForeground(col, QBrush(QColor(LOOSE_TEXT)))
            self.items[f"vertebra:{v.label}"] = it
        cages = QTreeWidgetItem(self.tree, ["Cages", ""])
        cage_targets = {t.ref: t for t in targets if t.kind == "cage"}
        for c in findings.cages:
            ref = "-".join(c.between)
            t = cage_targets.get(ref)
            it = QTreeWidgetItem(cages, [f"cage {ref}", t.description if t else "not subsided"])
            it.setData(0, Qt.ItemDataRole.UserRole,
                       ("cage", t.id if t else None,
                        t.point_lps if t else list(c.center_lps)))
            if t is not None:
                it.setForeground(1, QBrush(QColor(LOOSE_TEXT)))
            self.items[f"cage:{ref}"] = it
        QTreeWidgetItem(self.tree, ["Rods", f"{len(findings.rods)} found"])
        links = QTreeWidgetItem(self.tree, ["Cross-links", ""])
        for n, c in enumerate(findings.connectors):
            levels = [x for x in c.between if x]
            where = (f"between {levels[0]} and {levels[1]}" if len(levels) == 2 else
                     f"at {levels[0]}" if levels else "level unknown")
            it = QTreeWidgetItem(links, [f"cross-link {c.level or '?'}",
                                         f"{c.length_mm:.0f} mm, {where}"])
            it.setToolTip(0, "Transverse rod connector: a bar clamped onto both rods")
            it.setData(0, Qt.ItemDataRole.UserRole, ("cross-link", None, list(c.center_lps)))
            self.items[f"cross-link:{c.level or n}"] = it
        cement = QTreeWidgetItem(self.tree, ["Cement", ""])
        for c in findings.listed_cement:
            ref = c.level or c.screw or "not in a vertebra"
            kind = f"augmenting {c.screw}" if c.screw else "vertebroplasty"
            ml = c.volume_mm3 / 1000.0
            if c.level or c.screw:
                name, detail = f"cement {ref}", f"{kind}, {ml:.1f} ml dense"
            else:  # not a vertebra's: say where it is
                name, detail = ("cement (not in a vertebra)",
                                f"{ml:.1f} ml dense, {findings.where(c.center_lps)}")
            it = QTreeWidgetItem(cement, [name, detail])
            for col in (0, 1):
                it.setToolTip(col, f"{c.description}; {ml:.1f} ml of it "
                              "is above the metal threshold (its thin rim is not counted)")
            it.setData(0, Qt.ItemDataRole.UserRole, ("cement", None, list(c.center_lps)))
            self.items[f"cement:{ref}" + (f":{c.screw}" if c.screw else "")
                       + (f":{len(self.items)}" if not (c.level or c.screw) else "")] = it
        other = QTreeWidgetItem(self.tree, ["Other metal", ""])
        for n, o in enumerate(findings.other_metal):
            size = " x ".join(f"{e:.0f}" for e in o.extent_mm[:3])
            it = QTreeWidgetItem(other, [f"metal, {o.volume_mm3 / 1000.0:.1f} ml",
                                         f"{size} mm, {findings.where(o.center_lps)}"])
            it.setToolTip(0, f"{o.description}: not a screw, rod, cage or cross-link (a "
                             "prosthesis, a stent, wires)")
            it.setData(0, Qt.ItemDataRole.UserRole, ("other metal", None, list(o.center_lps)))
            self.items[f"other:{n}"] = it
        self.tree.expandAll()
        n_loose = len(findings.loose_screws)
        if not findings.vertebrae:
            self.status.setText(
                "No vertebrae found: the spinal canal and the levels are UNKNOWN on this CT. "
                "Plan by hand: place a trajectory (T); the checks that need the canal or the "
                "levels say UNKNOWN (not checked).")
            return
        self.status.setText(
            f"{count(len(targets), 'target')}: {count(n_loose, 'loose screw')}, "
            f"{count(sum(t.kind == 'fracture' for t in targets), 'fracture')}, "
            f"{count(sum(t.kind == 'cage' for t in targets), 'subsided cage')}. "
            "Select one, then Propose (Ctrl+P) or place a trajectory (T).")

    def set_badges(self, notes_by_key: dict) -> None:
        """A warning badge (and the notes as its tooltip) on each item a note concerns."""
        icon = self.style().standardIcon(self.style().StandardPixmap.SP_MessageBoxWarning)
        self.badged = {}
        for key, it in self.items.items():
            texts = notes_by_key.get(key)
            if texts:
                it.setIcon(0, icon)
                it.setToolTip(1, "\n".join(texts))
                self.badged[key] = list(texts)
            else:
                it.setIcon(0, QIcon())

    def select_key(self, key: str) -> bool:
        it = self.items.get(key)
        if it is None:
            return False
        self.tree.setCurrentItem(it)
        return True

    def _current(self, item, _prev) -> None:
        data = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
        if not data:
            return
        emit(self.target_chosen, data[1], data[2])

    def _menu(self, pos) -> None:
        item = self.tree.itemAt(pos)
        data = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
        if not data or data[0] != "vertebra":
            return
        menu = QMenu(self)
        act = menu.addAction(f"This vertebra ({data[4]}) is \u2026")
        chosen = menu.exec(self.tree.viewport().mapToGlobal(pos))
        if chosen is act:
            emit(self.relabel_requested, int(data[3]), str(data[4]))


class ProposalsPanel(QWidget):
    """Proposals for the current target, the recommended one marked (and why, in clinical
    words), and the checks of the selected one; two selected (Ctrl+click) are compared side by
    side. The selected proposal is drawn in every view before it is accepted
    (``preview_changed``).

    Signals: ``propose_clicked()``; ``accept_clicked(Trajectory)``;
    ``preview_changed(current Trajectory or None, list of the other proposals' Trajectory)``.
    """

    propose_clicked = Signal()
    accept_clicked = Signal(object)  # the proposed Trajectory
    preview_changed = Signal(object, object)

    VISIBLE_ROWS = 5  # five proposals and their key numbers fit without scrolling

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("proposals_panel")
        self.results: list = []
        self.recommendation = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.target_label = QLabel("No target selected")
        self.target_label.setObjectName("proposals_target")
        self.target_label.setWordWrap(True)
        layout.addWidget(self.target_label)
        self.target_notes = QLabel("")
        self.target_notes.setObjectName("proposals_target_notes")
        self.target_notes.setWordWrap(True)
        self.target_notes.setStyleSheet(f"color: {STATUS_RGB['warn']};")
        self.target_notes.hide()
        layout.addWidget(self.target_notes)
        top = QHBoxLayout()
        self.propose_button = QPushButton("Propose (Ctrl+P)")
        self.propose_button.setObjectName("propose_button")
        self.propose_button.clicked.connect(lambda: emit(self.propose_clicked))
        top.addWidget(self.propose_button)
        self.accept_button = QPushButton("Accept (Ctrl+Enter)")
        self.accept_button.setObjectName("accept_button")
        self.accept_button.clicked.connect(self._accept)
        top.addWidget(self.accept_button)
        top.addStretch(1)
        layout.addLayout(top)
        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        self.table = _table(["", "Approach", "Side", "Status", "Depth", "Canal", "Metal"],
                            "proposals_table")
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setToolTip("Click a proposal to see it in every view; Ctrl+click a second "
                              "one to compare the two; double-click to accept")
        self.table.setWordWrap(False)
        rows = self.table.verticalHeader()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        rows.setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        # five rows (VISIBLE_ROWS) once there is room (resizeEvent)
        self._rows_px = (self.table.horizontalHeader().sizeHint().height()
                         + self.VISIBLE_ROWS * rows.defaultSectionSize() + 6)
        # (the minimum stays _table's three lines: the window must fit an 800 x 600 screen)
        self.table.itemSelectionChanged.connect(self._show_checks)
        self.table.currentCellChanged.connect(lambda *_: self._show_checks())
        self.table.cellDoubleClicked.connect(lambda r, c: self._accept())
        self.why = QLabel("")
        self.why.setObjectName("recommendation_label")
        self.why.setWordWrap(True)
        self.why.setTextFormat(Qt.TextFormat.RichText)
        self.why.hide()
        self.checks = checks_table("proposal_checks")
        self.compare = _table(["", "A", "B"], "proposal_compare")
        self.compare.setWordWrap(True)
        self.compare.verticalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        h = self.compare.horizontalHeader()
        for col in (1, 2):
            h.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
        h.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.compare.setColumnWidth(0, self.compare.fontMetrics().averageCharWidth() * 20)
        self.compare.hide()
        top_box = QWidget()
        tl = QVBoxLayout(top_box)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.table)
        tl.addWidget(self.why)
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.checks)
        bl.addWidget(self.compare)
        split.addWidget(top_box)
        split.addWidget(bottom)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        layout.addWidget(split, 1)
        self.split = split
        self.set_busy(False, False)

    def resizeEvent(self, ev) -> None:  # noqa: N802
        super().resizeEvent(ev)
        self._fit()

    def _fit(self) -> None:
        """Room for five proposal rows and the recommendation first, at least four rows of
        checks below (or half the panel, on a small screen); the checks take the rest."""
        room = self.split.height()
        row = self.table.verticalHeader().defaultSectionSize()
        why = self.why.heightForWidth(max(self.split.width(), 1)) if self.why.isVisible() else 0
        split_top(self.split, self._rows_px + max(why, 0) + 4,
                  max(room - 5 * row, room // 2))

    def set_target(self, target, notes=()) -> None:
        """The target proposed for, and the notes that concern it (badged in Targets)."""
        self.target_label.setText("No target selected: choose one in Targets"
                                  if target is None else f"<b>{target.description}</b>")
        self.target_notes.setText("\n".join(f"\u26a0 {t}" for t in notes))
        self.target_notes.setVisible(bool(notes) and target is not None)

    def set_busy(self, busy: bool, can_propose: bool) -> None:
        self.propose_button.setEnabled(can_propose and not busy)
        self.accept_button.setEnabled(not busy and self.selected() is not None)

    def set_results(self, results) -> None:
        """Show the proposals; the recommended one is starred, explained and selected."""
        from fluoroplan.model.plan import Trajectory
        from fluoroplan.planner.recommend import approach_words, recommend

        self.results = list(results)
        self.recommendation = rec = recommend(self.results) if self.results else None
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        for n, res in enumerate(self.results):
            r = self.table.rowCount()
            self.table.insertRow(r)
            star = _item("\u2605" if rec is not None and n == rec.index else "", "#ffd24d",
                         "recommended" if rec is not None and n == rec.index else "")
            name = _item(approach_words(res.approach), tip=res.approach)
            if isinstance(res, Trajectory):
                canal, metal = (_check_cell(res, "spinal canal clearance"),
                                _check_cell(res, "metal clearance"))
                cells = [star, name, _item(res.side),
                         _item(res.status.upper(), STATUS_RGB[res.status]),
                         _item(f"{res.depth_mm:.0f} mm",
                               tip=f"{res.needle.gauge} G {res.needle.length_mm:.0f} mm needle"),
                         canal, metal]
            else:
                cells = [star, name, _item(res.side or res.target.side or ""),
                         _item("NO SAFE PATH", STATUS_RGB["fail"], res.reason),
                         _item("\u2014", tip=res.reason), _item("\u2014"), _item("\u2014")]
            for c, it in enumerate(cells):
                self.table.setItem(r, c, it)
        self.table.blockSignals(False)
        self.table.resizeColumnsToContents()
        self.why.setVisible(rec is not None)  # no empty line's height on a small screen
        if rec is None:
            self.why.setText("")
        else:
            items = "".join(f"<li>{escape(x)}</li>" for x in rec.reasons)
            self.why.setText(f"<b>\u2605 {escape(rec.headline)}</b><ul style='margin:0'>"
                             f"{items}</ul>")
            self.why.setToolTip(rec.sentence + " Ctrl+click another proposal to compare the "
                                "two side by side.")
        self._fit()
        if rec is not None and rec.index is not None:
            select_row(self.table, rec.index, 1)
        self._show_checks()

    def _rows(self) -> list[int]:
        return sorted({i.row() for i in self.table.selectedIndexes()})

    def selected(self):
        """The proposal the user is looking at (the current one of the selected rows)."""
        from fluoroplan.model.plan import Trajectory

        rows = self._rows()
        if not rows:
            return None
        row = self.table.currentRow() if self.table.currentRow() in rows else rows[-1]
        res = self.results[row] if row < len(self.results) else None
        return res if isinstance(res, Trajectory) else None

    def compared(self) -> tuple | None:
        """The two proposals compared (current first), when two are selected."""
        from fluoroplan.model.plan import Trajectory

        rows = self._rows()
        if len(rows) != 2:
            return None
        pair = [self.results[r] for r in rows]
        if not all(isinstance(p, Trajectory) for p in pair):
            return None
        cur = self.selected()
        return (cur, pair[1] if pair[0] is cur else pair[0]) if cur is not None else tuple(pair)

    def _show_checks(self) -> None:
        traj = self.selected()
        rows = self._rows()
        pair = self.compared()
        self.compare.setVisible(pair is not None)
        self.checks.setVisible(pair is None)
        if pair is not None:
            self._fill_compare(*pair)
        elif traj is None and rows:
            res = self.results[rows[-1]]
            fill_checks(self.checks, [], f"No safe trajectory: {res.reason}")
        else:
            fill_checks(self.checks, traj.checks if traj else [], "Select a proposal")
        self.accept_button.setEnabled(traj is not None)
        from fluoroplan.model.plan import Trajectory

        others = [r for r in self.results if isinstance(r, Trajectory) and r is not traj]
        emit(self.preview_changed, traj, others)

    def _fill_compare(self, a, b) -> None:
        from fluoroplan.planner.recommend import comparison, proposal_name

        t = self.compare
        t.setHorizontalHeaderLabels(["", "A (shown)", "B"])
        t.setRowCount(0)
        for what, ta, tb, better in [("proposal", proposal_name(a), proposal_name(b), ""),
                                     *comparison(a, b)]:
            r = t.rowCount()
            t.insertRow(r)
            t.setItem(r, 0, _item(what, tip=what))
            for col, text, side in ((1, ta, "a"), (2, tb, "b")):
                it = _item(text, tip=text)
                if better == side:
                    it.setForeground(QBrush(QColor(STATUS_RGB["pass"])))
                    it.setToolTip(text + " (the better of the two)")
                elif better:
                    it.setForeground(QBrush(QColor("#ffc04d")))
                t.setItem(r, col, it)

    def _accept(self) -> None:
        traj = self.selected()
        if traj is not None:
            emit(self.accept_clicked, traj)


def _check_cell(traj, name: str) -> QTableWidgetItem:
    c = next((c for c in traj.checks if c.name == name), None)
    if c is None:
        return _item("\u2014")
    return _item(c.display(1), STATUS_RGB[c.status] if c.status != "pass" else None, c.detail)


class NotesPanel(QWidget):
    """Everything to read before trusting the plan: the CT loader's notes, the analysis'
    warnings and the plan's own (``planner.notes``), each with what it concerns.
    Double-clicking a note about a vertebra, screw, target or trajectory shows it.

    Signal: ``note_chosen(about)`` ("vertebra:L3", "screw:L2-left", "trajectory:<id>", ...).
    """

    note_chosen = Signal(str)
    SOURCE_WORDS = {"CT": "CT", "analysis": "Analysis", "plan": "Plan"}

    def __init__(self, parent=None):
        super().__init__(parent)
        layout, self.summary = _panel_layout(self, "notes_panel", "No CT open")
        self.table = _table(["From", "About", "Note"], "notes_table")
        self.table.setWordWrap(True)  # a note is a sentence: it wraps in its column
        h = self.table.horizontalHeader()
        h.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.cellDoubleClicked.connect(self._chosen)
        layout.addWidget(self.table, 1)
        self.notes: list = []

    def populate(self, notes) -> None:
        self.notes = list(notes)
        t = self.table
        t.setRowCount(0)
        warn_icon = self.style().standardIcon(self.style().StandardPixmap.SP_MessageBoxWarning)
        for n in self.notes:
            r = t.rowCount()
            t.insertRow(r)
            about = (n.about or "").split(":", 1)[-1]
            src = _item(self.SOURCE_WORDS[n.source])
            if n.severity == "warn":
                src.setIcon(warn_icon)
            t.setItem(r, 0, src)
            t.setItem(r, 1, _item(about))
            t.setItem(r, 2, _item(n.text, STATUS_RGB["warn"] if n.severity == "warn" else None,
                                  n.text))
        t.resizeRowsToContents()
        n_warn = sum(n.severity == "warn" for n in self.notes)
        self.summary.setText(
            "Nothing to note." if not self.notes else
            f"{count(len(self.notes), 'note')} ({n_warn} to check); double-click one to show "
            "what it is about.")

    def _chosen(self, row: int, _col: int) -> None:
        about = self.notes[row].about if 0 <= row < len(self.notes) else None
        if about:
            emit(self.note_chosen, str(about))


class PlanPanel(QWidget):
    """The plan's trajectories and the checks of the selected one."""

    selection_changed = Signal(object)  # trajectory id or None

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("plan_panel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.buttons = QHBoxLayout()
        layout.addLayout(self.buttons)
        split = QSplitter(Qt.Orientation.Vertical)
        self.table = _table(["Trajectory", "Approach", "Status", "Depth", "Needle"], "plan_table")
        rows = self.table.verticalHeader()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # compact rows: more of them
        rows.setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self.table.itemSelectionChanged.connect(self._selected)
        self.live = QLabel("")
        self.live.setObjectName("live_label")
        self.live.setWordWrap(True)
        self.checks = checks_table("plan_checks")
        split.addWidget(self.table)
        box = QWidget()
        bl = QVBoxLayout(box)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.live)
        bl.addWidget(self.checks, 1)
        split.addWidget(box)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        layout.addWidget(split, 1)
        self.split = split
        self.ids: list[str] = []
        self.badges: dict[str, str] = {}
        self._filling = False

    def add_button(self, action) -> QPushButton:
        b = QPushButton(action.text().replace("&", ""))
        b.setToolTip(action.toolTip())
        b.clicked.connect(action.trigger)
        action.enabledChanged.connect(b.setEnabled)
        b.setEnabled(action.isEnabled())
        self.buttons.addWidget(b)
        return b

    def populate(self, trajectories, selected_id, pending: set) -> None:
        self._filling = True
        self.ids = [t.id for t in trajectories]
        self.table.setRowCount(0)
        for t in trajectories:
            r = self.table.rowCount()
            self.table.insertRow(r)
            status = "checking\u2026" if t.id in pending else t.status.upper()
            colour = "#9aa0a6" if t.id in pending else STATUS_RGB[t.status]
            cells = [_item(t.id + (" (edited)" if t.edited else "")), _item(t.approach),
                     _item(status, colour), _item(f"{t.depth_mm:.1f} mm"),
                     _item(f"{t.needle.gauge} G {t.needle.length_mm:.0f} mm")]
            for c, it in enumerate(cells):
                self.table.setItem(r, c, it)
        if selected_id in self.ids:
            select_row(self.table, self.ids.index(selected_id))
        self._filling = False
        self.set_badges(self.badges)
        self._fit()

    VISIBLE_ROWS = 5  # the plan's trajectories shown without scrolling, when there is room

    def resizeEvent(self, ev) -> None:  # noqa: N802
        super().resizeEvent(ev)
        self._fit()

    def _fit(self) -> None:
        """Room for the plan's trajectories (up to five rows) first, at most 40 % of the panel
        (the selected one's checks need the rest)."""
        t = self.table
        rows = max(1, min(len(self.ids), self.VISIBLE_ROWS))
        row_h = t.verticalHeader().defaultSectionSize()
        want = (t.horizontalHeader().sizeHint().height() + rows * row_h
                + t.horizontalScrollBar().sizeHint().height() + 6)
        split_top(self.split, want, 0.4 * self.split.height())

    def set_badges(self, notes_by_id: dict) -> None:
        """A warning badge on each trajectory a plan note concerns (the note as tooltip)."""
        icon = self.style().standardIcon(self.style().StandardPixmap.SP_MessageBoxWarning)
        self.badges = dict(notes_by_id)
        for r, tid in enumerate(self.ids):
            it = self.table.item(r, 0)
            if it is None:
                continue
            text = self.badges.get(tid)
            it.setIcon(icon if text else QIcon())
            it.setToolTip(text or "")

    def show_checks(self, traj, pending: bool) -> None:
        if traj is None:
            fill_checks(self.checks, [], "No trajectory selected")
        elif pending and not traj.checks:
            fill_checks(self.checks, [], "Checking\u2026")
        else:
            fill_checks(self.checks, traj.checks, "No checks yet")

    def _selected(self) -> None:
        if self._filling:
            return
        rows = {i.row() for i in self.table.selectedIndexes()}
        emit(self.selection_changed, self.ids[rows.pop()] if len(rows) == 1 else None)
