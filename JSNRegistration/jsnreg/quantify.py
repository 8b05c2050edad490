"""Whole radiographs -> per-joint measurements: the pipeline every face calls.

baseline + follow-up (Radiograph) -> same spacing -> one coarse alignment of the whole hands ->
per joint: axis, baseline ROI, the joint found in the follow-up (a local search at reduced
resolution), follow-up ROI -> register_roi at the working resolution (resolution.py: split,
network, refinement, measurements), the result in full-resolution pixels; with enough joints, each
measured again with the hand's magnification held along its finger (hand_magnification).
Every joint is checked before any registration starts, so a bad position fails at once.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from . import resolution, rois, split
from .errors import InputError
from .validate import roi_mm as checked_roi_mm, roi_size_px as checked_roi_px
from .images import Radiograph, match_spacing
from .joints import JointSpec
from .measure import joint_images as warp_images
from .register import Engine
from .results import JointImages, JointResult


# The film's magnification is one for the whole hand, a finger's roll (its bones' widths changed) its own: the
# median of the unflagged joints' fitted magnifications (at least this many) is held along each joint's ROI in a
# second pass that fits only the one across. Real hands repositioned as a whole, no joint changed
# (Testing/tools/hand_magnification.py, annotated joints): JSN error SD val 0.030 -> 0.025 px (max 0.13 -> 0.11),
# train 0.036 -> 0.029 (max 0.25 -> 0.19), no flag either way; the joints' magnifications lie 0.04 % (SD) about
# their hand's median. On real joint pairs with the truth's magnification held (Testing/tools/along_study.py),
# about 40 % of a roll's JSN error goes.
HAND_MAGNIFICATION_MIN_JOINTS = 5


def hand_magnification(results: list[JointResult]) -> float | None:
    """The median fitted magnification (follow-up over baseline) of the unflagged joints, or None with fewer
    than HAND_MAGNIFICATION_MIN_JOINTS of them."""
    scales = [r.upper.scale for r in results if not r.flagged]
    return float(np.median(scales)) if len(scales) >= HAND_MAGNIFICATION_MIN_JOINTS else None


@dataclass
class Settings:
    roi_mm: float = 22.0  # side of the square joint ROI (the published work: 127 px at 0.175 mm)
    refine: bool = True  # per-bone sub-pixel refinement after the network
    edge: str = "pad"  # joints near the image edge: "pad" (up to a quarter outside) or "refuse"
    # Full-resolution pixels per working pixel a side (resolution.py); None: chosen from the spacing.
    work_factor: int | None = None
    # The second pass with the hand's magnification held along each joint's ROI (hand_magnification).
    hand_magnification: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


class Cancelled(Exception):
    """The user stopped the run (raised between joints)."""


@dataclass
class Placement:
    """Where one joint's ROIs are cut: centres (x, y) px and angles (rad) in each radiograph."""

    baseline_xy: tuple[float, float]
    baseline_angle_rad: float
    followup_xy: tuple[float, float]
    followup_angle_rad: float
    size_px: int
    followup_given: bool
    work_factor: int = 1  # registered on factor x factor block means of the ROIs (resolution.py)

    def to_dict(self) -> dict:
        return {"baseline_xy": list(self.baseline_xy), "followup_xy": list(self.followup_xy),
                "baseline_angle_rad": self.baseline_angle_rad, "followup_angle_rad": self.followup_angle_rad,
                "roi_size_px": self.size_px, "followup_given": self.followup_given,
                "work_factor": self.work_factor}

    @classmethod
    def from_dict(cls, d: dict) -> "Placement":
        return cls(tuple(d["baseline_xy"]), float(d["baseline_angle_rad"]), tuple(d["followup_xy"]),
                   float(d["followup_angle_rad"]), int(d["roi_size_px"]), bool(d.get("followup_given", False)),
                   int(d.get("work_factor", 1)))


def working_factor(settings: Settings, spacing_mm: float) -> int:
    """The settings' working-resolution factor, or the one the spacing asks for."""
    if settings.work_factor is None:
        return resolution.work_factor(spacing_mm)
    if isinstance(settings.work_factor, bool) or not isinstance(settings.work_factor, int) \
            or settings.work_factor < 1:
        raise InputError(f"work_factor must be a whole number >= 1 (or none), got {settings.work_factor!r}")
    return settings.work_factor


def same_spacing(baseline: Radiograph, followup: Radiograph) -> Radiograph:
    """The follow-up at the baseline's spacing (resampled when the visits differ)."""
    if baseline.spacing_mm is None or followup.spacing_mm is None:
        raise InputError("both radiographs need a pixel spacing (give it with --spacing-mm)")
    return match_spacing(followup, baseline.spacing_mm)


def place_joints(baseline: Radiograph, followup: Radiograph, joints: list[JointSpec],
                 settings: Settings, map_=None, refusals: bool = False) -> list[Placement]:
    """Cut positions of every joint; InputError for a joint outside or too near the edge (with
    `refusals`, that joint's place in the list holds the InputError's text instead).

    map_: how the joints are placed once the hands are aligned (forked.worker_map's, with
    (baseline, followup, engine, settings) inherited); default: one after the other, here."""
    factor = working_factor(settings, baseline.spacing_mm)
    size = resolution.roi_sizes_px(settings.roi_mm, baseline.spacing_mm, factor)[0]
    coarse = None
    if any(j.followup_xy is None for j in joints):
        coarse = rois.coarse_align(baseline.pixels, followup.pixels)
    if map_ is None:
        map_ = lambda fn, tasks: (fn(baseline, followup, None, settings, t) for t in tasks)  # noqa: E731
    fingers = finger_chains([j.name for j in joints])
    placed = map_(_place_finger, [([joints[k] for k in chain], size, factor, coarse, refusals) for chain in fingers])
    out = [None] * len(joints)
    for chain, placements in zip(fingers, placed):
        for k, p in zip(chain, placements):
            out[k] = p
    return out


# A finger's joints from its base to its tip: each is searched where the ones before it say the finger lies.
FINGER_ORDER = ("MCP", "PIP", "DIP", "IP")


def finger_chains(names: list[str]) -> list[list[int]]:
    """Indices of `names` grouped by finger (MCP2, PIP2, DIP2; MCP1, IP1; a two-hand film's "L-" and "R-"
    apart), each group from base to tip; a name of no finger is a group of its own."""
    groups: dict = {}
    for k, name in enumerate(names):
        side, _, joint = name.rpartition("-")
        kind = next((t for t in FINGER_ORDER if joint.startswith(t) and joint[len(t):].isdigit()), None)
        key = (side, joint[len(kind):]) if kind else ("", name, k)
        groups.setdefault(key, []).append((FINGER_ORDER.index(kind) if kind else 0, k))
    return [[k for _, k in sorted(group)] for group in groups.values()]


def _place_finger(baseline: Radiograph, followup: Radiograph, engine, settings: Settings, task) -> list:
    """The joints of one finger placed from its base to its tip, each searched along the finger as the
    ones found before it lie (rois.along_finger); with `refusals`, a joint that cannot be cut holds the
    InputError's text instead (else it is raised)."""
    joints, size, factor, coarse, refusals = task
    out, base_xy, follow_xy = [], [], []
    for j in joints:
        matrix = coarse
        if coarse is not None and follow_xy:  # the segment from the joint found last to this one, turned
            turn = rois.segment_turn(baseline.pixels, followup.pixels, base_xy[-1], (j.x, j.y), follow_xy[-1],
                                     coarse, baseline.spacing_mm, max(1, size // rois.SEARCH_TEMPLATE_PX))
            matrix = rois.along_finger(coarse, base_xy[-1], follow_xy[-1], turn)
        try:
            p = _place_joint(baseline, followup, engine, settings, (j, size, factor, matrix))
        except InputError as exc:
            if not refusals:
                raise
            out.append(str(exc))
            continue
        out.append(p)
        base_xy.append(p.baseline_xy)
        follow_xy.append(p.followup_xy)
    return out


def _place_joint(baseline: Radiograph, followup: Radiograph, _engine, settings: Settings, task) -> Placement:
    j, size, factor, coarse = task
    rows, cols = baseline.pixels.shape
    if not (0 <= j.x < cols and 0 <= j.y < rows):
        raise InputError(f"joint {j.name} at ({j.x:.0f}, {j.y:.0f}) lies outside the baseline "
                         f"({cols} x {rows} px)")
    angle = rois.estimate_axis_angle(baseline.pixels, (j.x, j.y), size / 2.0)
    _check_cut(baseline.pixels, (j.x, j.y), size, angle, settings, f"{j.name} (baseline)")
    if j.followup_xy is not None:
        follow_xy = tuple(map(float, j.followup_xy))
        follow_angle = angle + (rois.matrix_rotation(coarse) if coarse is not None else 0.0)
    else:
        follow_xy = tuple(map(float, rois.locate_joint(baseline.pixels, followup.pixels, (j.x, j.y),
                                                       size, coarse)))
        follow_angle = angle + rois.matrix_rotation(coarse)
    _check_cut(followup.pixels, follow_xy, size, follow_angle, settings, f"{j.name} (follow-up)")
    return Placement((float(j.x), float(j.y)), float(angle), follow_xy, float(follow_angle),
                     size, j.followup_xy is not None, factor)


def _check_cut(image: np.ndarray, centre_xy, size: int, angle: float, settings: Settings, what: str) -> None:
    """The edge check of cutting this ROI (the cut itself comes later, once per joint)."""
    try:
        rois.check_roi_inside(image.shape, centre_xy, size, angle, edge=settings.edge)
    except InputError as exc:
        raise InputError(f"joint {what}: {exc}") from None


def cut_pair(baseline: Radiograph, followup: Radiograph, p: Placement) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (baseline) and moving (follow-up) ROIs of a placed joint."""
    return (rois.cut_roi(baseline.pixels, p.baseline_xy, p.size_px, p.baseline_angle_rad),
            rois.cut_roi(followup.pixels, p.followup_xy, p.size_px, p.followup_angle_rad))


def quantify(baseline: Radiograph, followup: Radiograph, joints: list[JointSpec],
             settings: Settings | None = None, engine: Engine | None = None,
             on_progress: Callable[[int, int, str], None] | None = None,
             should_cancel: Callable[[], bool] | None = None, timings: dict | None = None,
             workers: int = 1, left_out: list | None = None) -> list[JointResult]:
    """Measure every joint; results in the order of `joints`, each with its images and position.

    A joint whose ROI cannot be cut (outside the film, or too much of it beyond the edge, in either
    visit) is an InputError, unless `left_out` is given: that joint is then left out and
    {"joint": name, "reason": why} appended to it, the others measured (for joints nobody placed:
    a detected thumb at the film's edge must not stop a hand's measurement; InputError if none is left).

    With HAND_MAGNIFICATION_MIN_JOINTS or more unflagged joints (refined; settings.hand_magnification), every
    joint is measured again with the hand's magnification held along its ROI (hand_magnification; its value in
    each result's details, `along_scale`): a joint's result then depends on the joints measured with it, by
    about 0.01 px.

    workers > 1: the joints are placed and measured in that many forked processes (forked.py;
    only from a process without a GUI). timings, when given, receives the wall and CPU seconds of
    placement and registration (place_s, place_cpu_s, register_s, register_cpu_s; CPU of this
    process only)."""
    from .forked import worker_map

    clock = _Clock(timings)
    settings = settings or Settings()
    if not joints:
        raise InputError("no joints given: place at least one joint on the baseline")
    names = [j.name for j in joints]
    if len(set(names)) != len(names):
        raise InputError(f"joint names must be unique: {', '.join(n for n in names if names.count(n) > 1)}")
    followup = same_spacing(baseline, followup)
    checked_roi_px(resolution.roi_sizes_px(checked_roi_mm(settings.roi_mm), baseline.spacing_mm, 1)[0])  # before any cut
    engine = engine or Engine.load()
    with worker_map((baseline, followup, engine, settings), min(workers, len(joints))) as map_:
        placements = place_joints(baseline, followup, joints, settings, map_, refusals=left_out is not None)
        if left_out is not None:
            refused = [(j, why) for j, why in zip(joints, placements) if isinstance(why, str)]
            if len(refused) == len(joints):
                raise InputError(refused[0][1] if len(joints) == 1 else f"no joint can be measured: {refused[0][1]}")
            left_out.extend({"joint": j.name, "reason": why} for j, why in refused)
            joints, placements = map(list, zip(*[(j, p) for j, p in zip(joints, placements) if not isinstance(p, str)]))
        clock.lap("place")
        measured = map_(_measure_joint, [(j, p, None, None) for j, p in zip(joints, placements)])
        results = []
        for k, joint in enumerate(joints):
            _stop_if_cancelled(should_cancel, k, len(joints))
            result = next(measured)
            # Workers measure ahead: a joint that was ready when the user cancelled is not reported.
            _stop_if_cancelled(should_cancel, k, len(joints))
            results.append(result)
            if on_progress is not None:
                on_progress(k + 1, len(joints), joint.name)
        magnification = hand_magnification(results) if settings.refine and settings.hand_magnification else None
        if magnification is not None:  # the second pass (no progress of its own: the joints are measured)
            # Each joint from its first pass (split, network, fits from the starts): only the fit with the
            # magnification held and the checks after it are redone.
            again = map_(_measure_joint, [(j, p, magnification, r.first_pass)
                                          for j, p, r in zip(joints, placements, results)])
            results = []
            for _ in joints:
                _stop_if_cancelled(should_cancel, len(joints), len(joints), again=True)
                results.append(next(again))
        # The workers may have finished the last joints before a cancel arrived: it still wins, nothing is returned.
        _stop_if_cancelled(should_cancel, len(joints), len(joints))
    clock.lap("register")
    return results


def _stop_if_cancelled(should_cancel: Callable[[], bool] | None, done: int, total: int, again: bool = False) -> None:
    if should_cancel is not None and should_cancel():
        raise Cancelled(f"stopped after {done} of {total} joints"
                        + (", while measuring them again with the hand's magnification" if again else ""))


def _measure_joint(baseline: Radiograph, followup: Radiograph, engine: Engine, settings: Settings,
                   task: tuple) -> JointResult:
    """task: (joint, placement, along_scale or None, the joint's first pass or None)."""
    joint, place, along_scale, first_pass = task
    fixed, moving = cut_pair(baseline, followup, place)
    result = resolution.register_roi(engine, fixed, moving, baseline.spacing_mm, place.work_factor,
                                     refine=settings.refine, name=joint.name, along_scale=along_scale,
                                     first_pass=first_pass)
    result.position = place.to_dict() | {"source": joint.source, "moved": joint.moved}
    if joint.detect_confidence is not None:
        result.position["detect_confidence"] = joint.detect_confidence
    doubt = joint.placement_doubt()
    if doubt:
        result.flagged = True
        result.flag_reason = "; ".join(r for r in (result.flag_reason, doubt) if r)
    return result


class _Clock:
    """Wall and CPU seconds since the last lap, written into `timings` (nothing when it is None)."""

    def __init__(self, timings: dict | None):
        self.timings = timings
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self, stage: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        if self.timings is not None:
            self.timings[f"{stage}_s"], self.timings[f"{stage}_cpu_s"] = wall - self.wall, cpu - self.cpu
        self.wall, self.cpu = wall, cpu


def joint_images(baseline: Radiograph, followup: Radiograph, result: JointResult) -> JointImages:
    """Rebuild a stored result's images without registering again (same cuts, stored motions)."""
    followup = same_spacing(baseline, followup)
    fixed, moving = cut_pair(baseline, followup, Placement.from_dict(result.position))
    rows = result.details.get("split_rows")
    mask = split.upper_mask_from_rows(fixed.shape, np.asarray(rows)) if rows else split.split(fixed)
    return warp_images(fixed, moving, mask, result.upper, result.lower)
