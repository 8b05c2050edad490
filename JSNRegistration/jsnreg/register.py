"""Registration of one joint ROI pair: split -> two independent starts (network, coarse search) ->
per-bone refinement from each distinct start, the lowest robust cost kept -> a backward fit for
consistency -> measurements, confidence and flag."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import measure, split
from .errors import InputError
from .validate import roi_pixels, roi_size_px
from .network import Network, default_network
from .refine import LEVELS_STRIDE, FitImage, RefineResult, refine_bones
from .results import JointResult
from .starts import search_bones
from .transforms import BoneMotion, from_matrix, inverse, matrix, roi_centre, warp_to_moving

# Pixels this close to the split (px) are left out of both bones' fits: a gap pixel near the
# boundary can show either bone once the joint space changes.
SPLIT_MARGIN_PX = 2.0
# Pixel weights fall off with the distance from the joint space (Gaussian, SD = this fraction of
# the ROI height): JSN is a property of the articular surfaces, and far along a shaft a projected
# bone changes with the finger's out-of-plane turn (seen on clinical pairs), which a 2-D rigid
# motion cannot model.
JOINT_WEIGHT_SD_FRAC = 0.2
MIN_REGION_FRAC = 0.1  # each bone must cover at least this share of the ROI
# A start this close to a minimum already refined (each bone's shift, px, and rotation, deg) lies
# in its basin: refined, it lands there again. On 240 real val pairs (realistic, hard and generated,
# both ROI shapes) every search start within 2 px and 3 deg of the network start's minimum refined
# to the same JSN within 0.01 px; one 3.5 deg away did not (1.3 px).
SAME_BASIN_PX = 2.0
SAME_BASIN_DEG = 3.0
BACKWARD_MAX_ITER = 10  # the backward fit starts at the inverse of the forward one
BACKWARD_LEVEL = 1  # smoothed by 1 px, every 2nd pixel
WORK_SIDE_PX = 128


def in_basin(start: list[BoneMotion], fit: RefineResult) -> bool:
    return all(abs(p.dx_px - q.dx_px) <= SAME_BASIN_PX and abs(p.dy_px - q.dy_px) <= SAME_BASIN_PX
               and abs(np.degrees(p.dtheta_rad - q.dtheta_rad)) <= SAME_BASIN_DEG
               for p, q in zip(start, (b.motion for b in fit.bones)))


def fit_jsn_px(fit: RefineResult) -> float:
    return fit.bones[0].motion.dy_px - fit.bones[1].motion.dy_px


def best_of_starts(fixed: FitImage, moving: FitImage, regions: list[np.ndarray],
                   starts: dict[str, list[BoneMotion]], soft_slope: np.ndarray | None = None
                   ) -> tuple[RefineResult, dict]:
    """Refine from each distinct start; keep the lowest robust cost (at a common noise scale).

    Returns the kept fit and what the starts gave: per start its JSN, cost and whether it was
    refined on its own, and `minima_px`, the JSN spread of the distinct refined minima with
    `cost_gap`, the cost of the runner-up less the winner's (both None with one basin)."""
    names = list(starts)
    fits = {names[0]: refine_bones(fixed, moving, regions, starts[names[0]], soft_slope=soft_slope)}
    for name in names[1:]:
        if not any(in_basin(starts[name], fit) for fit in fits.values()):
            fits[name] = refine_bones(fixed, moving, regions, starts[name], soft_slope=soft_slope)
    sigma = min(f.residual_sd for f in fits.values())
    costs = {name: f.robust_cost(sigma) for name, f in fits.items()}
    order = sorted(fits, key=costs.get)
    info = {"starts": {name: {"jsn_px": starts[name][0].dy_px - starts[name][1].dy_px,
                              "refined": name in fits,
                              **({"refined_jsn_px": fit_jsn_px(fits[name]), "cost": costs[name]}
                                 if name in fits else {})} for name in names},
            "kept_start": order[0], "minima_px": None, "cost_gap": None}
    if len(order) > 1:
        info["minima_px"] = float(max(abs(fit_jsn_px(fits[n]) - fit_jsn_px(fits[order[0]])) for n in order[1:]))
        info["cost_gap"] = float(costs[order[1]] - costs[order[0]])
    return fits[order[0]], info


def backward_fit(fixed: FitImage, moving: FitImage, regions: list[np.ndarray], fit: RefineResult) -> RefineResult:
    """Register the pair the other way (moving -> fixed) from the inverse of the forward fit, on
    the bones' regions carried into the moving image, on the middle level only (the start is
    already close, and a consistency check needs hundredths of a pixel, not thousandths): a cheap,
    largely independent second reading of the same joint (its edge shares, which nothing reads,
    are left out)."""
    # Carried over only where that level reads them (every LEVELS_STRIDE-th pixel): a quarter of the warps.
    stride = LEVELS_STRIDE[BACKWARD_LEVEL]
    shape = fixed.pixels.shape
    grid = np.zeros(shape, bool)
    grid[::stride, ::stride] = True
    back_regions = [warp_to_moving(np.asarray(r, np.float64), b.motion, order=1, cval=0.0, where=grid)
                    for r, b in zip(regions, fit.bones)]
    inits = [inverse(b.motion, shape) for b in fit.bones]
    return refine_bones(moving, fixed, back_regions, inits, max_iter=BACKWARD_MAX_ITER,
                        levels=(BACKWARD_LEVEL,), blur_px2=-fit.blur_px2, edge_shares=False)


# The roll check (roll_check): a finger turned about its long axis between the visits projects its bones
# narrower or wider but no shorter; one shared magnification then takes half of that width change and, the
# bones lying above and below the joint centre, moves them apart: JSN error, which neither the backward
# fit nor chained visits see. Let free across and along the ROI, the magnification takes it (how far the
# JSN then moves is judged by measure.ROLL_CHECK_PX).
ROLL_CHECK_LEVEL = 1  # smoothed by 1 px, every 2nd pixel: from the kept fit, as the backward fit
ROLL_CHECK_MAX_ITER = 15


def roll_check(fixed: FitImage, moving: FitImage, regions: list[np.ndarray], fit: RefineResult,
               soft: np.ndarray | None) -> float:
    """How far the JSN (working px) moves when the fit's one shared magnification is let free across and
    along the ROI (refine_bones(across=True) from the kept fit, on level ROLL_CHECK_LEVEL)."""
    free = refine_bones(fixed, moving, regions, [b.motion for b in fit.bones], max_iter=ROLL_CHECK_MAX_ITER,
                        levels=(ROLL_CHECK_LEVEL,), soft_slope=soft, edge_shares=False, across=True)
    return fit_jsn_px(free) - fit_jsn_px(fit)


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


def fit_regions(smoothed: np.ndarray, spread: float, upper_mask: np.ndarray, boundary_rows: np.ndarray
                ) -> list[np.ndarray]:
    """The two bones' fitting weights: their regions (bone_regions) times the bone likeness."""
    likeness = bone_likeness(smoothed, spread, boundary_rows)
    return [w * likeness for w in bone_regions(upper_mask, boundary_rows)]


# A runner-up line's fit is first run on the middle level alone; where its JSN lies within this of the kept one
# (working px times px_per_work_px), no rule can use it (each needs more than measure.SPLIT_BAND_PX = 0.4 px), so
# that is its reading (its cost gap None: a middle-level cost does not compare with the kept fit's) and the fit
# on the two finer levels is spared.
ALT_SCREEN_PX = 0.2


def alternative_split(fixed: FitImage, moving: FitImage, smoothed: np.ndarray, spread: float,
                      runner_up_rows: np.ndarray, fit: RefineResult, px_per_work_px: int = 1
                      ) -> tuple[dict, RefineResult | None]:
    """The fit with the split on the runner-up joint line (split.split_candidates), refined from the
    kept fit on the two finer levels unless the middle level alone keeps its JSN (ALT_SCREEN_PX) (its minimum lies within a few px; the finest level alone missed
    one of the real val pairs' wrong splits, all three levels gave the same as two; its edge shares,
    which nothing reads, are left out): its JSN (`jsn_px`, of the working grid), how far that is from
    the kept one (px) and how much higher its robust cost is at a common noise scale (`cost_gap`, < 0:
    the runner-up explains the follow-up better), None each without a fit; and the fit itself. A
    physis or another dark line beside the joint space can be as good a split; the bone that the
    band between the two lines moves with then decides the JSN."""
    mask = split.upper_mask_from_rows(smoothed.shape, runner_up_rows)
    if min(mask.mean(), 1 - mask.mean()) < MIN_REGION_FRAC:
        return {"jsn_px": None, "jsn_diff_px": None, "cost_gap": None}, None
    regions = fit_regions(smoothed, spread, mask, runner_up_rows)
    soft = soft_slope(smoothed, runner_up_rows)
    inits = [b.motion for b in fit.bones]
    screen = refine_bones(fixed, moving, regions, inits, levels=(1,), soft_slope=soft, edge_shares=False)
    moved_px = abs(fit_jsn_px(screen) - fit_jsn_px(fit))
    if moved_px * px_per_work_px < ALT_SCREEN_PX:
        return {"jsn_px": fit_jsn_px(screen), "jsn_diff_px": moved_px, "cost_gap": None}, screen
    alt_fit = refine_bones(fixed, moving, regions, inits, levels=(1, 2), soft_slope=soft, edge_shares=False)
    sigma = min(fit.residual_sd, alt_fit.residual_sd)
    return ({"jsn_px": fit_jsn_px(alt_fit), "jsn_diff_px": abs(fit_jsn_px(alt_fit) - fit_jsn_px(fit)),
             "cost_gap": alt_fit.robust_cost(sigma) - fit.robust_cost(sigma)}, alt_fit)


# A band (between the split and a runner-up line) whose residual under the other bone's motion is
# this many times its own is its own bone's: that line's fit is spared. On real val pairs (4292 lines,
# ROIs centred and 1-2 mm off) this spared 57 % of the fits and changed no flag that mattered: no
# error beyond 0.5 px went unflagged and no more good results were flagged (at 1.3, one went unflagged).
SPARE_BAND_RATIO = 2.0


def runner_up_check(pair: tuple[FitImage, FitImage], smoothed: np.ndarray, spread: float, fit: RefineResult,
                    boundary_rows: np.ndarray, line_rows: np.ndarray, px_per_work_px: int = 1
                    ) -> tuple[dict, RefineResult | None]:
    """A runner-up joint line's band residuals (band_residuals) and, unless its band is clearly its
    own bone's, its fit (alternative_split; else jsn_px, jsn_diff_px and cost_gap None, and no fit)."""
    band = band_residuals(*pair, fit, boundary_rows, line_rows)
    if band["band_other"] >= SPARE_BAND_RATIO * band["band_own"]:
        return {"jsn_px": None, "jsn_diff_px": None, "cost_gap": None, **band}, None
    summary, alt_fit = alternative_split(*pair, smoothed, spread, line_rows, fit, px_per_work_px)
    return {**summary, **band}, alt_fit


def band_residuals(fixed: FitImage, moving: FitImage, fit: RefineResult, boundary_rows: np.ndarray,
                   line_rows: np.ndarray) -> dict:
    """How well each bone's motion of the kept fit explains the band between the split and a
    runner-up joint line: the mean absolute residual after the fit's tone curve, weighted by the
    fixed ROI's gradient magnitude (edges carry the motion), SPLIT_MARGIN_PX left out at both lines;
    `band_own` under the bone the split gives the band to, `band_other` under the other (NaN without
    pixels). A child's epiphysis between its physis and the joint space moves with its own bone
    whichever side of the split it is on; the fits' robust costs tell this poorly (their regions
    differ: on real val pairs a lower cost of the runner-up's fit marked a wrong split 29 times and a
    right one 44 times)."""
    f = fixed.pixels
    rows = np.arange(f.shape[0])[:, None] + 0.5
    lo, hi = np.minimum(line_rows, boundary_rows)[None, :], np.maximum(line_rows, boundary_rows)[None, :]
    band = (rows > lo + SPLIT_MARGIN_PX) & (rows < hi - SPLIT_MARGIN_PX)
    c0, c1, c2 = fit.tone
    warped = [c0 + w * (c1 + c2 * w) for w in (moving.warp_to_fixed(b.motion, band) for b in fit.bones)]
    band &= np.isfinite(warped[0]) & np.isfinite(warped[1])
    weight = np.hypot(*fixed.gradient(1.0))[band]  # smoothed by 1 px: made once for both lines
    if not weight.sum() > 0:
        return {"band_own": np.nan, "band_other": np.nan}
    upper, lower = (float(np.sum(weight * np.abs(w[band] - f[band])) / weight.sum()) for w in warped)
    above = np.median(line_rows - boundary_rows) < 0  # the band lies in the split's upper region
    return {"band_own": upper if above else lower, "band_other": lower if above else upper}


def soft_slope(smoothed: np.ndarray, boundary_rows: np.ndarray) -> np.ndarray | None:
    """Per column, the slope across the finger of its soft tissue's level (the joint space) on the
    fixed ROI `smoothed` by LEVEL_SMOOTH_PX, scaled to at most 1: the basis of refine's soft-tissue
    term (None where the level is flat: nothing to model, and a zero basis would leave the fit
    without a precision estimate). The soft tissue over a bone follows the finger, not the bone, so each bone's own motion leaves this profile shifted under the bone
    by a fraction of a pixel. Unmodelled, that was the main error on real validation pairs: their
    largest errors vanished when the composition moved the soft tissue with the bones, and grew
    with the noise (Tukey's weights then keep the mismatch). Modelled, on 200 pairs per ROI shape
    (realistic motions, true split): JSN error SD 0.044 -> 0.033 px square, 0.049 -> 0.036 px
    wide. A plain linear intensity ramp per bone instead gained nothing."""
    # The darkest level near the split: where the split hugs a bone surface, the level at the split
    # itself would read that bone's edge as soft tissue.
    rows = np.arange(smoothed.shape[0])[:, None] + 0.5
    near = np.abs(rows - np.asarray(boundary_rows)[None, :]) <= SOFT_NEAR_SPLIT_PX
    level = ndimage.gaussian_filter1d(np.where(near, smoothed, np.inf).min(axis=0), SOFT_SLOPE_SMOOTH_PX)
    slope = np.gradient(level)
    peak = float(np.abs(slope).max())
    return slope / peak if peak > 1e-9 else None


# Gaussian SD of the copy on which a column's joint-space level is read: the one the split's gully was found on.
LEVEL_SMOOTH_PX = split.VALLEY_SMOOTH_PX
SOFT_NEAR_SPLIT_PX = 3.0  # rows either side of the split searched for the joint space's level
SOFT_SLOPE_SMOOTH_PX = 2.0  # the joint-space level varies slowly across the finger; its noise should not


def intensity_spread(smoothed: np.ndarray) -> float:
    """The 5-95 % intensity range of the fixed ROI `smoothed` by LEVEL_SMOOTH_PX (at least 1e-3):
    the scale of bone_likeness, read once for the split and its runner-up."""
    return max(np.percentile(smoothed, 95) - np.percentile(smoothed, 5), 1e-3)


def bone_likeness(smoothed: np.ndarray, spread: float, boundary_rows: np.ndarray) -> np.ndarray:
    """Fitting weight in [SOFT_WEIGHT, 1]: how much brighter than its column's joint space a pixel
    of the fixed ROI `smoothed` by LEVEL_SMOOTH_PX is, in units of its intensity_spread. Soft tissue
    and air beside the finger follow the finger, not each bone; left at full weight they pull both
    bones' fits towards the common motion (on real validation pairs, realistic motions, square ROIs:
    JSN error SD 0.085 -> 0.036 px)."""
    cols = np.arange(smoothed.shape[1])
    rows = np.clip(np.round(np.asarray(boundary_rows) - 0.5).astype(int), 0, smoothed.shape[0] - 1)
    gap = smoothed[rows, cols]
    return SOFT_WEIGHT + (1 - SOFT_WEIGHT) * np.clip((smoothed - gap[None, :]) / (BONE_STEP * spread) + 0.5, 0.0, 1.0)


BONE_STEP = 0.1  # of the ROI's 5-95 % intensity range: from joint-space level to full weight
SOFT_WEIGHT = 0.1  # what is left to pixels at or below the joint-space level (0.3: SD 0.047 px)


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


@dataclass(frozen=True)
class FirstPass:
    """What a joint's measurement found before its checks, on the working grid: the split and its runner-up
    lines, the network's motions, the fit kept from the starts (`kept`, None until fitted) and what the starts
    gave. They depend on the ROI pair alone, so measuring the same pair again with the hand's magnification
    held (Engine.register_roi(along_scale=, first_pass=)) starts from them instead of redoing them: the same
    numbers in under half the time (a generated hand's 14 joints: 0.44 -> 0.20 s)."""
    shape: tuple  # the working grid's (rows, cols): the pair it belongs to
    boundary_rows: np.ndarray
    runner_up_rows: tuple
    mask_source: str
    network: tuple  # (upper, lower) BoneMotion
    kept: tuple | None = None  # (upper, lower) BoneMotion of the fit kept from the starts
    start_info: dict | None = None  # best_of_starts' (without the split alternatives, which the checks add)


class Engine:
    """The registration engine with its network loaded once."""

    def __init__(self, network: Network, calibration=None):
        self.network = network
        self.calibration = calibration  # None: the shipped confidence calibration

    @classmethod
    def load(cls, weights_path: Path | None = None) -> "Engine":
        return cls(default_network(str(weights_path) if weights_path else None))

    def register_roi(self, fixed: np.ndarray, moving: np.ndarray, spacing_mm: float,
                     upper_mask: np.ndarray | None = None, refine: bool = True, name: str = "",
                     images: bool = True, block_px: int | None = None, along_scale: float | None = None,
                     first_pass: FirstPass | None = None) -> JointResult:
        """Measure one joint from its fixed (baseline) and moving (follow-up) ROIs in [0, 1].

        A given upper_mask (True = upper bone) always wins over the automatic split. Large ROIs
        are measured on block means of WORK_SIDE_PX-ish size (see work_factor); the results are
        in pixels of the given ROIs. images=False leaves out the warped images and the MSEs (NaN)
        for a caller that makes them at another resolution. block_px overrides the working grid's
        block size (1: every pixel, as a reference for the working grid's precision). along_scale: the
        magnification along the ROI (its rows, the finger's length) held at this value and only the one
        across fitted (the kept fit refitted so on the two finer levels): the hand's, measured over its
        joints (quantify.hand_magnification), so that a finger's own width change is not read as a length one.
        first_pass (with along_scale): the result's `first_pass` of an earlier call on the same ROIs (same mask
        and block size): its split, network and fits from the starts are taken, not redone.
        """
        fixed = np.asarray(fixed, dtype=np.float64)
        moving = np.asarray(moving, dtype=np.float64)
        check_pair(fixed, moving, upper_mask)
        user_mask = None if upper_mask is None else np.asarray(upper_mask, dtype=bool)
        k = work_factor(fixed.shape) if block_px is None else int(block_px)
        work = WorkGrid(fixed.shape, k)
        f_w, m_w = work.down(fixed), work.down(moving)
        mask_w = None if user_mask is None else work.down(user_mask.astype(np.float64)) > 0.5
        if first_pass is not None and (along_scale is None or not refine or first_pass.kept is None):
            raise ValueError("a first pass is taken only to refine the same joint again with along_scale")
        if first_pass is not None and tuple(first_pass.shape) != f_w.shape:
            raise ValueError(f"the first pass was measured on a {first_pass.shape} grid, not {f_w.shape}")
        upper, lower, confidence, flagged, reason, details, boundary_w, first_pass = self._measure(
            f_w, m_w, mask_w, refine, px_per_work_px=k, along_scale=along_scale, first=first_pass)
        boundary = work.rows_to_full(boundary_w)
        if user_mask is None:
            details["split_rows"] = [float(r) for r in boundary]
            user_mask = split.upper_mask_from_rows(fixed.shape, boundary)
        details["work_factor"] = k
        if k > 1:
            upper, lower = work.to_full(upper), work.to_full(lower)
        images_, mse_before, mse_after = None, np.nan, np.nan
        if images:
            images_ = measure.joint_images(fixed, moving, user_mask, upper, lower)
            mse_before, mse_after = measure.mse_before_after(images_)
        return JointResult(name=name, spacing_mm=float(spacing_mm), upper=upper, lower=lower,
                           mse_before=mse_before, mse_after=mse_after, confidence=confidence,
                           flagged=flagged, flag_reason=reason, details=details, images=images_,
                           first_pass=first_pass)

    def _measure(self, fixed: np.ndarray, moving: np.ndarray, upper_mask: np.ndarray | None, refine: bool,
                 px_per_work_px: int = 1, along_scale: float | None = None, first: FirstPass | None = None):
        """Split, starts, refinement and assessment on the working grid (split, network and the fits from the
        starts taken from `first` when given)."""
        smoothed = ndimage.gaussian_filter(fixed, LEVEL_SMOOTH_PX) if refine else None
        if first is None:
            first = self._split_and_network(fixed, moving, upper_mask, refine, smoothed)
        boundary, runner_ups = first.boundary_rows, list(first.runner_up_rows)
        if upper_mask is None:
            upper_mask = split.upper_mask_from_rows(fixed.shape, boundary)
        net_upper, net_lower = first.network
        jsn_net = net_upper.dy_px - net_lower.dy_px
        details = {"mask": first.mask_source, "network": {"upper": net_upper.to_dict(), "lower": net_lower.to_dict(),
                                                          "jsn_px": jsn_net * px_per_work_px}}
        if not refine:  # read the other way too, on the follow-up's own split (measure.NETWORK_FB_PX)
            back = self.network.predict(moving, fixed, split.upper_mask_from_rows(moving.shape, split.split_rows(moving)))
            fb_px = abs(jsn_net + back[0].dy_px - back[1].dy_px) * px_per_work_px
            details["network"]["fb_px"] = fb_px
            confidence, flagged, reason = measure.network_assessment(net_upper, net_lower, fixed.shape, fb_px)
            return net_upper, net_lower, confidence, flagged, reason, details, boundary, first
        spread = intensity_spread(smoothed)
        regions = fit_regions(smoothed, spread, upper_mask, boundary)
        pair = FitImage(fixed), FitImage(moving)  # each derived copy made once for all the fits
        soft = soft_slope(smoothed, boundary)
        if first.kept is None:
            starts = {"network": [net_upper, net_lower], "search": search_bones(fixed, moving, regions)}
            fit, start_info = best_of_starts(*pair, regions, starts, soft)
            first = replace(first, kept=tuple(b.motion for b in fit.bones), start_info=dict(start_info))
        start_info = dict(first.start_info)
        if along_scale is not None:
            fit = refine_bones(*pair, regions, list(first.kept), levels=(1, 2), soft_slope=soft,
                               across=True, along_scale=along_scale)
            details["along_scale"] = float(along_scale)
        back = backward_fit(*pair, regions, fit)
        roll_px = roll_check(*pair, regions, fit, soft)
        checks = [runner_up_check(pair, smoothed, spread, fit, boundary, rows, px_per_work_px) for rows in runner_ups]
        start_info["split_alternatives"] = [summary for summary, _ in checks]
        upper, lower = (b.motion for b in fit.bones)
        taken = measure.line_taken(start_info["split_alternatives"], px_per_work_px)
        confidence, flagged, reason, extra = measure.assess(fit, back, start_info, jsn_net, fixed.shape,
                                                            self.calibration, px_per_work_px, taken, roll_px)
        details.update(extra)
        if taken is not None:  # the band moves with the other bone: that line is the joint space
            upper, lower = (b.motion for b in checks[taken][1].bones)
            boundary = runner_ups[taken]
            details["split_taken"] = {"line": taken, "kept_jsn_px": fit_jsn_px(fit) * px_per_work_px,
                                      "trusted": not flagged}
        return upper, lower, confidence, flagged, reason, details, boundary, first

    def _split_and_network(self, fixed: np.ndarray, moving: np.ndarray, upper_mask: np.ndarray | None,
                           refine: bool, smoothed: np.ndarray | None) -> FirstPass:
        """The split (automatic, with its runner-up lines when refining, or the user's) and the network's motions."""
        runner_ups = []  # the automatic split's runner-up joint lines (rows), if any
        if upper_mask is None:
            boundary, runner_ups = split.split_candidates(fixed, runner_up=refine, smoothed=smoothed)
            upper_mask = split.upper_mask_from_rows(fixed.shape, boundary)
            mask_source = "automatic"
        else:
            # The user's mask decides each pixel's bone. Its boundary may hug one bone's surface,
            # so the band left out of both fits is centred on the middle of the gap beside it
            # (on the clinical pair: JSN 0.058 -> 0.017 mm, next to 0.008 mm with our own split).
            boundary = split.mid_gap_rows(fixed, split.rows_from_upper_mask(upper_mask)) + 0.5
            mask_source = "user"
        network = self.network.predict(fixed, moving, upper_mask)
        return FirstPass(fixed.shape, boundary, tuple(runner_ups), mask_source, network)


def work_factor(shape: tuple[int, int]) -> int:
    """Block size of the working grid: ROIs whose shorter side is about 2 x WORK_SIDE_PX or more
    are measured on block means: the time of a 128 px ROI. The price, on generated 256 px pairs
    (25-50 mm fields with fine texture): JSN error SD 0.06 -> 0.15 px of the ROI (40 pairs);
    a finishing fit on the full-resolution pixels did not win it back (0.14 px)."""
    return max(1, int(min(shape) / WORK_SIDE_PX + 0.5))


class WorkGrid:
    """Block-mean grid of k x k pixels, centred in the ROI (the remainder cropped evenly)."""

    def __init__(self, shape: tuple[int, int], k: int):
        self.shape, self.k = shape, k
        self.rows, self.cols = shape[0] // k, shape[1] // k
        self.off_y, self.off_x = (shape[0] % k) // 2, (shape[1] % k) // 2

    def down(self, image: np.ndarray) -> np.ndarray:
        if self.k == 1:
            return image
        k = self.k
        crop = image[self.off_y:self.off_y + self.rows * k, self.off_x:self.off_x + self.cols * k]
        return crop.reshape(self.rows, k, self.cols, k).mean(axis=(1, 3))

    def to_full(self, motion: BoneMotion) -> BoneMotion:
        """A motion about the working grid's centre, in its pixels -> about the ROI's centre, in ROI pixels."""
        k = self.k
        centre_w = (k * (self.cols - 1) / 2 + (k - 1) / 2 + self.off_x, k * (self.rows - 1) / 2 + (k - 1) / 2 + self.off_y)
        scaled = BoneMotion(motion.scale, motion.dtheta_rad, k * motion.dx_px, k * motion.dy_px)
        return from_matrix(matrix(scaled, centre_w), roi_centre(self.shape))

    def rows_to_full(self, rows_w: np.ndarray) -> np.ndarray:
        """Boundary rows (row-edge coordinates) per working column -> per ROI column."""
        if self.k == 1:
            return np.asarray(rows_w, dtype=float)
        cols = np.clip((np.arange(self.shape[1]) - self.off_x) // self.k, 0, self.cols - 1)
        return self.k * np.asarray(rows_w, dtype=float)[cols] + self.off_y
