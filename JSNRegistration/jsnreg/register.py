"""Registration of one joint ROI pair: split -> network -> per-bone refinement -> measurements."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import measure, split
from .errors import InputError
from .validate import roi_pixels, roi_size_px
from .network import Network, default_network
from .refine import refine_bones
from .results import JointResult

# Pixels this close to the split (px) are left out of both bones' fits: a gap pixel near the
# boundary can show either bone once the joint space changes.
SPLIT_MARGIN_PX = 2.0
# Pixel weights fall off with the distance from the joint space (Gaussian, SD = this fraction of
# the ROI height): JSN is a property of the articular surfaces, and far along a shaft a projected
# bone changes with the finger's out-of-plane turn (seen on clinical pairs), which a 2-D rigid
# motion cannot model.
JOINT_WEIGHT_SD_FRAC = 0.2
MIN_REGION_FRAC = 0.1  # each bone must cover at least this share of the ROI


def bone_regions(upper_mask: np.ndarray, boundary_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower fitting weights in [0, 1]: zero on the other bone and near the middle of the
    joint space, `boundary_rows` (float rows per column; None: the mask's own boundary)."""
    if boundary_rows is None:
        boundary_rows = split.rows_from_upper_mask(upper_mask)
    rows = np.arange(upper_mask.shape[0])[:, None] + 0.5
    dist = rows - np.asarray(boundary_rows)[None, :]
    near_joint = np.exp(-0.5 * (dist / (JOINT_WEIGHT_SD_FRAC * upper_mask.shape[0])) ** 2)
    return (near_joint * (upper_mask & (dist < -SPLIT_MARGIN_PX)),
            near_joint * (~upper_mask & (dist > SPLIT_MARGIN_PX)))


def check_pair(fixed: np.ndarray, moving: np.ndarray, upper_mask: np.ndarray | None) -> None:
    """Refuse inputs no registration can use, with the reason."""
    if fixed.ndim != 2 or moving.ndim != 2:
        raise InputError("joint ROIs must be single-channel 2-D images")
    if fixed.shape != moving.shape:
        raise InputError(f"fixed ROI {fixed.shape} and moving ROI {moving.shape} differ in size")
    if min(fixed.shape) < 24:
        raise InputError(f"joint ROI {fixed.shape} is too small (at least 24 x 24 px)")
    roi_size_px(max(fixed.shape))
    roi_pixels(fixed, "fixed (baseline) ROI")
    roi_pixels(moving, "moving (follow-up) ROI")
    if upper_mask is not None:
        if upper_mask.shape != fixed.shape:
            raise InputError(f"mask {upper_mask.shape} and ROI {fixed.shape} differ in size")
        frac = upper_mask.mean()
        if not MIN_REGION_FRAC <= frac <= 1 - MIN_REGION_FRAC:
            raise InputError(f"mask marks {frac:.0%} of the ROI as upper bone: it must split the ROI "
                             "into an upper and a lower bone region")


class Engine:
    """The registration engine with its network loaded once."""

    def __init__(self, network: Network):
        self.network = network

    @classmethod
    def load(cls, weights_path: Path | None = None) -> "Engine":
        return cls(default_network(str(weights_path) if weights_path else None))

    def register_roi(self, fixed: np.ndarray, moving: np.ndarray, spacing_mm: float,
                     upper_mask: np.ndarray | None = None, refine: bool = True, name: str = ""
                     ) -> JointResult:
        """Measure one joint from its fixed (baseline) and moving (follow-up) ROIs in [0, 1].

        A given upper_mask (True = upper bone) always wins over the automatic split.
        """
        fixed = np.asarray(fixed, dtype=np.float64)
        moving = np.asarray(moving, dtype=np.float64)
        check_pair(fixed, moving, upper_mask)
        if upper_mask is None:
            boundary = split.split_rows(fixed)
            upper_mask = split.upper_mask_from_rows(fixed.shape, boundary)
            mask_source = "automatic"
        else:
            upper_mask = np.asarray(upper_mask, dtype=bool)
            # The user's mask decides each pixel's bone. Its boundary may hug one bone's surface,
            # so the band left out of both fits is centred on the middle of the gap beside it
            # (on the clinical pair: JSN 0.058 -> 0.017 mm, next to 0.008 mm with our own split).
            boundary = split.mid_gap_rows(fixed, split.rows_from_upper_mask(upper_mask)) + 0.5
            mask_source = "user"
        net_upper, net_lower = self.network.predict(fixed, moving, upper_mask)
        jsn_net = net_upper.dy_px - net_lower.dy_px
        details = {"mask": mask_source, "network": {"upper": net_upper.to_dict(), "lower": net_lower.to_dict(),
                                                    "jsn_px": jsn_net}}
        if mask_source == "automatic":
            details["split_rows"] = [float(r) for r in boundary]
        if refine:
            regions = bone_regions(upper_mask, boundary)
            fit = refine_bones(fixed, moving, list(regions), [net_upper, net_lower])
            if measure.mostly_clipped(fit):
                upper, lower = net_upper, net_lower
                confidence, flagged, reason = measure.network_assessment(upper, lower, fixed.shape,
                                                                         fit.usable_fraction)
                details.update(reported="network", usable_fraction=fit.usable_fraction,
                               refined={b: f.motion.to_dict() for b, f in zip(("upper", "lower"), fit.bones)})
            else:
                upper, lower = (b.motion for b in fit.bones)
                confidence, flagged, reason, extra = measure.assess(fit, jsn_net, fixed.shape)
                details.update(extra)
        else:
            upper, lower = net_upper, net_lower
            confidence, flagged, reason = measure.network_assessment(upper, lower, fixed.shape)
        images = measure.joint_images(fixed, moving, upper_mask, upper, lower)
        mse_before, mse_after = measure.mse_before_after(images)
        return JointResult(name=name, spacing_mm=float(spacing_mm), upper=upper, lower=lower,
                           mse_before=mse_before, mse_after=mse_after, confidence=confidence,
                           flagged=flagged, flag_reason=reason, details=details, images=images)
