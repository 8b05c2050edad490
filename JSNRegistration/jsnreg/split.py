"""Upper/lower split of a joint ROI along the joint space ("gully detection").

The joint space is a dark valley between two bright bones running roughly left to right. A valley
depth map scores how much darker each pixel is than the bone above it and the bone below it; a
minimal-cost path through it, one row per column, is the gully. The path is found by dynamic
programming (exact, O(rows x cols)), with a small pull towards the ROI's middle row so a dark
region far from the joint (soft tissue, background) cannot win.

The darkest row of a gap is not its middle (blur and the two cortices make the profile lopsided),
and the registration wants the middle: each bone keeps its own articular surface. So the split is
then moved, column by column, to halfway between the two surfaces: the steepest fall of intensity
above the gully (the upper bone's edge) and the steepest rise below it (the lower bone's).
On 100 generated joints this halved the split's distance from the true middle (2.6 -> 1.4 px);
the whole method's JSN error SD went from 0.13 to 0.08 px and its mismatches from 3 % to none.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# The runner-up joint lines keep this far (rows) from the split. At 3 the runner-up often ran along
# the split's own gap, 4 rows off (a physis taken for the split, the joint space left unseen).
RUNNER_UP_EXCLUDE_PX = 6
SAME_LINE_PX = 1.5  # a runner-up this close to the split (median, rows) is the same joint line
# A runner-up shallower than this share of the split's valley depth is plain bone (a drawn bone's is
# 0.01; on real val ROIs 13 of 2400 runner-up lines were, none of them one that flagged a result).
RUNNER_UP_MIN_DEPTH = 0.05
VALLEY_SMOOTH_PX = 1.5  # Gaussian SD of the copy the valley depth is read on


def valley_depth(roi: np.ndarray, reach_px: int, smooth_px: float = VALLEY_SMOOTH_PX,
                 smoothed: np.ndarray | None = None) -> np.ndarray:
    """How much darker each pixel is than the brightest pixels within `reach_px` above AND below.

    depth(y, x) = min(max_{1<=d<=reach} I(y - d, x), max_{1<=d<=reach} I(y + d, x)) - I(y, x),
    on the ROI smoothed by a Gaussian of `smooth_px` (`smoothed`, if the caller has it); positive
    inside a horizontal gully.
    """
    img = ndimage.gaussian_filter(np.asarray(roi, dtype=np.float64), smooth_px) if smoothed is None else smoothed
    pad = np.pad(img, ((reach_px, reach_px), (0, 0)), mode="edge")
    rows = img.shape[0]
    # Running maxima over reach_px rows of the padded copy (window k covers rows k - h ..
    # k - h + reach_px - 1): the `reach_px` rows just above row y start at padded row y, those
    # just below at y + reach_px + 1.
    run, h = ndimage.maximum_filter1d(pad, reach_px, axis=0), reach_px // 2
    above, below = run[h:h + rows], run[reach_px + 1 + h:reach_px + 1 + h + rows]
    return np.minimum(above, below) - img


def minimal_path(cost: np.ndarray, max_step: int = 1, step_cost: float = 0.0) -> np.ndarray:
    """Row index per column of the left-to-right path of least summed cost.

    Between neighbouring columns the row changes by at most `max_step`; each row of change
    costs `step_cost` (keeps the path smooth where the valley is faint).
    """
    return banded_paths(cost, [(0, cost.shape[0])], max_step, step_cost)[0][0]


def banded_paths(cost: np.ndarray, bands: list[tuple[int, int]], max_step: int = 1, step_cost: float = 0.0
                 ) -> list[tuple[np.ndarray, float]]:
    """minimal_path ending in each band of rows [start, stop) of `cost`, with its summed cost. Bands
    kept apart by a row of inf cost are separate problems solved in one loop over the columns (the
    loop's numpy calls, not their sizes, set its time); a path whose cost is inf crossed one."""
    rows, cols = cost.shape
    by_col = cost.T.copy()  # each column's costs contiguous, as the loop reads them
    acc = by_col[0].copy()
    back = np.zeros((cols, rows), dtype=np.int64)  # per column, each row's best predecessor
    idx = np.arange(rows)
    penalty = np.abs(np.arange(-max_step, max_step + 1)) * step_cost
    # Row r's candidates are acc[r - max_step .. r + max_step] (inf beyond the ROI): a window view
    # of one padded buffer, made once and refilled per column.
    padded = np.full(rows + 2 * max_step, np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * max_step + 1)
    cand = np.empty(windows.shape)
    for x in range(1, cols):
        padded[max_step:max_step + rows] = acc
        np.add(windows, penalty, out=cand)
        back[x] = step = cand.argmin(axis=1)  # the first of equal ones wins
        acc = cand[idx, step]
        acc += by_col[x]
    back += idx[None, :] - max_step  # window offsets -> rows
    out = []
    for start, stop in bands:
        path = np.empty(cols, dtype=np.int64)
        path[-1] = start + int(np.argmin(acc[start:stop]))
        for x in range(cols - 1, 0, -1):
            path[x - 1] = back[x, path[x]]
        out.append((path, float(acc[path[-1]])))
    return out


def split_rows(roi: np.ndarray, reach_frac: float = 0.2, centre_weight: float = 0.5,
               pull_half_px: float | None = None) -> np.ndarray:
    """Boundary between the upper and lower bone: one row (float, px) per column of the ROI.

    reach_frac: how far above/below (fraction of the ROI height) a gully must be bounded by bone.
    centre_weight: pull towards the middle row, as a fraction of the ROI's intensity range per
    `pull_half_px` of distance (default half the ROI's longer side: the user centred the ROI on the
    joint, and a wide ROI's joint is not nearer its middle row than a square one's).
    """
    return split_candidates(roi, reach_frac, centre_weight, runner_up=False, pull_half_px=pull_half_px)[0]


def split_candidates(roi: np.ndarray, reach_frac: float = 0.2, centre_weight: float = 0.5,
                     runner_up: bool = True, pull_half_px: float | None = None, smoothed: np.ndarray | None = None
                     ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The split (split_rows) and the runner-up joint lines: on each side of the split, the best
    gully path kept more than RUNNER_UP_EXCLUDE_PX rows from it in every column, moved to its gap's
    middle as the split is. A child's physis beside the joint space is such a line, and which of the
    two the split takes decides which bone the epiphysis between them moves with. One line per side,
    because with the ROI's centre a few mm off the joint the split can take the physis near the
    middle row, and the best line overall is then often another dark line on the far side, not the
    joint space. A line is left out where it ends up in the split's own gap (median distance under
    SAME_LINE_PX), cannot keep to its side, or is no gully (darker than the bone either side by
    less than RUNNER_UP_MIN_DEPTH of the split's depth, on average over the columns: plain bone);
    none are sought unless `runner_up`. smoothed: the ROI smoothed by VALLEY_SMOOTH_PX, if the
    caller has it."""
    roi = np.asarray(roi, dtype=np.float64)
    rows, cols = roi.shape
    reach = max(3, int(round(reach_frac * rows)))
    scale = float(np.ptp(roi)) or 1.0
    centre = (rows - 1) / 2.0
    prior = centre_weight * scale * np.abs(np.arange(rows) - centre)[:, None] / (pull_half_px or max(roi.shape) / 2.0)
    depth = valley_depth(roi, reach, smoothed=smoothed)
    cost = prior - depth
    path = minimal_path(cost, max_step=1, step_cost=0.02 * scale)
    grad = row_gradient(roi)  # all lines' gaps read the same gradient and edge strength
    strong = strong_edge(grad)
    # Boundaries lie between rows: a row at the middle of the gap counts as upper.
    boundary = mid_gap_rows(roi, path, grad=grad, strong=strong) + 0.5
    if not runner_up:
        return boundary, []
    min_depth = RUNNER_UP_MIN_DEPTH * line_depth(depth, boundary)
    split_row = np.clip(np.floor(boundary).astype(int), 0, rows - 1)[None, :]  # the split's last upper row
    row = np.arange(rows)[:, None]
    lines = []
    # Both sides' paths in one search: the side above the split, a row of inf, the side below.
    above, below = (np.where(side, cost, np.inf) for side in (row < split_row - RUNNER_UP_EXCLUDE_PX,
                                                              row > split_row + RUNNER_UP_EXCLUDE_PX))
    stacked = np.vstack([above, np.full((1, cols), np.inf), below])
    for (gully, total), offset in zip(banded_paths(stacked, [(0, rows), (rows + 1, 2 * rows + 1)],
                                                   max_step=1, step_cost=0.02 * scale), (0, rows + 1)):
        if not np.isfinite(total):  # a column without a row on that side
            continue
        line = mid_gap_rows(roi, gully - offset, grad=grad, strong=strong) + 0.5
        if np.median(np.abs(line - boundary)) >= SAME_LINE_PX and line_depth(depth, line) >= min_depth:
            lines.append(line)
    return boundary, lines


def line_depth(depth: np.ndarray, boundary_rows: np.ndarray) -> float:
    """Mean over the columns of the valley depth (valley_depth, < 0 taken as 0) on a line's gap row
    (the last upper row of its boundary)."""
    rows = np.clip(np.floor(boundary_rows).astype(int), 0, depth.shape[0] - 1)
    return float(np.clip(depth[rows, np.arange(depth.shape[1])], 0.0, None).mean())


def row_gradient(roi: np.ndarray) -> np.ndarray:
    """d I / d row of the ROI smoothed by 1 px: where mid_gap_rows finds the bone surfaces."""
    return ndimage.gaussian_filter(np.asarray(roi, np.float64), 1.0, order=(1, 0))


def strong_edge(grad: np.ndarray, min_edge_frac: float = 0.2) -> float:
    """`min_edge_frac` of the ROI's strong edges (99th percentile of its |row_gradient|)."""
    return min_edge_frac * float(np.percentile(np.abs(grad), 99))


def mid_gap_rows(roi: np.ndarray, gully_rows: np.ndarray, reach_frac: float = 0.15,
                 min_edge_frac: float = 0.2, smooth_cols: int = 9, grad: np.ndarray | None = None,
                 strong: float | None = None) -> np.ndarray:
    """Per column, the row halfway between the bone surfaces around the gully (float rows).

    The surfaces are the steepest intensity fall within `reach_frac` of the ROI height above the
    gully row and the steepest rise below it. Where either is fainter than `min_edge_frac` of the
    ROI's strong edges (no bone in that column) the gully row is kept; a running median over
    `smooth_cols` columns removes single-column slips. grad: the ROI's row_gradient, if the
    caller has it, and `strong`, its strong_edge.
    """
    rows, cols = roi.shape
    grad = row_gradient(roi) if grad is None else grad
    strong = strong_edge(grad, min_edge_frac) if strong is None else strong
    reach = max(2, int(round(reach_frac * rows)))
    gully = np.clip(np.asarray(gully_rows, dtype=int), 0, rows - 1)
    offsets = np.arange(reach + 1)
    cols_idx = np.arange(cols)[:, None]
    # Rows above (gully - offsets) and below (gully + offsets) each column's gully, kept inside the ROI.
    up_rows, down_rows = gully[:, None] - offsets, gully[:, None] + offsets
    fall = np.where(up_rows >= 0, -grad[np.clip(up_rows, 0, rows - 1), cols_idx], -np.inf)
    rise = np.where(down_rows < rows, grad[np.clip(down_rows, 0, rows - 1), cols_idx], -np.inf)
    upper_edge = gully - np.argmax(fall, axis=1)
    lower_edge = gully + np.argmax(rise, axis=1)
    found = (fall.max(axis=1) >= strong) & (rise.max(axis=1) >= strong)
    out = np.where(found, 0.5 * (upper_edge + lower_edge), np.asarray(gully_rows, dtype=np.float64))
    return ndimage.median_filter(out, size=smooth_cols, mode="nearest")


def upper_mask_from_rows(shape: tuple[int, int], boundary_rows: np.ndarray) -> np.ndarray:
    """Boolean upper-region mask: True above the per-column boundary row."""
    rows = np.arange(shape[0])[:, None]
    return rows < np.asarray(boundary_rows)[None, :]


def rows_from_upper_mask(mask: np.ndarray) -> np.ndarray:
    """Per-column boundary row of a mask whose upper region is a top band (count of upper pixels)."""
    return np.asarray(mask, dtype=bool).sum(axis=0).astype(np.float64)


def split(roi: np.ndarray) -> np.ndarray:
    """Automatic upper-region mask of a joint ROI (True = upper bone)."""
    return upper_mask_from_rows(roi.shape, split_rows(roi))
