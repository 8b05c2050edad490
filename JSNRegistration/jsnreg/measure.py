"""Measurements of one registered joint: JSN, difference maps, confidence and flag.

Confidence in [0, 1] is the calibrated probability that the JSN is within 0.5 px of the truth
(confidence.py, fitted on real validation pairs), from signals that hold on real radiographs:
the refinement's predicted SD, the forward-backward disagreement (the pair registered the other
way, its result inverted), the spread of the minima refined from independent starts (network,
coarse search), the disagreement of those starts and of the network with the result, the share
of pixels the robust weights kept and the share of the bones' edges left unsaturated.
A joint is flagged when confidence is below the calibrated threshold, or for a hard reason: the
refinement did not converge, a motion is implausible for a joint between two visits, two minima
of similar cost give different JSNs (ambiguous), a runner-up joint line's fit does, or the band
between it and the split moves with the other bone (ambiguous split), or too few of a bone's edges are unsaturated
for the estimate's error to be bounded. Where that band's motion makes the runner-up line the joint space, its fit
is reported instead (line_taken), unflagged only when nothing but that doubt flags the joint and the line's fit
wins on cost with no rival line (taken_trusted).
"""

from __future__ import annotations

import numpy as np

from .refine import RefineResult
from .results import JointImages
from .transforms import BoneMotion, inverse, warp_to_fixed

MAX_LOG_SCALE = 0.15
MAX_ROTATION_RAD = 0.35
MAX_SHIFT_FRAC = 0.3  # of the ROI's shorter side
# Ambiguous: refined minima this far apart in JSN (px) whose robust costs differ by less than
# AMBIGUOUS_COST (mean Tukey loss, 0..1; a right and a wrong minimum differ by far more).
AMBIGUOUS_PX = 0.5
AMBIGUOUS_COST = 0.02
# A runner-up joint line's fit (one each side of the split) of a JSN this far off marks an ambiguous
# split where its robust cost is no higher than the kept fit's. The fits cover different regions, so
# their costs compare less well than two minima's: at 0.02 (as for the minima), with every runner-up
# line fitted, centred real val ROIs had 3.3 % of good results flagged against 1.7 % with one line
# (480 pairs); at 0, 1.9 %.
SPLIT_AMBIGUOUS_COST = 0.0
# The band between the split and a runner-up line is fitted about as well (up to this ratio) or better
# by the other bone's motion than by its own (register.band_residuals), and that line's fit moves the
# JSN more than SPLIT_BAND_PX: the band (a child's epiphysis beside its physis) is likely with the wrong
# bone. Real val pairs with the ROI centre 2 mm distal (seeds 2026 and 11, 480 pairs, 76 beyond 0.5 px):
# the cost rule alone left 6 of them unflagged, this rule alone 4, both none.
BAND_OTHER_RATIO = 1.1
SPLIT_BAND_PX = 0.4
# Where the band is explained better by the other bone than by its own (below this ratio) and that
# line's fit moves the JSN by more than SPLIT_BAND_PX, the runner-up line is the joint space: its fit
# is reported, still flagged. Real val pairs, ROI centres -2..+2 mm (1200 results, automatic split):
# beyond 0.5 px 55 -> 23 (33 made right, 1 made wrong); centred, no line taken (val and train);
# train hands 2 mm distal (never used to choose): 56 -> 24, none made wrong (Testing/tools/runner_up_switch.py).
TAKE_BAND_RATIO = 1.0
SPLIT_DOUBT = "ambiguous split"  # how a split's reasons begin (assess sets them apart from the others)
# Saturation: clipped pixels carry no position. What counts is the bones' edges (gradient energy),
# not their pixels: a finger beside clipped air keeps its edges and is measured. Below this share
# of a bone's edges unsaturated the estimate has too little to stand on.
# Real val pairs, 800 results as calibrated and 800 with the strong (clipping) exposures always:
# no error beyond 0.5 px below 0.4 any more; the 35 results at 0.15-0.4 erred at most 0.22 px, within
# about their predicted SD, so the confidence judges them. Below 0.25 there were too few to trust.
MIN_EDGE_SHARE = 0.25
LOG_FLOOR_PX = 1e-3  # signals in px are taken as log10(max(value, this))
SIGNAL_TEXT = {
    "log_sd_jsn": "imprecise (predicted SD {sd_jsn_px:.2f} px)",
    "log_fb_px": "forward and backward registration disagree by {fb_px:.2f} px",
    "log_minima_px": "fits from the network's and the search's start differ by {minima_px:.2f} px",
    "log_start_px": "the network's and the search's starts differ by {start_px:.2f} px",
    "log_net_diff_px": "network and refinement disagree by {net_diff_px:.2f} px",
    "inlier_fraction": "poor fit ({inlier_fraction:.1%} of pixels match, fewer than in good fits)",
    "edge_share": "{edge_share:.0%} of a bone's edges unsaturated",
}


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


# The network alone is also read the other way (follow-up -> baseline, on the follow-up's own automatic split); a JSN
# that does not come back as minus itself within this (px) is flagged. Real val pairs (200 per cell, seed 7, given
# mask; 800 results, 17 beyond 0.5 px): 10 of the 17 caught, 2.4 % of the good ones flagged, unflagged results
# beyond 0.5 px 2.1 % -> 0.9 % (0.5 px: 12 caught, 7.5 % flagged; 1.0 px: 6, 0.5 %). The last pass's own move
# told them apart worse (0.1 px: 4 caught, 0.5 % flagged): most wrong answers are settled ones.
NETWORK_FB_PX = 0.7


def network_assessment(upper: BoneMotion, lower: BoneMotion, shape: tuple[int, int],
                       fb_px: float | None = None) -> tuple[float, bool, str]:
    """Confidence, flag and reason of the network's estimate alone (`--no-refine`): no precision
    estimate, so 0.5 unless a motion is implausible (then 0, flagged); flagged too where the backward
    reading disagrees by more than NETWORK_FB_PX (fb_px: |JSN(A->B) + JSN(B->A)|, ROI px)."""
    reasons = [f"{b}: {w}" for b, w in (("upper", implausible(upper, shape)),
                                        ("lower", implausible(lower, shape))) if w]
    confidence = 0.0 if reasons else 0.5
    if fb_px is not None and fb_px > NETWORK_FB_PX:
        reasons.append(f"network alone: forward and backward disagree by {fb_px:.2f} px")
    return confidence, bool(reasons), "; ".join(reasons)


def _jsn(upper: BoneMotion, lower: BoneMotion) -> float:
    return upper.dy_px - lower.dy_px


def split_alternative(start_info: dict) -> dict:
    """Of the fits on the runner-up joint lines (register.alternative_split, one per side of the
    split), the one that puts the split most in doubt: the largest JSN change among those of cost
    less than SPLIT_AMBIGUOUS_COST above the kept fit's (a line read on the middle level alone has no cost
    gap: register.ALT_SCREEN_PX), else the largest ({} without any)."""
    alts = [a for a in start_info.get("split_alternatives", ()) if a["jsn_diff_px"] is not None]
    close = [a for a in alts if a["cost_gap"] is not None and a["cost_gap"] < SPLIT_AMBIGUOUS_COST]
    return max(close or alts, key=lambda a: a["jsn_diff_px"], default={})


def band_moved_px(start_info: dict) -> float:
    """The largest JSN change (px of the working grid) of a runner-up line whose band is explained
    about as well or better by the other bone (register.band_residuals; 0 without any)."""
    alts = [a for a in start_info.get("split_alternatives", ()) if a["jsn_diff_px"] is not None]
    return max((a["jsn_diff_px"] for a in alts
                if a.get("band_other", np.nan) < BAND_OTHER_RATIO * a.get("band_own", np.nan)), default=0.0)


def line_taken(alternatives: list[dict], px_per_work_px: int = 1) -> int | None:
    """The runner-up line (index into `alternatives`, register.runner_up_check's) to report instead of
    the split: of those whose fit moves the JSN by more than SPLIT_BAND_PX, the one whose band the
    other bone explains best, if below TAKE_BAND_RATIO of its own; None otherwise."""
    ratios = [(a["band_other"] / a["band_own"], k) for k, a in enumerate(alternatives)
              if a["jsn_diff_px"] is not None and a["jsn_diff_px"] * px_per_work_px > SPLIT_BAND_PX
              and a["band_own"] > 0 and np.isfinite(a["band_other"])]
    best = min(ratios, default=None)
    return best[1] if best is not None and best[0] < TAKE_BAND_RATIO else None


def taken_trusted(alternatives: list[dict], taken: int, px_per_work_px: int = 1) -> bool:
    """Whether the runner-up line `taken` (line_taken's) may be reported unflagged when nothing but the
    split's doubt flags the joint (assess): its fit explains the follow-up better than the split's (cost gap
    < 0), and no other runner-up line is a candidate too (a JSN change > SPLIT_BAND_PX with its band fitted
    about as well by the other bone, BAND_OTHER_RATIO). Real val and train pairs, ROI centres -2..+2 mm (82
    lines taken, 3 of them wrong): 56 of the 79 right ones trusted, none of the 3 wrong (each failed one
    condition: the confidence 0.52, a cost gap of +0.19, a second candidate line)."""
    line = alternatives[taken]
    rivals = [a for k, a in enumerate(alternatives) if k != taken and a["jsn_diff_px"] is not None
              and a["jsn_diff_px"] * px_per_work_px > SPLIT_BAND_PX
              and a["band_other"] < BAND_OTHER_RATIO * a["band_own"]]
    return line["cost_gap"] is not None and line["cost_gap"] < 0 and not rivals


def signals(fit: RefineResult, back: RefineResult, start_info: dict, jsn_net_px: float,
            shape: tuple[int, int], px_per_work_px: int = 1) -> dict:
    """The raw diagnostics (px of the ROI, shares) and the confidence model's features of one
    refined joint (fitted on a working grid of `px_per_work_px` ROI pixels per pixel)."""
    jsn = _jsn(*(b.motion for b in fit.bones))
    jsn_back = _jsn(*(b.motion for b in back.bones))
    jsn_back_inverted = _jsn(*(inverse(b.motion, shape) for b in back.bones))
    starts = start_info["starts"]
    raw = {
        "sd_jsn_px": float(fit.sd_jsn_px) if np.isfinite(fit.sd_jsn_px) else np.inf,
        "fb_px": abs(jsn_back_inverted - jsn),
        "fb_sum_px": jsn + jsn_back,  # JSN(A->B) + JSN(B->A), ~0 but for rotation and scale
        "minima_px": start_info["minima_px"] or 0.0,
        "start_px": abs(starts["search"]["jsn_px"] - starts["network"]["jsn_px"]),
        "net_diff_px": abs(jsn - jsn_net_px),
        "inlier_fraction": min(b.inlier_fraction for b in fit.bones),
        "edge_share": fit.edge_share,
        # the JSN with the split on the runner-up joint line, less the kept one (0: no such line)
        "split_alternative_px": split_alternative(start_info).get("jsn_diff_px") or 0.0,
        # the same of a runner-up line whose band between it and the split moves with the other bone
        "split_band_px": band_moved_px(start_info),
    }
    for key in ("sd_jsn_px", "fb_px", "fb_sum_px", "minima_px", "start_px", "net_diff_px", "split_alternative_px",
                "split_band_px"):
        raw[key] *= px_per_work_px
    log = lambda v: float(np.log10(max(min(v, 1e3), LOG_FLOOR_PX)))  # noqa: E731
    features = {"log_sd_jsn": log(raw["sd_jsn_px"]), "log_fb_px": log(raw["fb_px"]),
                "log_minima_px": log(raw["minima_px"]), "log_start_px": log(raw["start_px"]),
                "log_net_diff_px": log(raw["net_diff_px"]),
                "inlier_fraction": raw["inlier_fraction"], "edge_share": raw["edge_share"]}
    return {"raw": raw, "features": features, "backward_jsn_px": jsn_back * px_per_work_px,
            "backward_converged": back.converged}


def hard_reasons(fit: RefineResult, start_info: dict, raw: dict, shape: tuple[int, int]) -> list[str]:
    """Reasons to flag whatever the confidence says."""
    reasons = [] if fit.converged else ["refinement did not converge"]
    for bone, b in zip(("upper", "lower"), fit.bones):
        why = implausible(b.motion, shape)
        if why:
            reasons.append(f"{bone} bone: {why}")
    if raw["minima_px"] > AMBIGUOUS_PX and start_info["cost_gap"] < AMBIGUOUS_COST:
        reasons.append(f"ambiguous: two fits of similar cost differ by {raw['minima_px']:.2f} px in JSN")
    alt_px = raw.get("split_alternative_px", 0.0)  # 0 with a given mask or no runner-up line
    if alt_px > AMBIGUOUS_PX and split_alternative(start_info)["cost_gap"] < SPLIT_AMBIGUOUS_COST:
        reasons.append(f"{SPLIT_DOUBT}: the runner-up joint line gives a JSN {alt_px:.2f} px different")
    elif raw.get("split_band_px", 0.0) > SPLIT_BAND_PX:
        reasons.append(f"{SPLIT_DOUBT}: the band beside a runner-up joint line moves with the other bone "
                       f"(that line gives a JSN {raw['split_band_px']:.2f} px different)")
    if raw["edge_share"] < MIN_EDGE_SHARE:
        reasons.append(f"only {raw['edge_share']:.0%} of a bone's edges unsaturated")
    if not np.isfinite(raw["sd_jsn_px"]):
        reasons.append("no precision estimate (too few pixels fitted)")
    return reasons


# A JSN that moves by more than this (working px) with the magnification free across the finger
# (register.roll_check) is flagged: the bones' widths changed between the visits. On the real val pairs
# (240, realistic and hard, both shapes, automatic split): as drawn, |move| median 0.03-0.06 px, 95th
# percentile 0.08-0.22, no result newly flagged at 0.35 (5 at 0.25); with the finger rolled (bone widths
# x 1 +- 3 %, Testing/tools/roll_study.py) 54 results beyond 0.5 px, none flagged before, 51 flagged by it.
ROLL_CHECK_PX = 0.35


def assess(fit: RefineResult, back: RefineResult, start_info: dict, jsn_net_px: float,
           shape: tuple[int, int], calibration=None, px_per_work_px: int = 1,
           taken: int | None = None, roll_px: float | None = None) -> tuple[float, bool, str, dict]:
    """Confidence, flag, flag reason and the diagnostics behind them for a refined (upper, lower) joint.
    taken: the runner-up line (line_taken's) reported instead of the split, if any: flagged as an
    ambiguous split unless it is trusted (taken_trusted) and nothing else flags the joint. roll_px: how
    far the JSN moves (working px) with the magnification free across the finger (register.roll_check):
    beyond ROLL_CHECK_PX flagged, the bones' widths having changed."""
    from . import confidence as conf_model

    cal = calibration or conf_model.load()
    sig = signals(fit, back, start_info, jsn_net_px, shape, px_per_work_px)
    raw, features = sig["raw"], sig["features"]
    confidence = cal.confidence(features)
    reasons = hard_reasons(fit, start_info, raw, shape)
    if cal.flagged(features):
        reasons.append(f"confidence {confidence:.3f}, below the flag's {cal.flag_confidence:.3f}: "
                       + SIGNAL_TEXT[cal.weakest_signal(features)].format(**raw))
    if roll_px is not None and abs(roll_px) > ROLL_CHECK_PX:
        reasons.append(f"bone widths changed between the visits (a finger rolled?): the JSN moves by "
                       f"{roll_px * px_per_work_px:+.2f} px with the magnification across the finger let free")
    if taken is not None:
        alternatives = start_info["split_alternatives"]
        others = [r for r in reasons if not r.startswith(SPLIT_DOUBT)]
        if not others and taken_trusted(alternatives, taken, px_per_work_px):
            reasons = []
        else:
            reasons.append("reported on that runner-up joint line")
    details = {**{k: float(v) for k, v in raw.items()}, "network_refine_diff_px": raw["net_diff_px"],
               "usable_fraction": fit.usable_fraction, "blur_difference_px2": fit.blur_px2,
               "tone_curve": list(fit.tone), "detail_gain": fit.detail_gain, "features": features,
               "backward_jsn_px": sig["backward_jsn_px"], "backward_converged": sig["backward_converged"],
               "start_search": start_info, **({} if roll_px is None else {"roll_check_px": roll_px * px_per_work_px})}
    return confidence, bool(reasons), "; ".join(reasons), details
