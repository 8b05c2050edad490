"""Joint ROIs registered at a working resolution chosen from the pixel spacing.

At 0.1 mm/px a 22 mm ROI is 221 px: four times the pixels of the published work's 127 px at
0.175 mm, and of the 128 px ROIs the network was trained and the confidence calibrated on, for
no better JSN (the bones' edges are blurred over several pixels at that spacing; see
`jsnreg bench --hand`). So an ROI pair is cut at full resolution, averaged over factor x factor
blocks (noise averaged, not aliased) down to about WORK_SPACING_MM, registered there, and the
result taken back to full-resolution pixels: each bone's (dx, dy) of the joint centre times the
factor (the centre is the same point on both grids), scale and rotation as they are; the images
and MSEs are made again from the full-resolution ROIs with those motions and the split scaled up.
"""

from __future__ import annotations

import numpy as np

from . import split
from .measure import joint_images, mse_before_after
from .results import JointResult
from .transforms import BoneMotion

WORK_SPACING_MM = 0.175  # the published work's spacing; the bench's ROIs span 0.1-0.2 mm/px


def work_factor(spacing_mm: float) -> int:
    """Whole number of full-resolution pixels per working pixel a side (1: register as given)."""
    return max(1, int(round(WORK_SPACING_MM / float(spacing_mm))))


def roi_sizes_px(roi_mm: float, spacing_mm: float, factor: int) -> tuple[int, int]:
    """(full-resolution side, working side) of a joint ROI: the working side odd (the joint centre
    on a pixel centre there), the full side factor times it."""
    n = int(round(roi_mm / (spacing_mm * factor)))
    work = n + 1 - n % 2
    return work * factor, work


def block_mean(roi: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks; block (i, j) is centred on full pixel factor * (i, j) +
    (factor - 1) / 2, so the centres of the two grids coincide."""
    rows, cols = roi.shape
    if rows % factor or cols % factor:
        raise ValueError(f"ROI {roi.shape} is not a whole number of {factor} px blocks")
    return np.asarray(roi, np.float64).reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))


def _scaled(m: BoneMotion, factor: int) -> BoneMotion:
    return BoneMotion(m.scale, m.dtheta_rad, m.dx_px * factor, m.dy_px * factor)


def _scaled_dict(d: dict, factor: int) -> dict:
    return {**d, "dx": d["dx"] * factor, "dy": d["dy"] * factor}


def boundary_to_full(rows_work: np.ndarray, factor: int, full_cols: int) -> np.ndarray:
    """Per-column split boundary of the working ROI -> the full-resolution ROI's.

    A boundary b (rows < b are upper) lies half a pixel below a working row centre, so at
    factor * b on the full grid; across, it is interpolated at each full column's centre."""
    rows_work = np.asarray(rows_work, np.float64)
    x_work = (np.arange(full_cols) - (factor - 1) / 2.0) / factor
    return factor * np.interp(x_work, np.arange(len(rows_work)), rows_work)


def to_full_resolution(small: JointResult, fixed: np.ndarray, moving: np.ndarray, spacing_mm: float,
                       factor: int) -> JointResult:
    """A result measured on block means of (fixed, moving) by the automatic split (its
    `split_rows` in the details) in full-resolution pixels and mm."""
    upper, lower = _scaled(small.upper, factor), _scaled(small.lower, factor)
    d = dict(small.details)
    boundary = boundary_to_full(d["split_rows"], factor, fixed.shape[1])
    net = d["network"]
    d["network"] = {"upper": _scaled_dict(net["upper"], factor), "lower": _scaled_dict(net["lower"], factor),
                    "jsn_px": net["jsn_px"] * factor, **({"fb_px": net["fb_px"] * factor} if "fb_px" in net else {})}
    if "refined" in d:
        d["refined"] = {b: _scaled_dict(m, factor) for b, m in d["refined"].items()}
    if "split_rows" in d:
        d["split_rows"] = [float(r) for r in boundary]
    for key, power in (("sd_jsn_px", 1), ("network_refine_diff_px", 1), ("blur_difference_px2", 2)):
        if key in d:
            d[key] = d[key] * factor ** power
    d["working_resolution"] = {"factor": factor, "spacing_mm": spacing_mm * factor,
                               "roi_px": int(fixed.shape[0] // factor)}
    mask = split.upper_mask_from_rows(fixed.shape, boundary)
    images = joint_images(fixed, moving, mask, upper, lower)
    mse_before, mse_after = mse_before_after(images)
    return JointResult(name=small.name, spacing_mm=float(spacing_mm), upper=upper, lower=lower,
                       mse_before=mse_before, mse_after=mse_after, confidence=small.confidence,
                       flagged=small.flagged, flag_reason=small.flag_reason, details=d, images=images,
                       first_pass=small.first_pass)


def register_roi(engine, fixed: np.ndarray, moving: np.ndarray, spacing_mm: float, factor: int,
                 refine: bool = True, name: str = "", along_scale: float | None = None,
                 first_pass=None) -> JointResult:
    """engine.register_roi at 1 / factor of the resolution, the result in full-resolution pixels
    (along_scale and first_pass: as engine.register_roi's; a first pass of the same ROIs and factor)."""
    if factor == 1:
        return engine.register_roi(fixed, moving, spacing_mm, refine=refine, name=name, along_scale=along_scale,
                                   first_pass=first_pass)
    small = engine.register_roi(block_mean(fixed, factor), block_mean(moving, factor), spacing_mm * factor,
                                refine=refine, name=name, images=False, along_scale=along_scale,
                                first_pass=first_pass)
    return to_full_resolution(small, fixed, moving, spacing_mm, factor)
