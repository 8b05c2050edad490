"""Sub-pixel refinement of one bone's motion: masked, robust, coarse-to-fine Gauss-Newton.

Model, for fixed-image pixels p in the bone's region:  F(p) ~ a * M(T(p)) + b, with T the bone's
similarity transform about the joint centre (see transforms.py) and (a, b) an intensity gain and
offset, so an exposure change between visits does not pull the geometry. The moving image is
sampled with cubic B-splines (linear interpolation biases sub-pixel shifts towards whole pixels).
Residuals are weighted by Tukey's biweight (iteratively reweighted), so a local change in the bone
(an erosion) or a structure that moves otherwise cannot dominate.

The optimiser runs on Gaussian-smoothed copies first (wide capture range), then on the images as
they are (full precision). Near the optimum its inverse Hessian, scaled by the residual variance,
gives the standard deviation of each parameter: the basis of the confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .transforms import BoneMotion, roi_centre

LEVELS_SMOOTH_PX = (2.0, 1.0, 0.0)  # Gaussian sigma per level, coarse to fine
LEVELS_STRIDE = (2, 2, 1)  # use every n-th pixel on smoothed levels (they carry less detail)
LEVELS_TOL_PX = (0.05, 0.02, 0.005)  # a smoothed level only has to bring the next one near


@dataclass
class RefineResult:
    motion: BoneMotion
    sd_dy_px: float  # predicted standard deviation of dy from the local curvature
    sd_dx_px: float
    residual_sd: float  # robust SD of the intensity residual (noise estimate), [0, 1] units
    gain: float
    offset: float
    iterations: int
    converged: bool
    n_pixels: int
    inlier_fraction: float  # share of the region's pixels the robust weights kept


def _spline(image: np.ndarray) -> np.ndarray:
    return ndimage.spline_filter(image, order=3, mode="mirror")


def _at(coeffs: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return ndimage.map_coordinates(coeffs, [y, x], order=3, prefilter=False, mode="mirror")


def _tukey(res: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Tukey biweight on residuals scaled by their robust SD (MAD); returns weights and the SD."""
    active = weights > 0
    mad = np.median(np.abs(res[active] - np.median(res[active]))) if active.any() else 0.0
    sd = max(1.4826 * mad, 1e-6)
    u = res / (4.685 * sd)
    return np.where(np.abs(u) < 1, (1 - u ** 2) ** 2, 0.0), sd


def refine_bone(fixed: np.ndarray, moving: np.ndarray, region: np.ndarray, init: BoneMotion,
                max_iter: int = 50) -> RefineResult:
    """Refine `init` (fixed -> moving, about the ROI centre) on the bone's `region`.

    fixed, moving: ROIs of the same shape, intensities in [0, 1]. region: the bone's pixels, as a
    boolean mask or as non-negative weights (0 = not used). Returns the refined motion with
    its predicted precision. Parameters are kept as (log scale, rotation, dx, dy) around the centre.
    """
    fixed = np.asarray(fixed, dtype=np.float64)
    moving = np.asarray(moving, dtype=np.float64)
    rows, cols = fixed.shape
    cx, cy = roi_centre(fixed.shape)
    radius = 0.5 * max(rows, cols)
    # Parameters in pixel-like units so the normal equations are well scaled:
    # (log s * radius, theta * radius, dx, dy).
    p = np.array([np.log(init.scale) * radius, init.dtheta_rad * radius, init.dx_px, init.dy_px])
    gain, offset = 1.0, 0.0
    total_iter, converged = 0, False
    sd_params = np.full(4, np.inf)
    residual_sd = np.nan
    n_used, inliers = 0, 0.0
    for sigma, stride, tol_px in zip(LEVELS_SMOOTH_PX, LEVELS_STRIDE, LEVELS_TOL_PX):
        f = ndimage.gaussian_filter(fixed, sigma) if sigma else fixed
        m = ndimage.gaussian_filter(moving, sigma) if sigma else moving
        coeff_m = _spline(m)
        gy, gx = np.gradient(m)
        coeff_gx, coeff_gy = _spline(gx), _spline(gy)
        sel = np.zeros_like(region, dtype=bool)
        sel[::stride, ::stride] = True
        yy, xx = np.nonzero((region > 0) & sel)
        prior = region[yy, xx].astype(np.float64)
        u, v = xx - cx, yy - cy
        fv = f[yy, xx]
        robust = np.ones_like(fv)
        converged = False
        for _ in range(max_iter):
            total_iter += 1
            s, th = np.exp(p[0] / radius), p[1] / radius
            c, sn = np.cos(th), np.sin(th)
            qx = cx + s * (c * u - sn * v) + p[2]
            qy = cy + s * (sn * u + c * v) + p[3]
            inside = (qx >= 0) & (qx <= cols - 1) & (qy >= 0) & (qy <= rows - 1)
            mv = _at(coeff_m, qx, qy)
            mx, my = _at(coeff_gx, qx, qy), _at(coeff_gy, qx, qy)
            res = gain * mv + offset - fv
            robust, residual_sd = _tukey(res, inside.astype(float))
            w = robust * inside * prior
            # d q / d params: log-scale and rotation act on the rotated, scaled offset from centre.
            rx, ry = s * (c * u - sn * v), s * (sn * u + c * v)
            jac = np.stack([
                gain * (mx * rx + my * ry) / radius,
                gain * (-mx * ry + my * rx) / radius,
                gain * mx,
                gain * my,
                mv,
                np.ones_like(mv),
            ], axis=1)
            jw = jac * w[:, None]
            h = jac.T @ jw
            g = jw.T @ res
            try:
                step = -np.linalg.solve(h + 1e-9 * np.eye(6) * np.trace(h), g)
            except np.linalg.LinAlgError:
                break
            p += step[:4]
            gain += step[4]
            offset += step[5]
            if np.max(np.abs(step[:4])) < tol_px:
                converged = True
                break
        n_used = int(np.count_nonzero(w))
        inliers = n_used / max(len(w), 1)
        if sigma == 0.0 and n_used > 6:
            try:
                cov = np.linalg.inv(h) * residual_sd ** 2 * (jac.shape[0] / max(w.sum(), 1.0))
                sd_params = np.sqrt(np.clip(np.diag(cov)[:4], 0, None))
            except np.linalg.LinAlgError:
                pass
    motion = BoneMotion(float(np.exp(p[0] / radius)), float(p[1] / radius), float(p[2]), float(p[3]))
    return RefineResult(motion, float(sd_params[3]), float(sd_params[2]), float(residual_sd),
                        float(gain), float(offset), total_iter, converged, n_used, inliers)
