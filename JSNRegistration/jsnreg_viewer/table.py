"""The per-joint table: one row per placed joint, sortable, flagged rows in red, copyable."""

from __future__ import annotations

from PyQt5 import QtCore, QtGui, QtWidgets

from .model import COLUMNS, clipboard_text, format_value

FLAG_BRUSH = QtGui.QBrush(QtGui.QColor(255, 90, 90, 90))


class NumericItem(QtWidgets.QTableWidgetItem):
    """A cell that sorts by its number (blank cells last), shows formatted text."""

    def __init__(self, key: str, value):
        super().__init__(format_value(key, value))
        self.sort_key = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def __lt__(self, other):
        if isinstance(other, NumericItem) and (self.sort_key is not None or other.sort_key is not None):
            if self.sort_key is None or other.sort_key is None:
                return other.sort_key is None  # numbers before blanks
            return self.sort_key < other.sort_key
        return super().__lt__(other)


class ResultsTable(QtWidgets.QTableWidget):
    """Shows Workspace.table_rows(); `jointSelected(name)` when the user picks a row."""

    jointSelected = QtCore.pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.rows: list[dict] = []
        self.setHorizontalHeaderLabels([header for _, header in COLUMNS])
        self.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.setSortingEnabled(True)
        self.horizontalHeader().setSortIndicator(-1, QtCore.Qt.AscendingOrder)  # placement order first
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setStretchLastSection(True)
        self.itemSelectionChanged.connect(self._selection_changed)

    def set_rows(self, rows: list[dict], selected: str | None = None) -> None:
        """Refill the table, keeping the sort order and the selected joint."""
        self.rows = rows
        self.blockSignals(True)
        self.setSortingEnabled(False)
        self.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, (key, _) in enumerate(COLUMNS):
                item = NumericItem(key, row.get(key))
                if row.get("flagged"):
                    item.setBackground(FLAG_BRUSH)
                    item.setToolTip(row.get("flag_reason") or "flagged")
                self.setItem(r, c, item)
        self.setSortingEnabled(True)
        self.resizeColumnsToContents()
        self.blockSignals(False)
        self.select_joint(selected)

    def select_joint(self, name: str | None) -> None:
        self.blockSignals(True)
        self.clearSelection()
        for r in range(self.rowCount()):
            if name is not None and self.item(r, 0).text() == name:
                self.selectRow(r)
        self.blockSignals(False)

    def selected_names(self) -> list[str]:
        return [self.item(index.row(), 0).text() for index in self.selectionModel().selectedRows()]

    def _selection_changed(self) -> None:
        names = self.selected_names()
        if names:
            self.jointSelected.emit(names[0])

    def copy_to_clipboard(self, results: list) -> str:
        """Copy these results' rows (only the selected ones when any are) as tab-separated text."""
        chosen = set(self.selected_names())
        text = clipboard_text([r for r in results if not chosen or r.name in chosen])
        QtWidgets.QApplication.clipboard().setText(text)
        return text
