"""Joints found by the core's detector (jsnreg.detect) as named points for the markups list."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .conversions import core_to_volume_xy_matrix, ijk_to_ras


def detected_points(pixels: np.ndarray, spacing_mm: float, zoom_xy, ijk_to_ras_matrix: np.ndarray,
                    detect: Callable | None = None) -> list[dict]:
    """Detect the joints on the baseline as the core reads it and place them on the volume.

    pixels, spacing_mm: the baseline on the core's grid (jsnreg.images.read_radiograph, bone bright,
    isotropic); zoom_xy: the volume's grid -> the core's (conversions.core_zoom_xy);
    ijk_to_ras_matrix: the volume's. Returns, per joint in the detector's order,
    {"name", "ijk": (i, j, 0), "ras": (r, a, s), "confidence"}.
    """
    if detect is None:
        from jsnreg.detect import detect_joints as detect
    joints = detect(pixels, spacing_mm)
    if not joints:
        return []
    core_xy1 = np.array([[j.x, j.y, 1.0] for j in joints])
    volume_xy = core_xy1 @ core_to_volume_xy_matrix(zoom_xy).T
    ijk = np.column_stack([volume_xy[:, :2], np.zeros(len(joints))])
    ras = ijk_to_ras(ijk, ijk_to_ras_matrix)
    return [{"name": j.name, "ijk": tuple(map(float, ijk[k])), "ras": tuple(map(float, ras[k])),
             "confidence": float(j.confidence)} for k, j in enumerate(joints)]


MOVED_TOLERANCE_MM = 0.05  # closer than this to where it was detected = not moved (rounding of positions)


def detected_record(points: list[dict]) -> dict:
    """What the markups list keeps of a detection: {name: {"ras", "confidence"}} (JSON-able)."""
    return {p["name"]: {"ras": list(p["ras"]), "confidence": p["confidence"]} for p in points}


def joint_sources(names: list[str], points_ras, detected: dict) -> list[tuple[str, bool, float | None]]:
    """(source, moved, detection confidence) per point for the request: "detected" for a point that
    still has the name it was detected with, moved when it is no longer where the detector put it;
    else ("manual", False, None). detected: detected_record's form (or {name: ras}, without confidences)."""
    points_ras = np.atleast_2d(np.asarray(points_ras, dtype=float)) if len(names) else np.zeros((0, 3))
    sources = []
    for name, ras in zip(names, points_ras):
        entry = detected.get(name.strip())
        if entry is None:
            sources.append(("manual", False, None))
            continue
        at, confidence = (entry["ras"], entry["confidence"]) if isinstance(entry, dict) else (entry, None)
        shift_mm = float(np.linalg.norm(ras - np.asarray(at, dtype=float)))
        sources.append(("detected", shift_mm > MOVED_TOLERANCE_MM, confidence))
    return sources
