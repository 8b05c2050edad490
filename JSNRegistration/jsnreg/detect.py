"""Finger joints found and named on a PA hand radiograph, classically (no network, < 1 s per hand).

Steps, all on a copy reduced to about WORK_MM per pixel:
1. hand masks: Otsu threshold of the smoothed image, the large connected parts (one or two hands); a hand
   whose joints come out doubtful (step 7) is read again with the threshold at other tone curves;
2. fingertips: peaks of the distance from the palm centre (the deepest point of the mask's
   distance transform) along the mask's outline, kept when the protrusion is finger-narrow; when
   closed fingers touch and the outline shows fewer than three, also the ends of the bright bone
   lines crossing an arc through the proximal phalanges, followed out to the mask's edge;
3. finger axes: traced from each tip towards the palm, re-centred at each step on the brightest
   line across the finger in a bone-scale smoothed image (the bones, not the soft tissue, so
   closed fingers that touch still give one axis each);
4. joints: dark valleys of the intensity profile along the axis (the joint space crosses the whole
   bone), chosen by their depth and by the proportions of the phalanges (tip-DIP-PIP-MCP, or
   tip-IP-MCP for the thumb), which also keeps a child's physis from being taken for the joint;
5. names: the thumb is the outer finger with the larger angular gap to its neighbour; its side
   of the hand's long axis tells left from right (PA view: a left hand shows its thumb on the
   image's right when the fingers point up); the other fingers are named in order from the thumb,
   with a gap twice the usual spacing read as a missing finger;
6. refinement (jsnreg.detect_refine): each joint moved to the peak of a correlation filter learned
   on annotated real hands, in the finger's frame at the palm's scale;
7. confidence (jsnreg.detect_confidence): the probability that the joint is within 2 mm and named
   right, from what the refinement saw (the filter peak's strength, how far it moved the joint, ...).

Spacing only sets the working resolution; lengths are then measured against the palm's radius,
so a nominal spacing that is somewhat off does no harm.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .detect_field import exposed
from .errors import InputError
from .joints import STANDARD_JOINTS

WORK_MM = 0.4  # working pixel size: the joint space (>= 1 mm) stays 2-3 px wide
MIN_HAND_MM2 = 3000.0  # a small child's hand is > 5000 mm^2; less is a marker or a scrap of tissue
FINGERS = (1, 2, 3, 4, 5)
# Joint positions along a finger as fractions of the tip-to-MCP length, measured on the training
# hands (RSNA train split, annotated; the spread between hands was 0.01-0.02, the thumb's 0.07).
JOINT_FRACTIONS = {1: (("IP1", 0.40),),
                   2: (("DIP2", 0.218), ("PIP2", 0.512)), 3: (("DIP3", 0.217), ("PIP3", 0.516)),
                   4: (("DIP4", 0.218), ("PIP4", 0.525)), 5: (("DIP5", 0.241), ("PIP5", 0.525))}
FRACTION_SD = {1: 0.07, 2: 0.025, 3: 0.025, 4: 0.025, 5: 0.025}


@dataclass
class DetectedJoint:
    """A joint found on the image: name ("MCP2", or "L-MCP2" with two hands), centre (x = column,
    y = row, px of the input), its confidence (the estimated probability that it is within 2 mm of
    the joint's centre and named right, jsnreg.detect_confidence) and the hand's side from its
    anatomy ("L" or "R", PA view)."""

    name: str
    x: float
    y: float
    confidence: float
    side: str = ""


@dataclass
class _Finger:
    tip: np.ndarray  # (x, y) work px
    angle: float  # of the tip as seen from the palm centre
    axis: np.ndarray | None = None  # (n, 2) traced points from the tip, 1 step apart
    digit: int = 0
    joints: list | None = None  # [(name, s_px, valley depth / median depth)]


def _otsu3_low(values: np.ndarray) -> float:
    """The lower of the two thresholds of a three-class Otsu (background | soft tissue | bone):
    a two-class split may fall between soft tissue and bone when the background is masked to 0."""
    hist, edges = np.histogram(values, 64, (float(values.min()), float(values.max()) + 1e-9))
    c = (edges[:-1] + edges[1:]) / 2
    w = np.concatenate([[0], np.cumsum(hist)]).astype(float)
    m = np.concatenate([[0], np.cumsum(hist * c)])
    i, j = np.meshgrid(np.arange(1, 64), np.arange(1, 64), indexing="ij")  # classes [0,i) [i,j) [j,64)
    valid = j > i
    w0, w1, w2 = w[i], w[j] - w[i], w[-1] - w[j]
    m0, m1, m2 = m[i], m[j] - m[i], m[-1] - m[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = m0 ** 2 / w0 + m1 ** 2 / w1 + m2 ** 2 / w2
    between[~valid | (w0 == 0) | (w1 == 0) | (w2 == 0)] = -np.inf
    k = np.unravel_index(int(np.argmax(between)), between.shape)
    return float(edges[k[0] + 1])


def _reduce(pixels: np.ndarray, spacing_mm: float) -> tuple[np.ndarray, int]:
    factor = max(1, int(round(WORK_MM / spacing_mm)))
    h, w = pixels.shape[0] // factor * factor, pixels.shape[1] // factor * factor
    small = pixels[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    return small.astype(np.float32), factor


def _hand_masks(image: np.ndarray, mm: float) -> list[np.ndarray]:
    """Filled masks of the one or two hands, largest first; InputError when there is none."""
    smooth = ndimage.gaussian_filter(image, 1.0 / mm)
    if float(smooth.max() - smooth.min()) < 0.05:
        raise InputError("the image is nearly uniform: no hand to find")
    mask = smooth > _otsu3_low(smooth)
    inside, outside = image[mask], image[~mask]
    if inside.size < 10 or outside.size < 10:
        raise InputError("no hand found: nothing stands out from the background")
    # a radiograph's hand stands out from a quiet background; smoothed noise only looks like it
    separation = (inside.mean() - outside.mean()) / np.sqrt((inside.var() + outside.var()) / 2 + 1e-12)
    if separation < 1.5:
        raise InputError(f"no hand found: no object stands out from the background "
                         f"(contrast {separation:.1f} SD, a radiograph's hand gives > 1.5)")
    mask = ndimage.binary_opening(mask, iterations=max(1, int(round(1.0 / mm))))
    labels, n = ndimage.label(mask)
    if n == 0:
        raise InputError("no hand found: nothing stands out from the background")
    areas = ndimage.sum(mask, labels, np.arange(1, n + 1)) * mm * mm
    order = np.argsort(areas)[::-1]
    keep = [k for k in order[:2] if areas[k] >= MIN_HAND_MM2 and areas[k] >= 0.3 * areas[order[0]]]
    if not keep:
        raise InputError(f"no hand found: the largest object is {areas[order[0]]:.0f} mm^2 "
                         f"(a hand is > {MIN_HAND_MM2:.0f} mm^2 at the given spacing)")
    return [ndimage.binary_fill_holes(labels == k + 1) for k in keep]


def _outline(mask: np.ndarray, mm: float) -> np.ndarray:
    """The mask's outer boundary as (x, y) points about 1 mm apart, in order."""
    import contourpy

    soft = ndimage.gaussian_filter(mask.astype(np.float32), 1.5 / mm)
    soft[0, :] = soft[-1, :] = soft[:, 0] = soft[:, -1] = 0.0  # closed outline even where the arm leaves
    lines = contourpy.contour_generator(z=soft).lines(0.5)
    line = max(lines, key=len)
    seg = np.hypot(*np.diff(line, axis=0).T)
    s = np.concatenate([[0], np.cumsum(seg)])
    t = np.arange(0, s[-1], 1.0 / mm)
    return np.column_stack([np.interp(t, s, line[:, 0]), np.interp(t, s, line[:, 1])])


def _fingertips(mask: np.ndarray, mm: float) -> tuple[list[_Finger], np.ndarray, float]:
    """Fingertip candidates of one hand, the palm centre (x, y) and the palm radius (px)."""
    dist = ndimage.distance_transform_edt(mask)
    cy, cx = np.unravel_index(int(np.argmax(dist)), dist.shape)
    centre, radius = np.array([cx, cy], float), float(dist[cy, cx])
    pts = _outline(mask, mm)
    r = ndimage.gaussian_filter1d(np.hypot(*(pts - centre).T), 3.0, mode="wrap")
    n = len(r)
    near = int(round(8.0 / 1.0))  # a tip is the farthest point within +-8 mm of outline
    tips = []
    h, w = mask.shape
    for i in range(n):
        window = r[[(i + k) % n for k in range(-near, near + 1)]]
        if r[i] < window.max() or r[i] < 1.0 * radius:
            continue
        # prominence: the outline must come back towards the palm on both sides
        lo = []
        for sign in (1, -1):
            k, best = 1, r[i]
            while k < n // 2:
                v = r[(i + sign * k) % n]
                best = min(best, v)
                if v > r[i]:
                    break
                k += 1
            lo.append(best)
        if r[i] - max(lo) < 0.3 * radius:
            continue
        tip = pts[i]
        # finger-narrow: the mask across the protrusion 6 mm back from the tip
        d = (centre - tip) / np.linalg.norm(centre - tip)
        back = tip + d * 6.0 / mm
        across = np.array([-d[1], d[0]])
        u = np.arange(-radius, radius + 1.0, 0.5)  # long enough to see the arm's full width
        xs, ys = back[0] + u * across[0], back[1] + u * across[1]
        inside = ndimage.map_coordinates(mask.astype(np.float32), [ys, xs], order=1, cval=0) > 0.5
        mid = len(u) // 2
        if not inside[mid]:
            continue
        left = mid - np.argmin(inside[mid::-1]) if not inside[0:mid + 1].all() else 0
        right = mid + np.argmin(inside[mid:]) if not inside[mid:].all() else len(u)
        if (right - left) * 0.5 > 0.8 * radius:
            continue  # wider than a finger: the forearm where it leaves the image
        angle = float(np.arctan2(tip[1] - centre[1], tip[0] - centre[0]))
        tips.append(_Finger(tip=tip.copy(), angle=angle))
    return tips, centre, radius


# Closed fingers (val 1541, a young child's: they touch each other up to their tips) leave the outline
# with one or two fingertips. Their bones still lie apart: an arc about the palm centre at 1.4 palm
# radii crosses the proximal phalanges 2-5, each a bright line across it (train and val annotations:
# MCP2-5 0.83-1.42 radii from the centre, median 1.11, PIP2-5 1.51-2.57, median 1.97). With every
# train and val hand forced down this path (the outline's tips merged with the bones'), 1.4 keeps
# all their joints found (train 395 -> 398 of 461 with the shipped filters, val 149 of 168 either
# way), 1.5 lost 4 on val.
CLOSED_ARC_R = 1.4
PEAK_APART_R = 0.25  # a finger's bone is the brightest line within this arc length to either side
# Fingertips (outline's) of the train and val hands lie 1.78-3.83 palm radii from the palm centre
# (thumb 1.78-2.54, fingers 2-5 from 2.07): a walk out along a bone that ends nearer is leaving a
# thumb's or finger's side, one that has not ended by the farthest is not a finger's.
TIP_R = (1.7, 4.0)
SAME_TIP_R = 0.2  # tips closer than this are one finger's (neighbours' are 0.3 radii apart or more)


def _bone_fingertips(image: np.ndarray, bone: np.ndarray, mask: np.ndarray, centre: np.ndarray,
                     radius: float, mm: float) -> list[_Finger]:
    """Fingertips found from the bones: the bright lines (bone above its 5 mm surroundings, so the
    soft tissue's slow changes do not count) crossing an arc about the palm centre
    (CLOSED_ARC_R), each followed out along its bone to where the hand's mask ends, kept when that
    is as far from the palm centre as a fingertip is (TIP_R). A line whose walk reaches the film's
    edge is the forearm's, not a finger's."""
    ridge = bone - ndimage.gaussian_filter(image, 5.0 / mm)
    arc_px = CLOSED_ARC_R * radius
    theta = np.arange(0.0, 2 * np.pi, 0.5 / mm / arc_px)  # 0.5 mm apart
    xs, ys = centre[0] + arc_px * np.cos(theta), centre[1] + arc_px * np.sin(theta)
    inside = ndimage.map_coordinates(mask.astype(np.float32), [ys, xs], order=1, cval=0) > 0.5
    vals = np.where(inside, ndimage.map_coordinates(ridge, [ys, xs], order=1, cval=0.0), -np.inf)
    apart = int(round(PEAK_APART_R * radius / (0.5 / mm)))
    peaks = np.flatnonzero((vals == ndimage.maximum_filter1d(vals, 2 * apart + 1, mode="wrap")) & (vals > 0))
    tips = []
    for k in peaks:
        start = np.array([xs[k], ys[k]])
        tip = _walk_out(bone, mask, start, (start - centre) / arc_px, mm, (TIP_R[1] - CLOSED_ARC_R) * radius)
        if tip is not None and np.hypot(*(tip - centre)) >= TIP_R[0] * radius:
            tips.append(_Finger(tip=tip, angle=float(np.arctan2(tip[1] - centre[1], tip[0] - centre[0]))))
    return tips


def _walk_out(bone: np.ndarray, mask: np.ndarray, p: np.ndarray, d: np.ndarray, mm: float,
              length_px: float) -> np.ndarray | None:
    """The last point inside the mask on the bright bone line followed from p in direction d (as
    _trace follows it, the other way); None when the walk leaves the image or does not end."""
    h, w = mask.shape
    pts = [p.astype(float)]
    for _ in range(int(length_px / STEP_PX)):
        q = pts[-1] + d * STEP_PX
        if not (0 <= q[0] < w - 1 and 0 <= q[1] < h - 1):
            return None
        if not mask[int(round(q[1])), int(round(q[0]))]:
            return pts[-1]
        d = _follow_step(bone, pts, q, d, mm)
    return None


def _merged(outlined: list[_Finger], found: list[_Finger], same_px: float) -> list[_Finger]:
    """The outline's fingertips and those the bones gave that are not one of them."""
    out = list(outlined)
    for f in found:
        if all(np.hypot(*(f.tip - g.tip)) >= same_px for g in out):
            out.append(f)
    return out


def _angle_gaps(fingers: list[_Finger]) -> np.ndarray:
    """Angular gaps (rad) round the palm centre of fingers sorted by angle: gaps[k] from k to k + 1."""
    angles = np.array([f.angle for f in fingers])
    return np.diff(np.concatenate([angles, [angles[0] + 2 * np.pi]]))


def _largest_group(fingers: list[_Finger]) -> list[_Finger]:
    """The most fingertips that follow each other round the palm centre less than ISOLATED_RAD apart:
    a bone walked out towards the wrist can end at the film's black margin and pair with the
    outline's forearm corner (train 1516, with the bone tips added), which no longer stand alone."""
    fingers = sorted(fingers, key=lambda f: f.angle)
    cuts = np.flatnonzero(_angle_gaps(fingers) > ISOLATED_RAD)
    if len(cuts) < 2:
        return fingers
    groups = [[fingers[(a + 1 + k) % len(fingers)] for k in range((b - a) % len(fingers))]
              for a, b in zip(cuts, np.roll(cuts, -1))]
    return max(groups, key=len)


def _order_fingers(fingers: list[_Finger]) -> list[_Finger]:
    """Tips in order around the palm centre, starting after the widest angular gap (the wrist's
    side), so the ends of the order are the outer fingers."""
    fingers = sorted(fingers, key=lambda f: f.angle)
    while len(fingers) > 1:
        gaps = _angle_gaps(fingers)
        lonely = np.flatnonzero((gaps > ISOLATED_RAD) & (np.roll(gaps, 1) > ISOLATED_RAD))
        if not len(lonely):
            break
        fingers.pop(int(lonely[0]))  # the forearm's cut end, far from every finger
    start = (int(np.argmax(_angle_gaps(fingers))) + 1) % len(fingers)
    return fingers[start:] + fingers[:start]


# Finger bases (axis points 1.2 palm radii from the palm centre) of neighbouring fingers 2-5 lie
# 0.3-0.66 radii apart on the train and val hands, the thumb's 0.85-1.4 from the index finger's; a
# finger missing between two (train 4476: the ring finger's tip hidden by the little finger's) leaves
# 0.79, so a gap above the midpoint is one.
BASE_GAP_R = 0.5
ISOLATED_RAD = np.radians(60.0)  # seen from the palm centre, neighbouring fingertips are < 60 deg apart
MISSING_GAP_R = 0.72
THUMB_MISSING_INDEX_R = 2.3
# The thumb's base lies 0.85-1.4 palm radii from the index finger's on the train and val hands; with the
# thumb cut off by the film's edge (those hands cropped beside the thumb, between MCP1 and IP1) the end
# fingers' gaps are 0.70 at most, 0.79-0.81 where a hidden ring finger leaves the little finger's apart
# (train 4476). Below this neither end finger of a hand showing fewer than five is a thumb: the little
# finger would otherwise be named the thumb and every finger misnamed. Five fingers always include it.
THUMB_GAP_R = 0.82


def _name_fingers(ordered: list[_Finger], bases: np.ndarray, centre: np.ndarray,
                  radius: float) -> tuple[str, float]:
    """Digits 1-5 (set on the fingers), the hand's side ("L" or "R") and how clearly the thumb
    lies to that side (the sine of its angle from the hand's long axis).

    The thumb is the end finger whose base is farther from its neighbour's (the first web space
    is the widest); the others are counted from it, a base gap of about two finger widths being a
    missing finger (never a name given twice). PA view, fingers up: a left hand shows its thumb
    on the image's right. When fewer than five fingers show and neither end finger's base gap is a
    thumb's (THUMB_GAP_R), the thumb is not there (cut by the film's edge) and the end finger whose
    tip lies farther from the palm centre is the index finger (it is longer than the little
    finger); the side is then the index finger's."""
    gaps = np.linalg.norm(np.diff(bases, axis=0), axis=1) / radius
    has_thumb = len(ordered) == 5 or max(gaps[0], gaps[-1]) >= THUMB_GAP_R
    reach = [np.linalg.norm(f.tip - centre) for f in (ordered[0], ordered[-1])]
    if (gaps[-1] > gaps[0]) if has_thumb else (reach[1] > reach[0]):
        ordered.reverse()
        bases = bases[::-1]
        gaps = gaps[::-1]
    ordered[0].digit = 1 if has_thumb else 2
    digit = ordered[0].digit + 1 + (has_thumb and gaps[0] > THUMB_MISSING_INDEX_R)
    # the thumb's own gap is not a missing finger's (a missing index finger is THUMB_MISSING_INDEX_R's)
    for f, gap in zip(ordered[1:], np.concatenate([[0.0], gaps[1:]]) if has_thumb else gaps):
        if gap > MISSING_GAP_R:
            digit += int(max(1, round(gap / BASE_GAP_R) - 1))
        f.digit = digit
        digit += 1
    others = [f.tip - centre for f in ordered[1:]]
    up = np.mean([v / np.linalg.norm(v) for v in others], axis=0)
    right = np.array([-up[1], up[0]]) / (np.linalg.norm(up) + 1e-9)
    thumb = ordered[0].tip - centre
    lean = float(np.dot(thumb, right)) / (np.linalg.norm(thumb) + 1e-9)
    return ("L" if lean > 0 else "R"), abs(lean)


def _base(axis: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """The first axis point within 1.2 palm radii of the palm centre (the tip when it already is)."""
    inside = np.flatnonzero(np.hypot(*(axis - centre).T) <= 1.2 * radius)
    return axis[int(inside[0]) if len(inside) else -1]


STEP_PX = 2.0  # tracing step (0.8 mm at the working resolution)
# Every finger's trace on the train and val hands comes within 1.0 palm radii of the palm centre (the
# generated hands' within 1.18); one that stops farther out follows a finger cut by the film's edge
# (train 2859: the little finger, stopped 2.4 radii out, whose far base made it look like the thumb).
# Such a finger is left out: its joints cannot be placed by the finger's proportions, and its base,
# counted among the others, would misname them.
CUT_TRACE_R = 1.5


def _follow_step(bone: np.ndarray, pts: list, p: np.ndarray, d: np.ndarray, mm: float) -> np.ndarray:
    """One step along the bright bone line: p (the last point moved on along d) re-centred across
    the line and appended to pts; returns the direction smoothed over the last three steps."""
    half = 5.0 / mm
    u = np.arange(-half, half + 0.5, 0.5)
    prior = np.exp(-0.5 * (u / (0.6 * half)) ** 2)
    across = np.array([-d[1], d[0]])
    vals = ndimage.map_coordinates(bone, [p[1] + u * across[1], p[0] + u * across[0]], order=1,
                                   cval=0.0)  # dark beyond the edge: a finger cut by it is not followed along it
    pts.append(p + across * u[int(np.argmax(vals * prior))] * 0.5)  # damped: the line is followed, not jumped to
    if len(pts) > 3:
        dn = pts[-1] - pts[-4]
        dn /= np.linalg.norm(dn)
        d = 0.6 * d + 0.4 * dn
        d /= np.linalg.norm(d)
    return d


def _trace(bone: np.ndarray, tip: np.ndarray, centre: np.ndarray, radius: float, mm: float,
           length_px: float) -> np.ndarray:
    """Points along the finger's axis from the tip, 1 px apart, following the bright bone line."""
    d = (centre - tip) / np.linalg.norm(centre - tip)
    pts = [tip.astype(float).copy()]
    h, w = bone.shape
    for _ in range(int(length_px / STEP_PX)):
        p = pts[-1] + d * STEP_PX
        if not (0 <= p[0] < w and 0 <= p[1] < h) or np.hypot(*(p - centre)) < 0.3 * radius:
            break  # past the MCP joints: the palm centre lies among the metacarpals
        d = _follow_step(bone, pts, p, d, mm)
    pts = np.array(pts)
    if len(pts) < 2:
        return pts
    seg = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    t = np.arange(0, seg[-1], 1.0)  # 1 px apart, as the profile and the joint positions expect
    return np.column_stack([np.interp(t, seg, pts[:, 0]), np.interp(t, seg, pts[:, 1])])


def _profile(image: np.ndarray, axis: np.ndarray, mm: float) -> np.ndarray:
    """Mean intensity across a 3 mm band centred on the axis, per axis point."""
    t = np.gradient(axis, axis=0)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
    across = np.column_stack([-t[:, 1], t[:, 0]])
    offsets = np.arange(-BAND_MM, BAND_MM + 0.01, 0.25) / mm
    xs = axis[:, 0, None] + offsets[None] * across[:, 0, None]
    ys = axis[:, 1, None] + offsets[None] * across[:, 1, None]
    return ndimage.map_coordinates(image, [ys, xs], order=1, mode="nearest").mean(axis=1)


# Tip-to-MCP length per digit in palm radii (training hands: spread 0.14-0.2 radii), and its
# relative tolerance.
TIP_TO_MCP_R = {1: 1.18, 2: 1.84, 3: 2.09, 4: 2.01, 5: 1.56}
TIP_TO_MCP_SD = 0.12
BAND_MM = 1.5  # half-width of the band the joint profile averages (narrower: trabecular noise)


def _valleys(profile: np.ndarray, mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions (axis index, sub-px) and depths of the dark valleys of a profile."""
    q = ndimage.gaussian_filter1d(profile, 0.4 / mm) - ndimage.gaussian_filter1d(profile, 3.0 / mm)
    i = np.flatnonzero((q[1:-1] < q[:-2]) & (q[1:-1] <= q[2:])) + 1
    i = i[q[i] < 0]
    den = q[i - 1] - 2 * q[i] + q[i + 1]
    sub = i + np.where(den > 0, 0.5 * (q[i - 1] - q[i + 1]) / np.where(den > 0, den, 1), 0)
    return sub, -q[i]


def _choose_joints(finger: _Finger, profile: np.ndarray, radius: float, mm: float, cut: bool = False):
    """Valleys named as the finger's joints: [(name, axis position, depth / the profile's median valley
    depth)], the combination that best fits the finger's tip-to-joint proportions and its length.

    cut: a finger 2-5 whose outline ends at the film's edge (EDGE_PX): its tip, and maybe its distal
    joints, lie beyond it, so the axis starts an unknown length (0 to the whole tip-to-MCP length,
    1 px steps) short of the tip. Each combination is then scored at its best such length, with its
    first 0-1 joints (DIP, then PIP) left out when their expected place is beyond the edge (a left-out
    joint adds nothing to the depth score). Otherwise the tip-to-joint proportions, counted from the
    edge, name each joint after the next distal one's (fingers cut between DIP and PIP: 65 misnamed,
    18 invented on the train and val hands cropped so). A valley within EDGE_VALLEY_MM of the edge is
    then not a joint space."""
    pos, depth = _valleys(profile, mm)
    if len(pos) == 0:
        return []
    scale = float(np.median(depth)) + 1e-6
    if cut:
        beyond = pos * mm >= EDGE_VALLEY_MM
        pos, depth = pos[beyond], depth[beyond]
    fr = JOINT_FRACTIONS[finger.digit]
    names = [nm for nm, _ in fr] + [f"MCP{finger.digit}"]
    fractions = np.array([f for _, f in fr])
    expect = TIP_TO_MCP_R[finger.digit] * radius
    short = np.arange(0.0, expect, 1.0) if cut else np.zeros(1)  # the length beyond the edge, px
    best, best_score = None, -np.inf
    for left_out in range(len(fr) if cut else 1):
        # every combination at once (rows), at every length beyond the edge (columns)
        combos = np.array(list(itertools.combinations(range(len(pos)), len(fr) + 1 - left_out)), dtype=int)
        if combos.size == 0:
            continue  # fewer valleys than these joints
        s = pos[combos]
        length = s[:, -1:] + short
        score = (np.sum(np.log(depth[combos] / scale), axis=1)[:, None]
                 - 0.5 * ((length / expect - 1.0) / TIP_TO_MCP_SD) ** 2)
        for j, f in enumerate(fractions[left_out:]):
            score = score - 0.5 * (((s[:, j:j + 1] + short) / length - f) / FRACTION_SD[finger.digit]) ** 2
        for f in fractions[:left_out]:
            score = np.where(f * length < short, score, -np.inf)
        c, _ = np.unravel_index(int(np.argmax(score)), score.shape)  # the first best, as combinations are ordered
        if score[c].max() > best_score:
            best, best_score = (left_out, tuple(combos[c])), float(score[c].max())
    if best is None:
        return []  # fewer valleys than the finger has joints
    left_out, combo = best
    return [(nm, float(pos[k]), float(depth[k] / scale)) for nm, k in zip(names[left_out:], combo)]


# A finger's outline tip this close to the image's border (work px) is the film's edge, not its tip
# (train and val hands as filmed: one of 194 fingers 2-5 there, val 4375's little finger; 13 of 45
# thumbs, which are not chosen as cut: 10 of their IP1 found, and a thumb's own proportions spread 3x more).
EDGE_PX = 1.5
# A joint space shows bone beyond it: on those cropped hands, of the DIPs chosen on valleys within
# 1.5 mm of the edge 5 were beyond it and 3 misplaced, none found (from 1.5 mm on, 3 of 7 found).
EDGE_VALLEY_MM = 1.5


def _at_edge(tip: np.ndarray, shape: tuple) -> bool:
    h, w = shape
    return min(tip[0], tip[1], w - 1 - tip[0], h - 1 - tip[1]) < EDGE_PX


def _centred(bone: np.ndarray, axis: np.ndarray, s: float, mm: float) -> np.ndarray:
    """The axis point at s moved across the finger onto the bones' centre line (the traced axis
    lags on curved fingers)."""
    p = _at(axis, s)
    k = int(np.clip(round(s), 1, len(axis) - 2))
    t = axis[min(k + 3, len(axis) - 1)] - axis[max(k - 3, 0)]
    return p + np.array([-t[1], t[0]]) / (np.linalg.norm(t) + 1e-9) * centre_offset(bone, p, t, mm)


def centre_offset(bone: np.ndarray, p: np.ndarray, t: np.ndarray, mm: float, reach_mm: float = 6.0) -> float:
    """How far (px, sub-px, along (-t[1], t[0])) the bones' centre line lies from p across the
    direction t: the joint space itself has no bone to centre on, so the midpoint of the bone's
    half-height edges (not a plateau's peak) is found on lines across (reach_mm to either side of p)
    1.5-4 mm to either side along t, and their median taken; 0 where no line finds both edges."""
    t = np.asarray(t, float) / (np.linalg.norm(t) + 1e-9)
    across = np.array([-t[1], t[0]])
    u = np.arange(-reach_mm, reach_mm + 0.01, 0.25) / mm
    offsets = []
    for along in (-4.0, -2.5, -1.5, 1.5, 2.5, 4.0):
        q = p + t * along / mm
        vals = ndimage.map_coordinates(bone, [q[1] + u * across[1], q[0] + u * across[0]], order=1, cval=0.0)
        i = int(np.argmax(vals))
        half = 0.5 * (vals[i] + min(vals[:i + 1].min(), vals[i:].min()))
        left = np.flatnonzero(vals[:i] < half)
        right = np.flatnonzero(vals[i:] < half)
        if len(left) and len(right):
            offsets.append(0.5 * (u[left[-1]] + u[i + right[0]]))
    return float(np.median(offsets)) if offsets else 0.0


def _at(axis: np.ndarray, s: float) -> np.ndarray:
    k = int(np.clip(np.floor(s), 0, len(axis) - 2))
    t = s - k
    return axis[k] * (1 - t) + axis[k + 1] * t


@dataclass
class _Hand:
    """One hand's joints before refinement, in work px: [(name, (x, y), distal unit vector, valley depth
    ratio)];
    radius: the palm's (work px); mm: the work pixel size."""

    side: str
    lean: float
    radius: float
    mm: float
    joints: list


@dataclass
class _Work:
    """The film as the steps read it: reduced (factor), inside its exposed field (its box's (row, column)
    offset in work px), its range normalised to [0, 1] (small), smoothed at bone scale (bone) and finely
    (fine); mm: the work pixel size. Made once per film; every reading of its hand masks shares it."""

    small: np.ndarray
    bone: np.ndarray
    fine: np.ndarray
    mm: float
    factor: int
    offset: tuple


def _work(pixels: np.ndarray, spacing_mm: float) -> _Work:
    image = np.asarray(pixels, dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < 32:
        raise InputError(f"a radiograph must be a 2-D image of at least 32 x 32 px, got shape {image.shape}")
    if not (spacing_mm and np.isfinite(spacing_mm) and 0.01 <= spacing_mm <= 2.0):
        raise InputError(f"spacing must be between 0.01 and 2 mm per pixel, got {spacing_mm}")
    if not np.all(np.isfinite(image)):
        raise InputError("the image has pixels that are not finite numbers")
    small, factor = _reduce(image, spacing_mm)  # reduced first: all that follows is on ~0.2 Mpx
    mm = spacing_mm * factor
    small, offset = exposed(small, mm)  # a shuttered film: its exposed field only
    lo, hi = np.percentile(small, [0.5, 99.5])
    if hi - lo <= 0:
        raise InputError("the image is flat: no hand to find")
    small = np.clip((small - lo) / (hi - lo), 0, 1).astype(np.float32)
    return _Work(small, ndimage.gaussian_filter(small, 1.5 / mm), ndimage.gaussian_filter(small, 0.3 / mm), mm,
                 factor, offset)


def _hands(pixels: np.ndarray, spacing_mm: float):
    """The work image (finely smoothed; the exposed field's box), its pixel size (mm), the reduction
    factor, the box's (row, column) offset in work px and the hands found."""
    work = _work(pixels, spacing_mm)
    return work.fine, work.mm, work.factor, work.offset, _found_hands(work)


def _found_hands(work: _Work, mask_gamma: float = 1.0) -> list:
    """The hands of the film, their masks thresholded at the tone curve mask_gamma (a power of the [0, 1]
    image); InputError when there is none."""
    small, bone, fine, mm = work.small, work.bone, work.fine, work.mm
    hands = []
    for mask in _hand_masks(small ** mask_gamma if mask_gamma != 1.0 else small, mm):
        found = _hand_fingers(small, bone, mask, mm)
        # two hands that touch (a finger of each) make one outline of 6-10 tips: cut between the palms
        parts = [found] if found else [_hand_fingers(small, bone, half, mm) for half in _touching_halves(mask)]
        hands += [h for h in (_traced_hand(fine, bone, small.shape, mm, *f) for f in parts if f) if h]
    if not hands:
        raise InputError("no hand found: no outline with three to five fingers")
    return hands


def to_work_px(xy, factor: int, offset: tuple[int, int]) -> np.ndarray:
    """A point (x, y) in input px in the work image's px (`_hands`' factor and (row, column) offset)."""
    return (np.asarray(xy, float) + 0.5) / factor - 0.5 - np.array([offset[1], offset[0]], float)


def _hand_fingers(small: np.ndarray, bone: np.ndarray, mask: np.ndarray, mm: float):
    """(fingers in order round the palm, palm centre, palm radius) of one hand's mask, or None when its
    outline does not show three to five fingertips."""
    outlined, centre, radius = _fingertips(mask, mm)
    fingers = _order_fingers(outlined) if outlined else []
    if len(fingers) < 3:  # closed fingers touch: the outline has no valleys between them
        merged = _merged(outlined, _bone_fingertips(small, bone, mask, centre, radius, mm), SAME_TIP_R * radius)
        fingers = _order_fingers(_largest_group(merged)) if merged else []
    # a hand shows three to five fingertips; more is an outline that is not one
    return (fingers, centre, radius) if 3 <= len(fingers) <= 5 else None


# Two palms on one mask lie at least this many palm radii apart (side by side, fingers touching), and the
# second palm's depth in the mask is at least this share of the first's.
TWO_PALMS_APART_R = 2.0
TWO_PALMS_DEPTH = 0.7


def _touching_halves(mask: np.ndarray) -> list[np.ndarray]:
    """A mask holding two hands that touch, cut by the line halfway between their palm centres (the two
    deepest points of the mask, far apart): the two halves, each the part joined to its palm; [] when
    the mask has no second palm."""
    dist = ndimage.distance_transform_edt(mask)
    yy, xx = np.indices(mask.shape)
    c1 = np.unravel_index(int(np.argmax(dist)), dist.shape)
    r1 = float(dist[c1])
    far = np.hypot(yy - c1[0], xx - c1[1]) > TWO_PALMS_APART_R * r1
    c2 = np.unravel_index(int(np.argmax(np.where(far, dist, 0.0))), dist.shape)
    if dist[c2] < TWO_PALMS_DEPTH * r1:
        return []
    nearer_first = (yy - c1[0]) ** 2 + (xx - c1[1]) ** 2 < (yy - c2[0]) ** 2 + (xx - c2[1]) ** 2
    halves = []
    for side, centre in ((nearer_first, c1), (~nearer_first, c2)):
        labels, _ = ndimage.label(mask & side)
        halves.append(labels == labels[centre])
    return halves


def _traced_hand(fine: np.ndarray, bone: np.ndarray, shape: tuple, mm: float, fingers: list, centre: np.ndarray,
                 radius: float) -> _Hand | None:
    """The hand's fingers traced and named and their joints chosen (None with fewer than three traced)."""
    for f in fingers:
        f.axis = _trace(bone, f.tip, centre, radius, mm, 1.4 * max(TIP_TO_MCP_R.values()) * radius)
    fingers = [f for f in fingers if np.hypot(*(f.axis - centre).T).min() <= CUT_TRACE_R * radius]
    if len(fingers) < 3:
        return None
    side, lean = _name_fingers(fingers, np.array([_base(f.axis, centre, radius) for f in fingers]), centre, radius)
    found = []
    for f in fingers:
        if f.digit > 5:
            continue
        reach = int(1.4 * TIP_TO_MCP_R[f.digit] * radius)
        axis = f.axis[:reach]
        cut = f.digit > 1 and _at_edge(f.tip, shape)
        for name, s, depth in _choose_joints(f, _profile(fine, axis, mm), radius, mm, cut):
            found.append((name, _centred(fine, axis, s, mm), _distal(axis, s), depth))
    return _Hand(side, lean, radius, mm, found)


def _distal(axis: np.ndarray, s: float) -> np.ndarray:
    """The unit vector along the traced axis at s, pointing towards the fingertip."""
    k = int(np.clip(round(s), 0, len(axis) - 1))
    t = axis[max(k - 4, 0)] - axis[min(k + 4, len(axis) - 1)]
    return t / (np.linalg.norm(t) + 1e-9)


# A hand whose joints' confidences sum below this (half of 14) is doubtful enough to look at its negative too.
DOUBTFUL_EXPECTED = 7.0
# The hand mask's threshold is tone-bound: on a film processed darker (or lighter) it falls inside the thin
# fingertips' soft tissue (or outside it), the outline ends at the DIPs and the finger proportions fail. A hand
# with fewer than TONE_DOUBT joints expected right is read again with its mask thresholded at these tone curves
# (nearest first), and a reading that is not doubtful itself (>= DOUBTFUL_EXPECTED) and expected to get
# TONE_GAIN more joints right is kept, unless it shows a thumb the first did not: on val hands cropped beside
# the thumb, two readings at other tones traced the thumb's stub and named its MCP joint IP1 at confidence 0.8.
# Chosen on the train and val hands as filmed, with their tone raised to the power 0.8 / 1.25 / 1.6, and cut by
# the film's edge (README, joint detection).
MASK_GAMMAS = (0.7, 1.4, 0.5, 2.0)
TONE_DOUBT = 11.0  # of the 14 joints of a hand
TONE_GAIN = 1.5


def detect_joints(pixels: np.ndarray, spacing_mm: float, names=None) -> list[DetectedJoint]:
    """The finger joints of the one or two hands on a PA radiograph (see the module docstring), each
    with its confidence: the estimated probability that it lies within 2 mm of the joint's centre
    and is named right (jsnreg.detect_confidence, from the signals the refinement leaves).

    pixels: (rows, cols) array, bone bright; spacing_mm: mm per pixel (a nominal value will do);
    names: only these joints (e.g. ["MCP2", "PIP2"]; with two hands "L-MCP2" or the bare name for
    both). Raises InputError when the image is not a hand, or when it looks stored inverted (bone
    dark: its negative shows a hand, and a much clearer one than the image)."""
    work = _work(pixels, spacing_mm)
    joints, refusal = _reading(work)
    for gamma in MASK_GAMMAS:
        if _expected(joints) >= TONE_DOUBT * (len({j.side for j in joints}) or 1):
            break
        other = _reading(work, gamma)
        if _expected(other[0]) >= max(_expected(joints) + TONE_GAIN, DOUBTFUL_EXPECTED) \
                and not _adds_a_thumb(joints, other[0]):
            joints, refusal = other
    expected = _expected(joints)
    if expected < DOUBTFUL_EXPECTED:
        image = np.asarray(pixels, dtype=np.float32)
        negative = _expected(_reading(_work(float(np.max(image)) - image, spacing_mm))[0])
        if negative >= DOUBTFUL_EXPECTED and negative >= 2 * expected:
            raise InputError(f"the image looks stored inverted (bone dark): its negative shows a hand with "
                             f"{negative:.0f} joints likely right, the image {expected:.0f}; invert it before measuring")
    if refusal is not None:
        raise refusal
    return [j for j in joints if names is None or j.name in names or j.name.split("-")[-1] in names]


def _reading(work: _Work, mask_gamma: float = 1.0) -> tuple[list[DetectedJoint], InputError | None]:
    """The joints found with the hand masks thresholded at one tone curve, with their confidences, or
    ([], the refusal)."""
    from .detect_confidence import joint_confidence

    try:
        found = _detections(work, mask_gamma=mask_gamma)
    except InputError as exc:
        return [], exc
    return [DetectedJoint(name, x, y, joint_confidence(signals), side) for name, x, y, signals, side in found], None


def _adds_a_thumb(joints: list[DetectedJoint], other: list[DetectedJoint]) -> bool:
    """Whether `other` shows a thumb (IP1, MCP1) where `joints`, a hand found, shows none."""
    def thumb(found):
        return any(j.name.endswith("1") for j in found)
    return bool(joints) and not thumb(joints) and thumb(other)


def _expected(joints: list[DetectedJoint]) -> float:
    """How many of the joints are expected right: the sum of their confidences."""
    return sum(j.confidence for j in joints)


def detections(pixels: np.ndarray, spacing_mm: float, passes=None) -> list[tuple]:
    """detect_joints' joints before their confidence, all of them, at the film's own tone: [(name, x, y,
    signals, side)] (px of the input; signals: jsnreg.detect_refine._signals), in detect_joints' order.
    passes: the refinement's filters (default the shipped ones; the confidence's fit uses filters learned
    without the hand)."""
    return _detections(_work(pixels, spacing_mm), passes)


def _detections(work: _Work, passes=None, mask_gamma: float = 1.0) -> list[tuple]:
    """detections on a prepared film, its hand masks thresholded at the tone curve mask_gamma (_found_hands)."""
    from .detect_refine import refine

    hands = _found_hands(work, mask_gamma)
    fine, factor, (r0, c0) = work.fine, work.factor, work.offset
    two = len(hands) == 2
    if two and hands[0].side == hands[1].side:  # one film, two hands: the less clear thumb is the other side
        weaker = min(hands, key=lambda h: h.lean)
        weaker.side = "R" if weaker.side == "L" else "L"
    out = []
    for hand in hands:
        for name, (x, y), signals in refine(fine, hand, passes):
            out.append((f"{hand.side}-{name}" if two else name, float((x + c0 + 0.5) * factor - 0.5),
                        float((y + r0 + 0.5) * factor - 0.5), signals, hand.side))
    order = {n: k for k, n in enumerate(STANDARD_JOINTS)}
    out.sort(key=lambda j: (j[0][:2] if two else "", order.get(j[0].split("-")[-1], 99)))
    return out
