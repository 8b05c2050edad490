"""One radiograph on screen: rows down, window/level, zoom and pan, draggable joint markers.

Mouse: left click on the image = the `clicked` signal (x, y px); left drag = pan; wheel = zoom;
right drag = window (horizontal) and level (vertical); right click on a marker = its menu.
Arrays are shown as (row, column) with rows down (row-major ImageItem, inverted y), as in jsnreg.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtWidgets

# Window/level presets on intensities in [0, 1]: name -> (low, high); None = from the pixels.
PRESETS = {"Auto (1–99 %)": None, "Full range": (0.0, 1.0), "Bone": (0.35, 1.0), "Soft tissue": (0.0, 0.6)}


def auto_levels(pixels: np.ndarray) -> tuple[float, float]:
    """Window from the 1st to the 99th percentile: robust to a few saturated or dead pixels."""
    lo, hi = np.nanpercentile(pixels[::4, ::4], [1, 99])
    return float(lo), float(max(hi, lo + 1e-3))


class RadiographViewBox(pg.ViewBox):
    """A ViewBox that reports plain clicks and turns right-drags into window/level changes."""

    clicked = QtCore.pyqtSignal(float, float)
    windowLevelDragged = QtCore.pyqtSignal(float, float)  # d_window, d_level (fractions of the view)

    def __init__(self):
        super().__init__(lockAspect=True, invertY=True, enableMenu=True)

    def mouseClickEvent(self, ev):
        if ev.button() == QtCore.Qt.LeftButton:
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            self.clicked.emit(p.x(), p.y())
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() == QtCore.Qt.RightButton:
            ev.accept()
            delta = ev.pos() - ev.lastPos()
            size = self.size()
            self.windowLevelDragged.emit(delta.x() / max(size.width(), 1), -delta.y() / max(size.height(), 1))
        else:
            super().mouseDragEvent(ev, axis)


class JointMarker(pg.TargetItem):
    """A named, draggable joint marker; right click asks for its menu, left click selects it."""

    menuRequested = QtCore.pyqtSignal(str, object)  # name, QPoint (screen)
    selected = QtCore.pyqtSignal(str)

    def __init__(self, name: str, xy, colour: str):
        super().__init__(pos=xy, size=14, symbol="crosshair", pen=pg.mkPen(colour, width=2),
                         hoverPen=pg.mkPen("w", width=3), movable=True)
        self.name = name
        self.setLabel(name, {"color": colour, "offset": (10, -12),
                             "fill": pg.mkBrush(0, 0, 0, 150)})

    def mouseClickEvent(self, ev):
        if ev.button() == QtCore.Qt.RightButton and not self.moving:
            ev.accept()
            self.menuRequested.emit(self.name, ev.screenPos().toPoint())
        elif ev.button() == QtCore.Qt.LeftButton:
            ev.accept()
            self.selected.emit(self.name)
        else:
            super().mouseClickEvent(ev)

    def set_highlight(self, on: bool, colour: str) -> None:
        self.setPen(pg.mkPen("#ffff00" if on else colour, width=3 if on else 2))


class RadiographView(QtWidgets.QWidget):
    """Title line (file, spacing, DICOM fields), the image, and a window/level preset box."""

    clicked = QtCore.pyqtSignal(float, float)  # x, y px on the image
    markerMoved = QtCore.pyqtSignal(str, float, float)  # name, x, y after a drag
    markerMenu = QtCore.pyqtSignal(str, object)
    markerSelected = QtCore.pyqtSignal(str)

    def __init__(self, title: str, colour: str, parent=None):
        super().__init__(parent)
        self.title, self.colour = title, colour
        self.markers: dict[str, JointMarker] = {}
        self.pixels: np.ndarray | None = None
        self.info = QtWidgets.QLabel(f"<b>{title}</b>: no image (File ▸ Open, or drop a file here)")
        self.info.setTextFormat(QtCore.Qt.RichText)
        self.info.setWordWrap(True)
        self.preset = QtWidgets.QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.setToolTip("Window/level preset (or drag with the right mouse button)")
        self.preset.activated.connect(self._apply_preset)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("k")
        self.viewbox = RadiographViewBox()
        self.graphics.addItem(self.viewbox)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.viewbox.addItem(self.image_item)
        self.viewbox.clicked.connect(self._on_click)
        self.viewbox.windowLevelDragged.connect(self._drag_window_level)

        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.info, 1)
        top.addWidget(QtWidgets.QLabel("W/L"))
        top.addWidget(self.preset)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.graphics, 1)

    # -- image ----------------------------------------------------------------------------
    def set_image(self, pixels: np.ndarray, info_html: str) -> None:
        self.pixels = pixels
        self.image_item.setImage(pixels, autoLevels=False)
        self._apply_preset()
        self.info.setText(f"<b>{self.title}</b>: {info_html}")
        self.viewbox.autoRange(padding=0.02)

    def levels(self) -> tuple[float, float]:
        return tuple(float(v) for v in self.image_item.getLevels())

    def set_levels(self, lo: float, hi: float) -> None:
        self.image_item.setLevels((lo, max(hi, lo + 1e-3)))

    def _apply_preset(self, *_):
        if self.pixels is None:
            return
        levels = PRESETS[self.preset.currentText()]
        self.set_levels(*(levels or auto_levels(self.pixels)))

    def _drag_window_level(self, d_window: float, d_level: float) -> None:
        if self.pixels is None:
            return
        lo, hi = self.levels()
        window, level = hi - lo, (hi + lo) / 2
        window = max(window * (1 + 2 * d_window), 1e-3)
        level += d_level * window
        self.set_levels(level - window / 2, level + window / 2)

    def _on_click(self, x: float, y: float) -> None:
        if self.pixels is not None:
            rows, cols = self.pixels.shape
            if 0 <= x < cols and 0 <= y < rows:
                self.clicked.emit(x, y)

    # -- markers --------------------------------------------------------------------------
    def set_markers(self, positions: dict[str, tuple[float, float]], selected: str | None = None) -> None:
        """Show exactly these markers (name -> (x, y) px); unchanged ones are left alone."""
        for name in list(self.markers):
            if name not in positions:
                self.viewbox.removeItem(self.markers.pop(name))
        for name, xy in positions.items():
            marker = self.markers.get(name)
            if marker is None:
                marker = self.markers[name] = JointMarker(name, xy, self.colour)
                marker.sigPositionChangeFinished.connect(self._marker_dropped)
                marker.menuRequested.connect(self.markerMenu)
                marker.selected.connect(self.markerSelected)
                self.viewbox.addItem(marker)
            elif tuple(marker.pos()) != tuple(xy):
                marker.setPos(xy)
            marker.set_highlight(name == selected, self.colour)

    def _marker_dropped(self, item) -> None:
        # TargetLabel drags report the label itself: find its marker
        marker = item if isinstance(item, JointMarker) else item.parentItem()
        x, y = marker.pos()
        self.markerMoved.emit(marker.name, float(x), float(y))

    def centre_on(self, xy: tuple[float, float], half_width_px: float) -> None:
        x, y = xy
        self.viewbox.setRange(xRange=(x - half_width_px, x + half_width_px),
                              yRange=(y - half_width_px, y + half_width_px), padding=0)

    def link_to(self, other: "RadiographView | None") -> None:
        """Zoom and pan together with `other` (None: independent)."""
        self.viewbox.setXLink(other.viewbox if other else None)
        self.viewbox.setYLink(other.viewbox if other else None)


def dicom_info_html(path: str, spacing_mm: float | None, meta: dict) -> str:
    """File name, spacing and the DICOM fields a reader checks before comparing two visits."""
    parts = [_esc(Path(path).name) if path else "(in memory)"]
    parts.append(f"spacing {spacing_mm:.4f} mm" if spacing_mm else "<font color='#f66'>no spacing</font>")
    for key, label in (("patient_id", "patient"), ("study_date", "study"), ("laterality", "side")):
        if meta.get(key):
            parts.append(f"{label} {_esc(meta[key])}")
    return " · ".join(parts)


def _esc(text) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
