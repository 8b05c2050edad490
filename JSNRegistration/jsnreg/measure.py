"""Measurements of one registered joint: JSN, difference maps, confidence and flag.

Confidence in [0, 1] is the product of three scores, each 1 for a clean result:
- precision: the JSN's predicted SD (from the refinement's curvature and residual noise),
  exp(-(sd / SD_SCALE_PX)^2 / 2);
- agreement: refinement and network alone give the same JSN, exp(-(diff / AGREE_SCALE_PX)^2 / 2)
  (the two fail differently: a wrong minimum of the refinement shows up as a disagreement);
- fit: the share of each bone's pixels the robust weights kept (a bad alignment leaves many
  pixels far off), scaled so that INLIER_GOOD or more scores 1.
A joint is flagged when confidence < FLAG_BELOW, or for a hard reason: the refinement did not
converge, or a motion is implausible for a joint between two visits.

Saturation: clipped pixels carry no position. Where they leave a bone too little for the
intensity fit (see mostly_clipped) the network's estimate is reported, with the network-only
assessment (confidence 0.5), and flagged where even that has too little (MIN_USABLE).
"""

from __future__ import annotations

import numpy as np

from .refine import RefineResult
from .results import JointImages
from .transforms import BoneMotion, warp_to_fixed

SD_SCALE_PX = 0.25
AGREE_SCALE_PX = 1.0  # the network alone errs by 0.64 px at most in validation (weights card)
INLIER_GOOD = 0.85
FLAG_BELOW = 0.5
MAX_LOG_SCALE = 0.15
MAX_ROTATION_RAD = 0.35
MAX_SHIFT_FRAC = 0.3  # of the ROI's shorter side
MIN_USABLE_REFINE = 0.6  # below this unsaturated share of a bone, the network's estimate is reported
MIN_USABLE = 0.4  # below this, no estimate is trusted


def joint_images(fixed: np.ndarray, moving: np.ndarray, upper_mask: np.ndarray,
                 upper: BoneMotion, lower: BoneMotion) -> JointImages:
    """Warp the moving ROI by each bone's motion onto the fixed grid, over that bone's region."""
    upper_mask = upper_mask.astype(bool)
    return JointImages(fixed=fixed, moving=moving, upper_mask=upper_mask,
                       warped_upper=warp_to_fixed(moving, upper, where=upper_mask),
                       warped_lower=warp_to_fixed(moving, lower, where=~upper_mask))


def mse_before_after(images: JointImages) -> tuple[float, float]:
    """Mean squared intensity difference over the ROI before and after registration ([0, 1] units).

    After registration, pixels the transform maps outside the moving ROI are left out.
    """
    return float(np.mean(images.loss_before())), float(np.nanmean(images.loss_after()))


def implausible(motion: BoneMotion, shape: tuple[int, int]) -> str:
    """Why a bone motion cannot be a joint's motion between two visits ('' when plausible)."""
    if abs(np.log(motion.scale)) > MAX_LOG_SCALE:
        return f"scale {motion.scale:.3f} out of range"
    if abs(motion.dtheta_rad) > MAX_ROTATION_RAD:
        return f"rotation {np.degrees(motion.dtheta_rad):.1f} deg out of range"
    if np.hypot(motion.dx_px, motion.dy_px) > MAX_SHIFT_FRAC * min(shape):
        return "shift larger than the joint region"
    return ""


def mostly_clipped(fit: RefineResult) -> bool:
    """A bone has fewer than MIN_USABLE_REFINE of its pixels unsaturated: too few for the fit.

    On 2 x 500 generated pairs (bench seeds 7 and 2026, both splits) the refinement's JSN error
    was 0.4-0.7 px RMS below that share and 0.06-0.10 px above it; the network alone, trained on
    clipped pairs too, stayed at 0.17-0.21 px RMS below it.
    """
    return fit.usable_fraction < MIN_USABLE_REFINE


def network_assessment(upper: BoneMotion, lower: BoneMotion, shape: tuple[int, int],
                       usable_fraction: float = 1.0) -> tuple[float, bool, str]:
    """Confidence, flag and reason of the network's estimate alone: no precision estimate, so
    0.5 unless a motion is implausible or too few bone pixels are unsaturated (then 0, flagged)."""
    reasons = [f"{b}: {w}" for b, w in (("upper", implausible(upper, shape)),
                                        ("lower", implausible(lower, shape))) if w]
    if usable_fraction < MIN_USABLE:
        reasons.append(f"{1 - usable_fraction:.0%} of a bone's pixels saturated")
    return (0.0 if reasons else 0.5), bool(reasons), "; ".join(reasons)


def assess(fit: RefineResult, jsn_net_px: float, shape: tuple[int, int]) -> tuple[float, bool, str, dict]:
    """Confidence, flag, flag reason and the diagnostics behind them for a refined (upper, lower) joint."""
    upper, lower = fit.bones
    jsn_px = upper.motion.dy_px - lower.motion.dy_px
    sd_jsn = fit.sd_jsn_px if np.isfinite(fit.sd_jsn_px) else np.inf
    disagreement = abs(jsn_px - jsn_net_px)
    inliers = min(upper.inlier_fraction, lower.inlier_fraction)
    scores = {
        "precision": float(np.exp(-0.5 * (sd_jsn / SD_SCALE_PX) ** 2)),
        "agreement": float(np.exp(-0.5 * (disagreement / AGREE_SCALE_PX) ** 2)),
        "fit": float(np.clip(inliers / INLIER_GOOD, 0.0, 1.0) ** 4),
    }
    confidence = float(np.prod(list(scores.values())))
    reasons = [] if fit.converged else ["refinement did not converge"]
    for bone, b in (("upper", upper), ("lower", lower)):
        why = implausible(b.motion, shape)
        if why:
            reasons.append(f"{bone} bone: {why}")
    if confidence < FLAG_BELOW:
        weakest = min(scores, key=scores.get)
        reasons.append({
            "precision": f"imprecise (predicted SD {sd_jsn:.2f} px)",
            "agreement": f"network and refinement disagree by {disagreement:.2f} px",
            "fit": f"poor fit (only {inliers:.0%} of pixels match)",
        }[weakest])
    details = {"sd_jsn_px": float(sd_jsn), "network_refine_diff_px": float(disagreement),
               "inlier_fraction": float(inliers), "scores": scores,
               "usable_fraction": fit.usable_fraction,
               "blur_difference_px2": fit.blur_px2, "tone_curve": list(fit.tone)}
    return confidence, bool(reasons), "; ".join(reasons), details
