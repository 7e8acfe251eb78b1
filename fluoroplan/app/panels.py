"""The planning docks: Targets (what the analysis found), Proposals, and the Plan.

They show what the document holds and emit what the user asks for; the controller
(``app/planning/``) does the rest.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
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

STATUS_RGB = {"pass": "#7fd27f", "warn": "#ffc04d", "fail": "#ff6b6b"}
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
        self.setObjectName("targets_panel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.status = QLabel("Open a CT: the analysis runs once it is loaded.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
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
        self.status.setText(
            f"{count(len(targets), 'target')}: {count(n_loose, 'loose screw')}, "
            f"{count(sum(t.kind == 'fracture' for t in targets), 'fracture')}, "
            f"{count(sum(t.kind == 'cage' for t in targets), 'subsided cage')}. "
            "Select one, then Propose (Ctrl+P) or place a trajectory (T).")

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
    """Proposals for the current target side by side, and the checks of the selected one."""

    propose_clicked = Signal()
    accept_clicked = Signal(object)  # the proposed Trajectory

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("proposals_panel")
        self.results: list = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        top = QHBoxLayout()
        self.target_label = QLabel("No target selected")
        self.target_label.setWordWrap(True)
        top.addWidget(self.target_label, 1)
        self.propose_button = QPushButton("Propose (Ctrl+P)")
        self.propose_button.setObjectName("propose_button")
        self.propose_button.clicked.connect(lambda: emit(self.propose_clicked))
        top.addWidget(self.propose_button)
        self.accept_button = QPushButton("Accept (Ctrl+Enter)")
        self.accept_button.setObjectName("accept_button")
        self.accept_button.clicked.connect(self._accept)
        top.addWidget(self.accept_button)
        layout.addLayout(top)
        split = QSplitter(Qt.Orientation.Vertical)
        self.table = _table(["Approach", "Side", "Status", "Depth", "Needle", "Cost"],
                            "proposals_table")
        self.table.itemSelectionChanged.connect(self._show_checks)
        self.table.cellDoubleClicked.connect(lambda r, c: self._accept())
        self.checks = checks_table("proposal_checks")
        split.addWidget(self.table)
        split.addWidget(self.checks)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 2)
        layout.addWidget(split, 1)
        self.set_busy(False, False)

    def set_target(self, target) -> None:
        self.target_label.setText("No target selected: choose one in Targets"
                                  if target is None else f"<b>{target.description}</b>")

    def set_busy(self, busy: bool, can_propose: bool) -> None:
        self.propose_button.setEnabled(can_propose and not busy)
        self.accept_button.setEnabled(not busy and self.selected() is not None)

    def set_results(self, results) -> None:
        from fluoroplan.model.plan import Trajectory

        self.results = list(results)
        self.table.setRowCount(0)
        for res in self.results:
            r = self.table.rowCount()
            self.table.insertRow(r)
            if isinstance(res, Trajectory):
                cells = [_item(res.approach), _item(res.side),
                         _item(res.status.upper(), STATUS_RGB[res.status]),
                         _item(f"{res.depth_mm:.1f} mm"),
                         _item(f"{res.needle.gauge} G {res.needle.length_mm:.0f} mm"),
                         _item(f"{res.cost:.2f}", tip=", ".join(
                             f"{k} {v:.2f}" for k, v in res.cost_terms.items()))]
            else:
                cells = [_item(res.approach), _item(res.target.side or ""),
                         _item("NO SAFE PATH", STATUS_RGB["fail"], res.reason),
                         _item("\u2014"), _item("\u2014"), _item(res.failed_check, tip=res.reason)]
            for c, it in enumerate(cells):
                self.table.setItem(r, c, it)
        ok = [n for n, res in enumerate(self.results) if isinstance(res, Trajectory)]
        if ok:
            self.table.selectRow(ok[0])
        self._show_checks()

    def selected(self):
        from fluoroplan.model.plan import Trajectory

        rows = {i.row() for i in self.table.selectedIndexes()}
        if len(rows) != 1:
            return None
        res = self.results[rows.pop()]
        return res if isinstance(res, Trajectory) else None

    def _show_checks(self) -> None:
        traj = self.selected()
        rows = {i.row() for i in self.table.selectedIndexes()}
        if traj is None and rows:
            res = self.results[rows.pop()]
            fill_checks(self.checks, [], f"No safe trajectory: {res.reason}")
        else:
            fill_checks(self.checks, traj.checks if traj else [], "Select a proposal")
        self.accept_button.setEnabled(traj is not None)

    def _accept(self) -> None:
        traj = self.selected()
        if traj is not None:
            emit(self.accept_clicked, traj)


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
        self.ids: list[str] = []
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
            self.table.selectRow(self.ids.index(selected_id))
        self._filling = False

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
