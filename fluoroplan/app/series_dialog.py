"""The series chooser: shown when a folder holds more than one series."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from fluoroplan.app.panels import select_row
from fluoroplan.io.dicom import SeriesInfo


class SeriesChooser(QDialog):
    """A table of the series found (``SeriesInfo.row()``); unusable rows are disabled with
    their reason in the "Usable" column and as a tooltip. The default series is preselected."""

    def __init__(self, series: list[SeriesInfo], default: SeriesInfo | None, folder: str,
                 parent=None):
        super().__init__(parent)
        self.setObjectName("series_chooser")
        self.setWindowTitle("Choose the CT series")
        self.series = list(series)
        usable = sum(s.usable for s in self.series)
        layout = QVBoxLayout(self)
        intro = QLabel(
            f"{len(self.series)} series were found in {folder}; {usable} can be loaded as a CT "
            "volume. Choose the thin-slice axial CT of the spine."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        columns = list(self.series[0].row()) if self.series else []
        self.table = QTableWidget(len(self.series), len(columns), self)
        self.table.setHorizontalHeaderLabels(columns)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        for r, info in enumerate(self.series):
            for c, text in enumerate(info.row().values()):
                item = QTableWidgetItem(text)
                if not info.usable:
                    item.setFlags(Qt.ItemFlag.NoItemFlags)
                    item.setToolTip(f"Cannot be loaded: {info.reason}")
                else:
                    item.setToolTip(info.describe())
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        layout.addWidget(self.table, 1)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel
        )
        self.open_button = buttons.button(QDialogButtonBox.StandardButton.Open)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.table.itemSelectionChanged.connect(self._update_button)
        self.table.cellDoubleClicked.connect(lambda r, c: self.accept())
        if default is not None and default in self.series:
            select_row(self.table, self.series.index(default))
        self._update_button()
        fm = self.fontMetrics()
        self.resize(fm.averageCharWidth() * 130, fm.height() * (len(self.series) + 10))

    def selected(self) -> SeriesInfo | None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if len(rows) != 1:
            return None
        info = self.series[rows.pop()]
        return info if info.usable else None

    def _update_button(self) -> None:
        self.open_button.setEnabled(self.selected() is not None)
