"""The film's exposed field: the part of a radiograph the X-rays reached.

Where the collimator's shutters (or an unexposed frame round a scanned film) leave a bright, flat
margin along the image's edge, that margin is the brightest thing on the film and carries no
anatomy. Left in, it joins the hand's mask (the hand is then one outline with the whole margin) and
the film's edge rules look at the wrong edge. `exposed(small, mm)` finds it on the detector's
reduced image and returns the film cut to the field, what is left of the margin inside it filled
with its nearest field pixels' values: joints are then found as on a film whose edge is the
field's (a finger reaching the shutter is cut by it). Films without such a margin (every annotated
real hand here) are returned as they are.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FLAT_MM = 3.0  # the window the film's local flatness is read over
FLAT_SD = 0.02  # local SD (share of the film's 0.5-99.5 percentile range) below which it is flat
BRIGHT = 0.85  # a margin is at least this bright (same share): no X-rays reached it
LEVEL_TOL = 0.05  # a margin's pixels lie within this (same share) of its level along the image's edge
MIN_EDGE_MM = 20.0  # a margin runs at least this far along the image's edge (a marker or the forearm less)
PENUMBRA_MM = 1.5  # the shutter's edge blurs over this much: taken with the margin


def unexposed(small: np.ndarray, mm: float) -> np.ndarray | None:
    """Mask of the unexposed margin of a reduced film (`mm` per pixel): the bright, flat regions
    that reach the image's edge along at least MIN_EDGE_MM; None when there is none."""
    lo, hi = np.percentile(small, [0.5, 99.5])
    if hi <= lo:
        return None
    norm = (small.astype(np.float64) - lo) / (hi - lo)
    size = max(3, int(round(FLAT_MM / mm)) | 1)
    mean = ndimage.uniform_filter(norm, size, mode="nearest")
    sd = np.sqrt(np.clip(ndimage.uniform_filter(norm * norm, size, mode="nearest") - mean * mean, 0, None))
    edge = np.zeros(small.shape, bool)
    edge[0], edge[-1], edge[:, 0], edge[:, -1] = True, True, True, True
    flat = sd < FLAT_SD
    bright = flat & edge & (mean >= BRIGHT)
    if not bright.any():
        return None
    # one level, the edge's flat bright one: a forearm or a bone as bright as that is rare, and one
    # merely bright joins the margin only where it touches it (it would be cut off the hand)
    level = float(np.median(mean[bright]))
    labels, n = ndimage.label(flat & (np.abs(mean - level) <= LEVEL_TOL))
    if n == 0:
        return None
    along = np.bincount(labels[edge], minlength=n + 1)[1:] * mm  # mm of the image's edge each region holds
    keep = np.flatnonzero(along >= MIN_EDGE_MM) + 1
    if keep.size == 0:
        return None
    # the flatness window reaches half its width beyond what is flat: grow back by it and the penumbra
    grow = int(round(PENUMBRA_MM / mm)) + size // 2
    return ndimage.binary_dilation(np.isin(labels, keep), iterations=grow)


def exposed(small: np.ndarray, mm: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The reduced film cut to its exposed field, what is left of the unexposed margin inside it
    given its nearest field pixel's value, and the cut's (row, column) offset in `small`.
    Unchanged, offset (0, 0), when the film shows no unexposed margin.

    Each side is cut at the margin's median depth along it (a shutter's edge is straight): cut at
    its least depth instead, where a finger reaches the shutter, the margin beside it would be
    filled dark and the finger's stub would stand out of the field like a fingertip."""
    margin = unexposed(small, mm)
    if margin is None or margin.all():
        return small, (0, 0)
    r0, c0 = _depth(margin), _depth(margin.T)
    r1, c1 = margin.shape[0] - _depth(margin[::-1]), margin.shape[1] - _depth(margin[:, ::-1].T)
    if r1 - r0 < 2 or c1 - c0 < 2:
        return small, (0, 0)
    field = small[r0:r1, c0:c1].copy()
    inside = margin[r0:r1, c0:c1]
    if inside.any():  # what is left of it (a tilted shutter, a corner) takes its nearest field pixel's value
        _, (ny, nx) = ndimage.distance_transform_edt(inside, return_indices=True)
        field = field[ny, nx]
    return field, (int(r0), int(c0))


def _depth(margin: np.ndarray) -> int:
    """The margin's median depth (rows) from the top edge, over the columns (0 where it covers less
    than half of that edge)."""
    run = np.argmin(np.vstack([margin, np.zeros((1, margin.shape[1]), bool)]), axis=0)  # first unmasked row
    return int(np.median(run))
