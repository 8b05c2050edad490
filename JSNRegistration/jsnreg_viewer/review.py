"""Review of one joint: fixed vs registered moving (checkerboard, blend, flicker) and loss maps.

All pictures come from the result's JointImages (the core's arrays on the fixed ROI grid); the
before and after loss maps share one colour scale (jsnreg.figures.loss_vmax) and one colour bar,
so a reader compares like with like.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtWidgets

from jsnreg.figures import loss_vmax
from jsnreg.results import JointImages, JointResult
from jsnreg.split import rows_from_upper_mask

MODES = ("Checkerboard", "Blend", "Flicker")
BONE_CHOICES = {"Both bones": None, "Upper bone": "upper", "Lower bone": "lower"}
FLICKER_MS = 500


def blend(images: JointImages, alpha: float) -> np.ndarray:
    """(1 - alpha) * fixed + alpha * registered moving (fixed shown where moving has no data)."""
    warped = images.warped()
    return np.where(np.isfinite(warped), (1 - alpha) * images.fixed + alpha * warped, images.fixed)


def loss_pair(images: JointImages, bone: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Before and after loss maps, of the whole ROI or of one bone's region."""
    if bone is None:
        return images.loss_before(), images.loss_after()
    return images.loss_map(bone, after=False), images.loss_map(bone, after=True)


def _roi_box(graphics: pg.GraphicsLayoutWidget, row: int, col: int, title: str):
    label = graphics.addLabel(title, row=row, col=col)
    box = graphics.addViewBox(row=row + 1, col=col, lockAspect=True, invertY=True, enableMenu=False)
    image = pg.ImageItem(axisOrder="row-major")
    box.addItem(image)
    split_line = pg.PlotCurveItem(pen=pg.mkPen("#ff5050", width=1.5, style=QtCore.Qt.DashLine))
    box.addItem(split_line)
    return label, box, image, split_line


class ReviewPanel(QtWidgets.QWidget):
    """Shows one JointResult (with images); `show_result(None)` clears it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.result: JointResult | None = None
        self._flicker_on = False
        self.heading = QtWidgets.QLabel("Select a measured joint in the table to review it.")
        self.heading.setTextFormat(QtCore.Qt.RichText)
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(MODES)
        self.tile = QtWidgets.QSpinBox()
        self.tile.setRange(2, 64)
        self.tile.setValue(16)
        self.tile.setSuffix(" px")
        self.tile.setToolTip("Checkerboard tile size")
        self.alpha = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        self.alpha.setRange(0, 100)
        self.alpha.setValue(50)
        self.alpha.setToolTip("Blend: 0 = baseline (fixed), 100 = registered follow-up")
        self.bone = QtWidgets.QComboBox()
        self.bone.addItems(list(BONE_CHOICES))
        self.bone.setToolTip("Loss maps of the whole ROI or of one bone's region")
        self.timer = QtCore.QTimer(self, interval=FLICKER_MS)
        self.timer.timeout.connect(self._flicker)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("k")
        _, self.compare_box, self.compare_image, split0 = _roi_box(self.graphics, 0, 0, "Fixed vs registered")
        self.before_title, self.before_box, self.before_image, split1 = _roi_box(self.graphics, 0, 1, "Loss before")
        self.after_title, self.after_box, self.after_image, split2 = _roi_box(self.graphics, 0, 2, "Loss after")
        self.split_lines = (split0, split1, split2)
        self.colour_bar = pg.ColorBarItem(values=(0, 1), colorMap="viridis", interactive=False,
                                          label="squared difference", width=14)
        self.colour_bar.setImageItem([self.before_image, self.after_image])
        self.graphics.addItem(self.colour_bar, row=1, col=3)
        for box in (self.before_box, self.after_box):
            box.setXLink(self.compare_box)
            box.setYLink(self.compare_box)

        controls = QtWidgets.QHBoxLayout()
        for label, widget in (("View", self.mode), ("Tile", self.tile), ("Blend", self.alpha),
                              ("Loss of", self.bone)):
            controls.addWidget(QtWidgets.QLabel(label))
            controls.addWidget(widget)
        controls.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.heading)
        layout.addLayout(controls)
        layout.addWidget(self.graphics, 1)

        self.mode.currentIndexChanged.connect(self._redraw_compare)
        self.tile.valueChanged.connect(self._redraw_compare)
        self.alpha.valueChanged.connect(self._redraw_compare)
        self.bone.currentIndexChanged.connect(self._redraw_loss)
        self._update_controls()

    def show_result(self, result: JointResult | None) -> None:
        self.result = result if result is not None and result.images is not None else None
        if self.result is None:
            self.heading.setText("Select a measured joint in the table to review it."
                                 if result is None else f"{result.name}: no images to show.")
            for item in (self.compare_image, self.before_image, self.after_image):
                item.clear()
            for line in self.split_lines:
                line.setData([], [])
            self.timer.stop()
            return
        r = self.result
        flag = f" <font color='#ff6060'>⚑ {r.flag_reason or 'flagged'}</font>" if r.flagged else ""
        self.heading.setText(
            f"<b>{r.name}</b>: JSN {r.jsn_mm:+.3f} mm · MSE before {r.mse_before:.5f} → after "
            f"{r.mse_after:.5f} · confidence {r.confidence:.2f}{flag}")
        rows = rows_from_upper_mask(r.images.upper_mask)
        x = np.arange(rows.size) + 0.5
        for line in self.split_lines:
            line.setData(x, rows)
        self._redraw_compare()
        self._redraw_loss()
        self.compare_box.autoRange(padding=0.02)

    def _update_controls(self) -> None:
        mode = self.mode.currentText()
        self.tile.setEnabled(mode == "Checkerboard")
        self.alpha.setEnabled(mode == "Blend")
        if mode == "Flicker" and self.result is not None:
            self.timer.start()
        else:
            self.timer.stop()

    def _redraw_compare(self, *_) -> None:
        self._update_controls()
        if self.result is None:
            return
        images, mode = self.result.images, self.mode.currentText()
        if mode == "Checkerboard":
            picture = images.checkerboard(self.tile.value())
        elif mode == "Blend":
            picture = blend(images, self.alpha.value() / 100)
        else:
            picture = blend(images, 1.0 if self._flicker_on else 0.0)
        self.compare_image.setImage(picture, levels=(0, 1))

    def _flicker(self) -> None:
        self._flicker_on = not self._flicker_on
        self._redraw_compare()

    def _redraw_loss(self, *_) -> None:
        if self.result is None:
            return
        images = self.result.images
        before, after = loss_pair(images, BONE_CHOICES[self.bone.currentText()])
        vmax = loss_vmax(images)
        self.before_image.setImage(before, autoLevels=False)
        self.after_image.setImage(after, autoLevels=False)
        self.colour_bar.setLevels((0.0, vmax))
        self.before_title.setText(f"Loss before · MSE {self.result.mse_before:.5f}")
        self.after_title.setText(f"Loss after · MSE {self.result.mse_after:.5f}")
