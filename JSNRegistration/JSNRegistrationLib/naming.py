"""Joint names for control points: the standard name for a point the user just placed."""

from __future__ import annotations

import re

from jsnreg.joints import next_joint_name


def is_default_label(label: str, node_name: str, label_format: str = "%N-%d") -> bool:
    """True for the label Slicer gives a new point by itself (the node's format: %N = node name,
    %d = a number), or none at all."""
    if not label.strip():
        return True
    pattern = "".join(r"\d+" if part == "%d" else re.escape(node_name) if part == "%N" else re.escape(part)
                      for part in re.split(r"(%N|%d)", label_format))
    return re.fullmatch(pattern, label) is not None


def auto_joint_label(labels: list[str], index: int, node_name: str, placed_interactively: bool,
                     label_format: str = "%N-%d") -> str | None:
    """The label for point `index` whose position was just defined, or None to leave it.

    Only a point the user placed with the mouse, still carrying Slicer's own label, is renamed:
    points added from a script, and points placed again (they keep their joint name), are not.
    """
    if not placed_interactively or not 0 <= index < len(labels):
        return None
    if not is_default_label(labels[index], node_name, label_format):
        return None
    return next_joint_name(labels[:index] + labels[index + 1:])
