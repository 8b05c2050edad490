"""Sub-pixel refinement of one bone's motion: masked, robust, coarse-to-fine Gauss-Newton.

Model, for fixed-image pixels p in the bone's region:

    F(p) ~ P(M(T(p)) - tau / 2 * Laplacian(M)(T(p))),     P(m) = c0 + c1 m + c2 m^2

with T the bone's similarity transform about the joint centre (see transforms.py). Two nuisances of
real follow-ups are modelled, because each pulls the geometry when it is not (measured on generated
pairs: both together tripled the JSN error SD):
- P, a quadratic tone curve: another exposure and another processing (gamma) curve at follow-up;
- tau = sigma_moving^2 - sigma_fixed^2 (px^2), the difference in detector blur: by the heat
  equation a blur of variance tau adds tau / 2 times the Laplacian, to first order. The smoothed
  levels estimate tau so; the finest level blurs the sharper image by it instead.
The moving image is sampled with cubic B-splines (linear interpolation biases sub-pixel shifts
towards whole pixels). Residuals are weighted by Tukey's biweight (iteratively reweighted), so a
local change in the bone (an erosion) or a structure that moves otherwise cannot dominate.

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
MAX_BLUR_PX2 = 4.0  # |sigma_m^2 - sigma_f^2| beyond this is a failed fit, not two detectors


@dataclass
class RefineResult:
    motion: BoneMotion
    sd_dy_px: float  # predicted standard deviation of dy from the local curvature
    sd_dx_px: float
    residual_sd: float  # robust SD of the intensity residual (noise estimate), [0, 1] units
    tone: tuple[float, float, float]  # (c0, c1, c2) of the tone curve P, moving -> fixed intensity
    blur_px2: float  # estimated sigma_moving^2 - sigma_fixed^2 (px^2): > 0, the follow-up is blurrier
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


def _fit_tone(mv: np.ndarray, fv: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(c0, c1, c2) of the weighted least-squares quadratic fv ~ P(mv)."""
    basis = np.stack([np.ones_like(mv), mv, mv * mv], axis=1)
    sw = np.sqrt(w)[:, None]
    return np.linalg.lstsq(basis * sw, fv * sw[:, 0], rcond=None)[0]


def _level_images(fixed: np.ndarray, moving: np.ndarray, sigma_px: float, blur_px2: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Both images smoothed by sigma_px, and the sharper one also by the known blur difference."""
    var_f = sigma_px ** 2 + max(blur_px2, 0.0)
    var_m = sigma_px ** 2 + max(-blur_px2, 0.0)
    smooth = lambda image, var: ndimage.gaussian_filter(image, np.sqrt(var)) if var > 1e-6 else image  # noqa: E731
    return smooth(fixed, var_f), smooth(moving, var_m)


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
    # Geometry in pixel-like units so the normal equations are well scaled:
    # (log s * radius, theta * radius, dx, dy).
    p = np.array([np.log(init.scale) * radius, init.dtheta_rad * radius, init.dx_px, init.dy_px])
    tone = np.array([0.0, 1.0, 0.0])
    applied_px2, tau = 0.0, 0.0  # blur difference put into the images / fitted to first order
    total_iter, converged = 0, False
    sd_params = np.full(4, np.inf)
    residual_sd = np.nan
    n_used, inliers = 0, 0.0
    for sigma, stride, tol_px in zip(LEVELS_SMOOTH_PX, LEVELS_STRIDE, LEVELS_TOL_PX):
        # Smoothed levels fit the blur difference to first order; the finest level has it put into
        # the images instead (the Laplacian of unsmoothed noise would only add noise).
        fit_blur = sigma > 0.0
        if not fit_blur:
            applied_px2, tau = float(np.clip(tau, -MAX_BLUR_PX2, MAX_BLUR_PX2)), 0.0
        f, m = _level_images(fixed, moving, sigma, applied_px2)
        gy, gx = np.gradient(m)
        coeff_m, coeff_gx, coeff_gy = _spline(m), _spline(gx), _spline(gy)
        coeff_lap = _spline(ndimage.laplace(m)) if fit_blur else None
        sel = np.zeros_like(region, dtype=bool)
        sel[::stride, ::stride] = True
        yy, xx = np.nonzero((region > 0) & sel)
        prior = region[yy, xx].astype(np.float64)
        u, v = xx - cx, yy - cy
        fv = f[yy, xx]
        converged = False
        for it in range(max_iter):
            total_iter += 1
            s, th = np.exp(p[0] / radius), p[1] / radius
            c, sn = np.cos(th), np.sin(th)
            rx, ry = s * (c * u - sn * v), s * (sn * u + c * v)
            qx, qy = cx + rx + p[2], cy + ry + p[3]
            inside = (qx >= 0) & (qx <= cols - 1) & (qy >= 0) & (qy <= rows - 1)
            mv = _at(coeff_m, qx, qy)
            if fit_blur:
                lv = _at(coeff_lap, qx, qy)
                mv = mv - 0.5 * tau * lv
            if it == 0:  # the best tone curve for the start geometry, so that Tukey's weights judge
                tone = _fit_tone(mv, fv, prior * inside)  # the geometry, not the exposure change
            mx, my = _at(coeff_gx, qx, qy), _at(coeff_gy, qx, qy)
            slope = tone[1] + 2.0 * tone[2] * mv  # P'(m)
            res = tone[0] + mv * (tone[1] + tone[2] * mv) - fv
            robust, residual_sd = _tukey(res, inside.astype(float))
            w = robust * inside * prior
            # d q / d params: log-scale and rotation act on the rotated, scaled offset from centre.
            columns = [slope * (mx * rx + my * ry) / radius, slope * (-mx * ry + my * rx) / radius,
                       slope * mx, slope * my, np.ones_like(mv), mv, mv * mv]
            if fit_blur:
                columns.append(-0.5 * slope * lv)
            jac = np.stack(columns, axis=1)
            jw = jac * w[:, None]
            h = jac.T @ jw
            g = jw.T @ res
            try:
                step = -np.linalg.solve(h + 1e-9 * np.eye(len(h)) * np.trace(h), g)
            except np.linalg.LinAlgError:
                break
            p += step[:4]
            tone += step[4:7]
            if fit_blur:
                tau += step[7]
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
                        tuple(float(t) for t in tone), float(applied_px2 + tau), total_iter, converged,
                        n_used, inliers)
