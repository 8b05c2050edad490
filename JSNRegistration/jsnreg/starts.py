"""A start for the refinement that owes nothing to the network: a coarse exhaustive search.

Per bone, on a low-resolution copy of the pair (about SEARCH_SIDE_PX on the ROI's shorter side),
every rotation of a small grid and every whole-pixel shift within reach is scored by the weighted
normalised cross-correlation of the bone's region (invariant to an exposure change, robust enough
to find the basin); the best is refined to sub-pixel by a parabola through its neighbours. The
refinement then starts from this and from the network's estimate, and the lower robust cost wins
(register.py), so the network's mistake is not the method's.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .transforms import BoneMotion, linear_reader, roi_centre

SEARCH_SIDE_PX = 48  # low-resolution shorter side: a bone's outline still shows, the grid is cheap
ROTATIONS_DEG = np.arange(-8.0, 8.1, 4.0)  # finger repositioning plus a bone's own turn (parabola between)
REACH_PX = 12.0  # largest shift searched (px of the full ROI): repositioning plus own motion
MIN_WEIGHT = 0.1


def _grid_factor(shape: tuple[int, int]) -> float:
    return max(1.0, min(shape) / SEARCH_SIDE_PX)


def _low_res_points(shape: tuple[int, int], factor: float, pad: int):
    """Full-resolution (x, y) of a low-resolution grid centred on the ROI centre, `pad` cells
    beyond the ROI on each side; and the grid's (rows, cols) without padding."""
    cx, cy = roi_centre(shape)
    n_rows = int(shape[0] / factor)
    n_cols = int(shape[1] / factor)
    gy = (np.arange(-pad, n_rows + pad) - (n_rows - 1) / 2.0) * factor + cy
    gx = (np.arange(-pad, n_cols + pad) - (n_cols - 1) / 2.0) * factor + cx
    return gx, gy, (n_rows, n_cols)


def _fft_len(n: int) -> int:
    """The smallest length >= n with no prime factor above 7: where an FFT is fast (58 px: a
    factor 29, twice the time of 60)."""
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _parabola(minus: float, mid: float, plus: float) -> float:
    """Offset (-0.5..0.5) of the peak of a parabola through three equally spaced samples."""
    denom = minus - 2 * mid + plus
    return float(np.clip(0.5 * (minus - plus) / denom, -0.5, 0.5)) if denom < 0 else 0.0


def search_bones(fixed: np.ndarray, moving: np.ndarray, regions: list[np.ndarray]) -> list[BoneMotion]:
    """Each bone's motion (fixed -> moving about the ROI centre, scale 1) by exhaustive search.

    regions: per bone weights in [0, 1] on the fixed grid; a region too small to search gets
    the identity.
    """
    shape = fixed.shape
    factor = _grid_factor(shape)
    reach = int(np.ceil(REACH_PX / factor))
    sigma = 0.5 * factor
    f_s = ndimage.gaussian_filter(np.asarray(fixed, np.float64), sigma)
    m_s = ndimage.gaussian_filter(np.asarray(moving, np.float64), sigma)
    gx, gy, (n_rows, n_cols) = _low_res_points(shape, factor, 0)
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    f_low = ndimage.map_coordinates(f_s, [yy, xx], order=1, mode="nearest")
    px, py = _low_res_points(shape, factor, reach)[:2]
    pyy, pxx = np.meshgrid(py, px, indexing="ij")
    cx, cy = roi_centre(shape)
    # The rotated moving image, sampled on the padded grid (its edge repeated beyond the ROI);
    # a shift is then an index offset. All rotations in one read and one batch of transforms
    # (the same numbers as one by one).
    t = np.radians(ROTATIONS_DEG)[:, None, None]
    qx = cx + np.cos(t) * (pxx - cx) - np.sin(t) * (pyy - cy)
    qy = cy + np.sin(t) * (pxx - cx) + np.cos(t) * (pyy - cy)
    m_pad = linear_reader(qx.ravel(), qy.ravel(), shape)(m_s).reshape(qx.shape)
    # Transforms zero-padded to a fast length: the kernel (the unpadded grid) at an offset up to
    # 2 reach still ends within the padded image, so nothing wraps round.
    fft_shape = tuple(_fft_len(n) for n in pxx.shape)
    m_spec, m2_spec = np.fft.rfft2(m_pad, s=fft_shape), np.fft.rfft2(m_pad ** 2, s=fft_shape)  # (rotation, row, col)
    n_off = 2 * reach + 1

    def correlate(spectrum: np.ndarray, kernel_spectrum: np.ndarray) -> np.ndarray:
        """sum_p kernel(p) image(p + offset) for every offset 0..2 reach (no wrap-around), per rotation."""
        return np.fft.irfft2(spectrum * np.conj(kernel_spectrum), s=fft_shape)[:, :n_off, :n_off]

    offsets = np.arange(-reach, reach + 1)
    out = []
    for region in regions:
        w = ndimage.map_coordinates(np.asarray(region, np.float64), [yy, xx], order=1)
        w = np.where(w >= MIN_WEIGHT, w, 0.0)
        if np.count_nonzero(w) < 10:
            out.append(BoneMotion())
            continue
        fc = (f_low - np.sum(w * f_low) / w.sum()) * w
        var_f = np.sum(fc * (f_low - np.sum(w * f_low) / w.sum()))
        # Weighted NCC for every shift at once: three correlations of the padded moving image.
        k_fc = np.fft.rfft2(fc, s=fft_shape)
        k_w = np.fft.rfft2(w, s=fft_shape)
        num = correlate(m_spec, k_fc)
        s1 = correlate(m_spec, k_w)
        s2 = correlate(m2_spec, k_w)
        var_m = np.maximum(s2 - s1 ** 2 / w.sum(), 1e-12)
        scores = num / np.sqrt(var_f * var_m)
        a, i, j = np.unravel_index(np.argmax(scores), scores.shape)
        sub = lambda arr, k: _parabola(arr[k - 1], arr[k], arr[k + 1]) if 0 < k < len(arr) - 1 else 0.0  # noqa: E731
        da = sub(scores[:, i, j], a)
        di = sub(scores[a, :, j], i)
        dj = sub(scores[a, i, :], j)
        theta = np.radians(ROTATIONS_DEG[a] + da * (ROTATIONS_DEG[1] - ROTATIONS_DEG[0]))
        out.append(BoneMotion(1.0, float(theta), float((offsets[j] + dj) * factor), float((offsets[i] + di) * factor)))
    return out
