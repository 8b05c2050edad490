"""What the module shows: the per-joint table, the overlay images of a joint and their scales."""

from __future__ import annotations

import numpy as np

from jsnreg.figures import loss_vmax
from jsnreg.results import JointImages, JointResult

TEXT_COLUMNS = ("joint", "flagged", "flag_reason", "placed")
# Overlay images of the selected joint (all on the baseline ROI grid), in the panel's order.
OVERLAYS = {
    "checkerboard": "Checkerboard: baseline / registered follow-up",
    "loss_before": "Squared difference before registration",
    "loss_after": "Squared difference after registration",
    "fixed": "Baseline ROI",
    "warped": "Follow-up registered per bone",
}
LOSS_OVERLAYS = ("loss_before", "loss_after")
LOSS_COLOR_NODE_ID = "vtkMRMLColorTableNodeFileViridis.txt"  # the core's figures use viridis too
TABLE_LAYOUT_ID = 17301  # a slice view above the per-joint table, as SegmentStatistics shows its table
TABLE_LAYOUT_XML = """<layout type="vertical" split="true">
 <item splitSize="700"><view class="vtkMRMLSliceNode" singletontag="Red">
  <property name="orientation" action="default">Axial</property>
  <property name="viewlabel" action="default">R</property>
  <property name="viewcolor" action="default">#F34A33</property></view></item>
 <item splitSize="300"><view class="vtkMRMLTableViewNode" singletontag="TableView1">
  <property name="viewlabel" action="default">T</property></view></item>
</layout>"""


def table_columns(results: list[JointResult]) -> list[tuple[str, str, list]]:
    """(column name, "text" | "number", values) per column of JointResult.table_row()."""
    rows = [r.table_row() for r in results]
    if not rows:
        return []
    columns = []
    for key in rows[0]:
        values = [row[key] for row in rows]
        if key == "flagged":
            values = ["yes" if v else "" for v in values]
        columns.append((key, "text" if key in TEXT_COLUMNS else "number",
                        values if key in TEXT_COLUMNS else [float(v) for v in values]))
    return columns


def overlay_images(images: JointImages, tile_px: int = 16) -> dict[str, np.ndarray]:
    """Every overlay as a finite float image (NaN = outside the moving ROI -> 0)."""
    raw = {
        "checkerboard": images.checkerboard(tile_px),
        "loss_before": images.loss_before(),
        "loss_after": images.loss_after(),
        "fixed": images.fixed,
        "warped": images.warped(),
    }
    return {k: np.nan_to_num(np.asarray(v, dtype=np.float32), nan=0.0) for k, v in raw.items()}


def display_range(images: JointImages, overlay: str) -> tuple[float, float]:
    """Window of an overlay: [0, 1] intensities; one shared scale for the before and after loss maps."""
    return (0.0, loss_vmax(images)) if overlay in LOSS_OVERLAYS else (0.0, 1.0)


def slice_layers(overlay: str) -> dict:
    """Slice view composition: loss maps over the checkerboard (half opaque), images alone."""
    if overlay in LOSS_OVERLAYS:
        return {"background": "checkerboard", "foreground": overlay, "foreground_opacity": 0.5}
    return {"background": overlay, "foreground": None, "foreground_opacity": 0.0}


def flag_marks(results: list[JointResult]) -> dict[str, str]:
    """Flagged joints -> the text shown on their markup (the reason, or a plain warning)."""
    return {r.name: r.flag_reason or "flagged: check the alignment" for r in results if r.flagged}
