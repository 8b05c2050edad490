"""The checks every number and name entering the package passes, wherever it comes from (command
line, manifest, joints file, session, DICOM header): finite, in a physical range, else InputError
with the reason. Pure functions, no heavy imports."""

from __future__ import annotations

import math
import os
import unicodedata
from pathlib import Path

from .errors import InputError

# Hand radiographs are scanned at 0.05-0.3 mm; outside 0.01-5 mm a value is a typo or a unit error.
SPACING_RANGE_MM = (0.01, 5.0)
# A joint ROI is about 22 mm; smaller cuts no joint, larger cuts several.
ROI_RANGE_MM = (5.0, 60.0)
# A 43 x 43 cm detector at 0.05 mm is 74 Mpx: a bigger image is a mistake unless the user says so.
MAX_IMAGE_PIXELS = 100_000_000
# The ROI side in pixels a cut can hold in memory (the published ROI is 127 px; 22 mm at 0.01 mm
# is 2200 px, registered at a reduced working resolution).
MAX_ROI_PX = 4096
# An ROI whose intensities span less than this (of the 0-1 range) holds no structure: any motion
# fits it, so a number would be noise.
MIN_ROI_CONTRAST = 1e-3
# Names that become file names: short, no path separators, no control characters.
MAX_NAME_CHARS = 40
NAME_EXTRA_CHARS = "-_+."


def one_line(text) -> str:
    """A message on one line (library errors often span several), at most 300 characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= 300 else text[:297] + "..."


def number(value, what: str, low: float | None = None, high: float | None = None, unit: str = "") -> float:
    """`value` as a finite float within [low, high]; InputError naming `what` otherwise."""
    if isinstance(value, bool):
        raise InputError(f"{what} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} must be a number, got {one_line(repr(value))[:60]}") from None
    if not math.isfinite(x):
        raise InputError(f"{what} must be a finite number, got {x}")
    if (low is not None and x < low) or (high is not None and x > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise InputError(f"{what} must be within {lo}-{hi}{' ' + unit if unit else ''}, got {x:g}")
    return x


def spacing_mm(value, what: str = "pixel spacing") -> float:
    """A pixel spacing in mm per pixel, within SPACING_RANGE_MM."""
    return number(value, what, *SPACING_RANGE_MM, unit="mm")


def roi_mm(value, what: str = "ROI size (--roi-mm)") -> float:
    return number(value, what, *ROI_RANGE_MM, unit="mm")


def integer(value, what: str, low: int, high: int) -> int:
    """An int (JSON integer, not a bool or a float) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what} must be a whole number, got {one_line(repr(value))[:60]}")
    if not low <= value <= high:
        raise InputError(f"{what} must be within {low}-{high}, got {value if abs(value) < 10**12 else 'a huge number'}")
    return value


def image_size(rows: int, cols: int, what: str, max_pixels: int | None = MAX_IMAGE_PIXELS) -> None:
    """Refuse an image too big to hold (before its pixels are read or made)."""
    if rows < 1 or cols < 1:
        raise InputError(f"{what}: image size {rows} x {cols} px is empty")
    if max_pixels is not None and rows * cols > max_pixels:
        raise InputError(f"{what}: {cols} x {rows} px = {rows * cols / 1e6:.0f} Mpx is above the limit of "
                         f"{max_pixels / 1e6:.0f} Mpx (give --allow-large-image to read it anyway)")


def roi_size_px(size_px: int, what: str = "joint ROI") -> int:
    if not 24 <= size_px <= MAX_ROI_PX:
        raise InputError(f"{what} of {size_px} px per side is outside 24-{MAX_ROI_PX} px: "
                         "check --roi-mm and the pixel spacing")
    return size_px


def roi_pixels(roi, what: str = "joint ROI") -> None:
    """Refuse an ROI no registration can measure: non-finite or constant intensities."""
    import numpy as np

    roi = np.asarray(roi)
    if not np.all(np.isfinite(roi)):
        raise InputError(f"{what} has NaN or infinite intensities")
    contrast = float(np.ptp(roi)) if roi.size else 0.0
    if contrast < MIN_ROI_CONTRAST:
        raise InputError(f"{what} is constant (intensity range {contrast:.2g}): no bone to register")


def file_name_part(name, what: str = "joint name") -> str:
    """A name that becomes part of a file name in the output folder; InputError when it cannot.

    Letters, digits and -_+. only (no path separators, NUL or control characters), not starting
    with '.', at most MAX_NAME_CHARS: refused rather than changed, so two joints never share a file.
    """
    if not isinstance(name, str) or not name:
        raise InputError(f"{what} must be a non-empty text, got {one_line(repr(name))[:60]}")
    bad = sorted({c for c in name if not (c.isalnum() or c in NAME_EXTRA_CHARS)
                  or unicodedata.category(c).startswith("C")})
    if bad or name.startswith(".") or len(name) > MAX_NAME_CHARS:
        shown = one_line(repr(name if len(name) <= 50 else name[:47] + "..."))
        raise InputError(f"{what} {shown} cannot name output files: use at most {MAX_NAME_CHARS} letters, "
                         f"digits or {NAME_EXTRA_CHARS}, not starting with '.'")
    return name


def output_file(path, what: str = "output") -> Path:
    """Check before any work that `path` can be written: not a folder, its folder writable."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name")
    parent = path.parent
    existing = next((p for p in [parent, *parent.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise InputError(f"{what} {path}: {existing} is not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: folder {existing} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{what} {path} exists and is not writable")
    return path


def output_dir(path, what: str = "output folder (--out)") -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path} exists and is not a folder")
    existing = next((p for p in [path, *path.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise InputError(f"{what} {path}: {existing} is not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: folder {existing} is not writable")
    return path


def same_file(a, b) -> bool:
    """True when two paths name one file (an output must never replace an input)."""
    a, b = Path(a), Path(b)
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()
