"""Sub-pixel refinement of the bones' motions: masked, robust, coarse-to-fine Gauss-Newton.

Model, for fixed-image pixels p in bone b's region:

    F(p) ~ P(M(T_b(p)) - tau / 2 * Laplacian(M)(T_b(p))) + beta * D(T_b(p)),     P(m) = c0 + c1 m + c2 m^2

with T_b bone b's similarity transform about the joint centre (see transforms.py). All bones are
fitted together: what belongs to the image pair is shared, what belongs to a bone is not.
- one scale: a magnification change is the radiograph's geometry, the same for both bones of a
  joint (adult bones do not grow); fitted per bone, a scale extrapolated from the bone's region
  to the joint centre leaks into dy there (seen on the clinical pair: 0.1 mm of JSN);
- one tone curve P (another exposure and processing curve at follow-up) and one blur difference
  tau = sigma_moving^2 - sigma_fixed^2 (px^2): by the heat equation a blur of variance tau adds
  tau / 2 times the Laplacian, to first order. The smoothed levels estimate tau so; the finest
  level blurs the sharper image by it instead. Unmodelled, both pull the geometry (on generated
  pairs, together they tripled the JSN error SD);
- one gain beta of the follow-up's detail D = M - G * M (G a Gaussian of PROCESSING_SIGMA_PX): a
  follow-up processed otherwise (unsharp masking raises the detail against its local mean) is what a
  tone curve and a blur difference cannot follow; unmodelled, on whole real hands with the follow-up
  unsharp masked (3 mm, x0.7), 23 of 277 JSNs went out more than 0.5 px off and unflagged. The finest
  level fits it only where the level before found it significant (PROCESSING_MIN_T), else holds it at 0;
- per bone a rotation and a shift (dx, dy): the bones move independently;
- optionally, per bone a soft-tissue term a_b S'(x) + c_b S'(x) v / radius, with S'(x) the slope
  across the columns of the soft tissue's level (`soft_slope`): the soft tissue over a bone moves
  with the finger, not with the bone, so a bone's own shift and turn leave the finger's soft
  profile shifted under it by a fraction of a pixel (row offset v from the centre times the turn).
The moving image is sampled with cubic B-splines (linear interpolation biases sub-pixel shifts
towards whole pixels). Residuals are weighted by Tukey's biweight per bone (iteratively
reweighted), so a local change in a bone (an erosion) or a structure that moves otherwise cannot
dominate.

The optimiser runs on Gaussian-smoothed copies first (wide capture range), then on the images as
they are (full precision). Near the optimum its inverse Hessian, scaled by the residual variance,
gives the covariance of the parameters: the standard deviation of each bone's dy and of the JSN,
the basis of the confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .transforms import BoneMotion, linear_reader, matrix, roi_centre

# Gaussian sigma per level, coarse to fine. The coarsest level makes long moves cheaply (every
# 4th pixel), so a start 8 px off still lands (generated pairs, noise 0.02) at no cost to a good one.
LEVELS_SMOOTH_PX = (2.0, 1.0, 0.0)
LEVELS_STRIDE = (4, 2, 1)  # use every n-th pixel on smoothed levels (they carry less detail)
LEVELS_TOL_PX = (0.05, 0.02, 0.01)  # largest step (px) that counts as converged, per level
MAX_BLUR_PX2 = 4.0  # |sigma_m^2 - sigma_f^2| beyond this is a failed fit, not two detectors
CLIP_SHARE = 0.005  # an extreme value held by more pixels than this is a clip (saturation)
# A clip resampled (an ROI cut from the film with cubic splines, by us or by whoever cut the pair) is no
# longer one value: the splines ring below and above it. Its pixels still lie near the extreme and are
# flat over 3 x 3 (noise makes any other region vary by more).
CLIP_BAND = 0.1  # share of the image's range above its minimum (below its maximum) a resampled clip lies in
CLIP_FLAT = 0.002  # share of the image's range a resampled clip's pixels vary by over 3 x 3
CLIP_MARGIN_PX = 3  # clipped pixels spread this far through smoothing and spline sampling
# A follow-up processed otherwise than its baseline (unsharp masking: its detail raised against its local mean)
# is one more shared term, beta * (M - G * M): M the moving image on the level, G a Gaussian of
# PROCESSING_SIGMA_PX (about 2 mm at the working grid's 0.17 mm/px). Testing/benchmarks.md, "Other storage and
# processing", has what it gains on real films and costs on generated pairs.
PROCESSING_SIGMA_PX = 12.0
# The finest level fits it only where the level before found it this many standard errors from zero: a free
# gain costs precision where the two visits were processed alike (generated pairs: median JSN error +10-20 %).
PROCESSING_MIN_T = 3.0
MIN_WEIGHT = 0.1  # pixels weighted lower add little information and 10 % of the time
EDGE_SMOOTH_PX = 1.0  # gradient energy is read smoothed by this, so an edge's flanks count too
TUKEY_C = 4.685
MAD_SAMPLE = 2000
# Larger ROIs are fitted on every other pixel (a checkerboard) at the unsmoothed level: neighbours
# of a smooth radiograph carry nearly the same information (256 px generated pairs: same errors,
# half the time). Fitting only the strongest edges instead lost precision (the articular
# surfaces, which carry dy, are weaker edges than the shafts).
FINE_MAX_PIXELS = 150 * 150


@dataclass
class BoneFit:
    motion: BoneMotion
    sd_dy_px: float  # predicted standard deviation of dy from the local curvature
    sd_dx_px: float
    n_pixels: int
    inlier_fraction: float  # share of the usable pixels the robust weights kept
    usable_fraction: float  # share of the region's pixels not clipped (saturated) in either image
    edge_share: float = 1.0  # share of the region's gradient energy (its edges) on usable pixels; NaN: not computed


@dataclass
class RefineResult:
    bones: tuple[BoneFit, ...]  # in the order of the regions
    sd_jsn_px: float  # predicted SD of dy[0] - dy[1] (with two bones; covariances included)
    residual_sd: float  # robust SD of the intensity residual (noise estimate), [0, 1] units
    tone: tuple[float, float, float]  # (c0, c1, c2) of the tone curve P, moving -> fixed intensity
    blur_px2: float  # estimated sigma_moving^2 - sigma_fixed^2 (px^2): > 0, the follow-up is blurrier
    iterations: int
    converged: bool
    # The last iteration's residuals, prior weights and validity on the fitted pixels (for robust_cost).
    residuals: np.ndarray | None = None
    prior: np.ndarray | None = None
    inside: np.ndarray | None = None
    detail_gain: float = 0.0  # beta, follow-up -> baseline: < 0 where the follow-up's detail was raised (unsharp masked)

    @property
    def usable_fraction(self) -> float:
        """The least unsaturated share over the bones (the one that limits the fit)."""
        return min(b.usable_fraction for b in self.bones)

    @property
    def edge_share(self) -> float:
        """The least share of a bone's edges (gradient energy) left unsaturated."""
        return min(b.edge_share for b in self.bones)

    def robust_cost(self, sigma: float) -> float:
        """Mean Tukey loss (0 = perfect, 1 = outlier) of the final residuals at a common noise
        scale `sigma`, pixels mapped outside or onto a clip counted as outliers: comparable
        between fits of the same pair from different starts."""
        u = np.where(self.inside, self.residuals / (TUKEY_C * max(sigma, 1e-6)), 1.0)
        rho = np.where(np.abs(u) < 1, 1 - (1 - u ** 2) ** 3, 1.0)
        return float(np.sum(self.prior * rho) / max(np.sum(self.prior), 1e-12))


# Cubic reads of this many points or more gather their 16 taps with numpy: twice as fast as
# map_coordinates (70-100 ns a point) on the finer levels' thousands of points, slower on a few
# hundred; the same values to 1e-15 wherever the point lies inside the image.
GATHER_MIN_POINTS = 2000
SPLINE_PAD_PX = 2  # a cubic tap reaches 2 px beyond the last pixel centre


@dataclass
class Spline:
    """Cubic B-spline coefficients of an image, and a copy mirrored SPLINE_PAD_PX beyond its edges
    (numpy's "reflect" is map_coordinates' "mirror"), from which the taps are gathered."""
    coeffs: np.ndarray
    padded: np.ndarray


def _spline(image: np.ndarray) -> Spline:
    coeffs = ndimage.spline_filter(image, order=3, mode="mirror")
    return Spline(coeffs, np.pad(coeffs, SPLINE_PAD_PX, mode="reflect"))


def _bspline_weights(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cubic B-spline weights of the taps at floor - 1 .. floor + 2 for fractions t in [0, 1)."""
    s, t3 = 1.0 - t, t * t * t
    w0, w3 = s * s * s / 6.0, t3 / 6.0
    w1 = 2.0 / 3.0 - t * t * (1.0 - 0.5 * t)
    return w0, w1, 1.0 - w0 - w1 - w3, w3


def _at(spline: Spline, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The spline at (x, y) px. Beyond the image the gather reads the nearest edge point's taps
    (not the mirrored spline; the refinement leaves such points out of every sum)."""
    if len(x) < GATHER_MIN_POINTS:
        return ndimage.map_coordinates(spline.coeffs, [y, x], order=3, prefilter=False, mode="mirror")
    rows, cols = spline.coeffs.shape
    x0, y0 = np.floor(np.clip(x, 0.0, cols - 1)), np.floor(np.clip(y, 0.0, rows - 1))
    wx, wy = _bspline_weights(x - x0), _bspline_weights(y - y0)
    width = cols + 2 * SPLINE_PAD_PX
    first = (y0.astype(np.intp) + SPLINE_PAD_PX - 1) * width + x0.astype(np.intp) + SPLINE_PAD_PX - 1
    flat = spline.padded.ravel()  # take(mode="clip"): a NaN position (a failed fit) reads, not raises
    out = np.zeros(len(x))
    for j in range(4):  # tap rows
        row = first + j * width
        along = wx[0] * flat.take(row, mode="clip")
        for i in (1, 2, 3):
            along += wx[i] * flat.take(row + i, mode="clip")
        along *= wy[j]
        out += along
    return out


def _median(a: np.ndarray) -> float:
    """np.median of a 1-D array without its generic machinery (called a few dozen times a joint)."""
    k = a.size // 2
    if a.size % 2:
        return float(np.partition(a, k)[k])
    p = np.partition(a, [k - 1, k])
    return float(0.5 * (p[k - 1] + p[k]))


def _tukey(res: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Tukey biweight on residuals scaled by their robust SD (MAD); returns weights and the SD."""
    active = res[weights > 0]
    if active.size > MAD_SAMPLE:  # the robust SD from a regular subsample: as good, a fraction of the time
        active = active[::active.size // MAD_SAMPLE]
    mad = _median(np.abs(active - _median(active))) if active.size else 0.0
    sd = max(1.4826 * mad, 1e-6)
    t = np.maximum(1 - (res / (TUKEY_C * sd)) ** 2, 0.0)  # 0 beyond TUKEY_C robust SDs
    return t * t, sd


def clipped(image: np.ndarray) -> np.ndarray:
    """Pixels at or near a clipped extreme of the image (a saturated detector or look-up table):
    they carry no position and break any smooth tone curve, so no fit may use them. A clip is the
    extreme value itself, or, where the image was resampled, pixels near it that are flat (CLIP_BAND,
    CLIP_FLAT), held by more than CLIP_SHARE of the pixels."""
    out = np.zeros(image.shape, dtype=bool)
    lo, hi = float(image.min()), float(image.max())
    span = hi - lo
    flat = _spread_3x3(image) <= CLIP_FLAT * span
    for value, near in ((lo, image <= lo + CLIP_BAND * span), (hi, image >= hi - CLIP_BAND * span)):
        at = (image == value) | (flat & near)
        if at.mean() > CLIP_SHARE:
            out |= at
    return ndimage.binary_dilation(out, iterations=CLIP_MARGIN_PX) if out.any() else out


def _spread_3x3(image: np.ndarray) -> np.ndarray:
    """Max - min over each pixel's 3 x 3 neighbourhood (inf on the image's border, which the clip's
    margin covers), by slices: a twentieth of the time of ndimage's max and min filters."""
    out = np.full(image.shape, np.inf)
    hi = np.maximum(np.maximum(image[:-2], image[1:-1]), image[2:])
    lo = np.minimum(np.minimum(image[:-2], image[1:-1]), image[2:])
    out[1:-1, 1:-1] = (np.maximum(np.maximum(hi[:, :-2], hi[:, 1:-1]), hi[:, 2:])
                       - np.minimum(np.minimum(lo[:, :-2], lo[:, 1:-1]), lo[:, 2:]))
    return out


def _fit_tone(mv: np.ndarray, fv: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(c0, c1, c2) of the weighted least-squares quadratic fv ~ P(mv), by its 3 x 3 normal
    equations (a tenth of the time of a least-squares solve on every pixel)."""
    powers = [w]
    for _ in range(4):  # w mv^k by repeated products (a power is slower than a product)
        powers.append(powers[-1] * mv)
    sums = [float(p.sum()) for p in powers]
    normal = np.array([sums[k:k + 3] for k in range(3)])
    rhs = np.array([float(np.dot(p, fv)) for p in powers[:3]])
    return np.linalg.lstsq(normal, rhs, rcond=None)[0]


def _level_vars_px2(sigma_px: float, blur_px2: float) -> tuple[float, float]:
    """Smoothing variances (px^2) of the fixed and moving images on a level of `sigma_px`: both
    smoothed by it, and the sharper one also by the known blur difference."""
    return sigma_px ** 2 + max(blur_px2, 0.0), sigma_px ** 2 + max(-blur_px2, 0.0)


def _gradient(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.gradient of a 2-D image (central differences, one-sided at the edges), the same numbers
    at about half its time (it is taken for every level of every fit)."""
    gy, gx = np.empty_like(image), np.empty_like(image)
    np.subtract(image[2:], image[:-2], out=gy[1:-1])
    gy[1:-1] /= 2.0
    gy[0], gy[-1] = image[1] - image[0], image[-1] - image[-2]
    np.subtract(image[:, 2:], image[:, :-2], out=gx[:, 1:-1])
    gx[:, 1:-1] /= 2.0
    gx[:, 0], gx[:, -1] = image[:, 1] - image[:, 0], image[:, -1] - image[:, -2]
    return gy, gx


def edge_energy(image: np.ndarray) -> np.ndarray:
    """Squared gradient magnitude, smoothed: where an image carries position."""
    gy, gx = _gradient(image)
    return ndimage.gaussian_filter(gx * gx + gy * gy, EDGE_SMOOTH_PX)


class FitImage:
    """One image as the refinement reads it, each derived copy (smoothed levels, their gradients,
    spline coefficients and Laplacians, the clip mask, the edge energy) made on first use and kept:
    the forward fits from two starts and the backward fit (the pair swapped) of one joint read the
    same copies of the same two images."""

    def __init__(self, image: np.ndarray):
        self.pixels = np.asarray(image, dtype=np.float64)
        self._made = {}

    def _memo(self, key, make):
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def smoothed(self, var_px2: float) -> np.ndarray:
        return self._memo(("smoothed", var_px2), lambda: ndimage.gaussian_filter(self.pixels, np.sqrt(var_px2))
                          if var_px2 > 1e-6 else self.pixels)

    def gradient(self, var_px2: float) -> tuple[np.ndarray, np.ndarray]:
        """(d/drow, d/dcol) of the smoothed copy."""
        return self._memo(("gradient", var_px2), lambda: _gradient(self.smoothed(var_px2)))

    def spline(self, var_px2: float) -> np.ndarray:
        return self._memo(("spline", var_px2), lambda: _spline(self.smoothed(var_px2)))

    def local_mean(self) -> np.ndarray:
        return self._memo("local mean", lambda: ndimage.gaussian_filter(
            self.pixels, PROCESSING_SIGMA_PX, mode="nearest", truncate=3.0))

    def detail(self, var_px2: float) -> np.ndarray:
        """The smoothed copy less the local mean (made once, unsmoothed: the level's smoothing is small
        against PROCESSING_SIGMA_PX): what unsharp masking raises."""
        return self._memo(("detail", var_px2), lambda: self.smoothed(var_px2) - self.local_mean())

    def laplace(self, var_px2: float) -> np.ndarray:
        return self._memo(("laplace", var_px2), lambda: ndimage.laplace(self.smoothed(var_px2)))

    def clipped(self) -> np.ndarray:
        return self._memo("clipped", lambda: clipped(self.pixels))

    def edges(self) -> np.ndarray:
        return self._memo("edges", lambda: edge_energy(self.pixels))

    def warp_to_fixed(self, motion: BoneMotion, where: np.ndarray) -> np.ndarray:
        """transforms.warp_to_fixed of the image (cubic, NaN outside and off `where`) from its
        spline coefficients made once (the runner-up lines' band residuals read both bones' motions)."""
        rows, cols = self.pixels.shape
        y, x = np.nonzero(where)
        m = matrix(motion, roi_centre(self.pixels.shape))
        q = np.stack([x, y], axis=1).astype(np.float64) @ m[:2, :2].T + m[:2, 2]
        values = _at(self.spline(0.0), q[:, 0], q[:, 1])
        values[(q[:, 0] < 0) | (q[:, 0] > cols - 1) | (q[:, 1] < 0) | (q[:, 1] > rows - 1)] = np.nan
        out = np.full((rows, cols), np.nan)
        out[y, x] = values
        return out


def refine_bones(fixed: np.ndarray | FitImage, moving: np.ndarray | FitImage, regions: list[np.ndarray], inits: list[BoneMotion],
                 max_iter: int = 50, levels: tuple[int, ...] | None = None, blur_px2: float = 0.0,
                 soft_slope: np.ndarray | None = None, edge_shares: bool = True, across: bool = False,
                 along_scale: float | None = None) -> RefineResult:
    """Refine each bone's `init` (fixed -> moving, about the ROI centre) on its region.

    fixed, moving: ROIs of the same shape, intensities in [0, 1] (as FitImage: their derived
    copies shared with other fits of the same images). regions: one per bone, each a
    boolean mask or weights in [0, 1] (below MIN_WEIGHT = not used). The bones share one scale
    (started from the mean of the inits' log scales), the tone curve and the blur difference
    (started from `blur_px2`). `levels` (indices into LEVELS_SMOOTH_PX; default all) can skip
    levels, e.g. for a start known to be close. `soft_slope` (per column of `fixed`, at most 1 in
    magnitude; None: not modelled) adds the soft-tissue term of the module doc. Returns the
    refined motions with their predicted precision (none when the finest level is not run).
    edge_shares=False leaves each bone's edge share NaN (a reading that does not use it, such as
    the backward fit, spares the edge map and the mapping of its pixels). across=True: the shared
    scale is two, across (x) and along (y) the ROI, as a finger rolled between the visits projects its
    bones narrower or wider but no shorter. along_scale (with across): the one along the ROI held at this
    value, only the one across fitted (the hand's magnification, known from its other joints).
    """
    fixed_i, moving_i = (im if isinstance(im, FitImage) else FitImage(im) for im in (fixed, moving))
    fixed = fixed_i.pixels
    rows, cols = fixed.shape
    cx, cy = roi_centre(fixed.shape)
    radius = 0.5 * max(rows, cols)
    n_bones = len(regions)
    # Geometry in pixel-like units so the normal equations are well scaled:
    # [log s * radius (or log sx, log sy), then per bone theta * radius, dx, dy].
    n_s = 2 if across else 1
    geo = np.array([np.mean([np.log(b.scale) for b in inits]) * radius] * n_s
                   + [v for b in inits for v in (b.dtheta_rad * radius, b.dx_px, b.dy_px)])
    if along_scale is not None:
        if not across:
            raise ValueError("along_scale needs across=True")
        geo[1] = np.log(along_scale) * radius  # held: its row and column of the normal equations are cleared
    n_geo = len(geo)
    tone = np.array([0.0, 1.0, 0.0])
    n_soft = 0 if soft_slope is None else 2 * n_bones
    soft = np.zeros(n_soft)  # per bone (a_b, c_b) of the soft-tissue term
    beta = 0.0  # the processing term's weight (shared)
    applied_px2, tau = 0.0, float(blur_px2)  # blur difference put into the images / fitted to first order
    total_iter, converged = 0, False
    cov = None
    residual_sd = np.nan
    kept = [(0, 0.0, 0.0, 0.0)] * n_bones
    usable_f = ~fixed_i.clipped()
    clipped_m = moving_i.clipped()
    clipped_m = clipped_m.astype(np.float64) if clipped_m.any() else None
    res = inside = prior = h = None
    levels = [lv for k, lv in enumerate(zip(LEVELS_SMOOTH_PX, LEVELS_STRIDE, LEVELS_TOL_PX))
              if levels is None or k in levels]
    for level, (sigma, stride, tol_px) in enumerate(levels, start=1):
        # Smoothed levels fit the blur difference to first order; the finest level has it put into
        # the images instead (the Laplacian of unsmoothed noise would only add noise).
        fit_blur = sigma > 0.0
        fit_beta = True
        if not fit_blur:
            applied_px2, tau = float(np.clip(tau, -MAX_BLUR_PX2, MAX_BLUR_PX2)), 0.0
            if h is not None:  # the level before fitted the blur too: beta is its parameter n_geo + 4
                fit_beta = _significant(h, n_geo + 4, beta, residual_sd, w)
                beta = beta if fit_beta else 0.0
        var_f, var_m = _level_vars_px2(sigma, applied_px2)
        f = fixed_i.smoothed(var_f)
        gy, gx = moving_i.gradient(var_m)
        # Only the image itself needs cubic sampling (it sets the residual, hence the optimum); its
        # gradient and Laplacian only steer the steps and are read linearly, at a fifth the time.
        coeff_m = moving_i.spline(var_m)
        lap = moving_i.laplace(var_m) if fit_blur else None
        detail = moving_i.detail(var_m) if fit_beta else None
        sel = np.zeros(fixed.shape, dtype=bool)
        sel[::stride, ::stride] = True
        if stride == 1 and fixed.size > FINE_MAX_PIXELS:
            sel[(np.arange(rows)[:, None] + np.arange(cols)[None, :]) % 2 == 1] = False
        in_region = [(region >= MIN_WEIGHT) & sel for region in regions]
        pixels = [np.nonzero(r & usable_f) for r in in_region]
        counts = [len(yy) for yy, _ in pixels]  # per bone: its parameters repeated over its pixels
        ends = np.cumsum(counts)
        spans = [slice(end - len(yy), end) for end, (yy, _) in zip(ends, pixels)]  # each bone's pixels
        yy = np.concatenate([p[0] for p in pixels])
        xx = np.concatenate([p[1] for p in pixels])
        prior = np.concatenate([region[p].astype(np.float64) for region, p in zip(regions, pixels)])
        u, v = xx - cx, yy - cy
        fv = f[yy, xx]
        if n_soft:  # its basis per pixel (parameter x pixel), on this bone's two parameters only
            basis = np.zeros((n_soft, len(yy)))
            slope_x = np.asarray(soft_slope, dtype=np.float64)[xx]
            along_v = slope_x * v / radius
            for k, mine in enumerate(spans):
                basis[2 * k, mine], basis[2 * k + 1, mine] = slope_x[mine], along_v[mine]
        # Each bone's Jacobian (its parameters x its pixels), reused by every iteration of the level:
        # the shared scale, its rotation and shift, the shared tone curve (and blur), its soft-tissue
        # pair. The normal equations add the bones' blocks: nothing is spent on the zeros a bone's
        # parameters have on the other bones' pixels (a third of the products, and the large ones).
        n_par = n_geo + 3 + fit_blur + fit_beta + n_soft
        shared = list(range(n_geo, n_geo + 3 + fit_blur + fit_beta))  # tone curve (blur difference, processing)
        own = [np.array([*range(n_s), n_s + 3 * k, n_s + 1 + 3 * k, n_s + 2 + 3 * k, *shared,
                         *([n_par - n_soft + 2 * k, n_par - n_soft + 2 * k + 1] if n_soft else [])])
               for k in range(n_bones)]
        blocks = [np.empty((len(par), mine.stop - mine.start)) for par, mine in zip(own, spans)]
        own_h = [np.ix_(par, par) for par in own]  # each bone's entries of the normal matrix
        for k, (block, mine) in enumerate(zip(blocks, spans)):
            block[n_s + 3] = 1.0
            if n_soft:
                block[-2:] = basis[2 * k:2 * k + 2, mine]
        ridge = 1e-9 * np.eye(n_par)
        converged = False
        for it in range(max_iter):
            total_iter += 1
            th = geo[n_s::3] / radius
            c, sn = np.repeat(np.cos(th), counts), np.repeat(np.sin(th), counts)
            if across:
                ax, ay = np.exp(geo[0] / radius) * u, np.exp(geo[1] / radius) * v
                rx, ry = c * ax - sn * ay, sn * ax + c * ay
            else:
                s = np.exp(geo[0] / radius)
                rx, ry = s * (c * u - sn * v), s * (sn * u + c * v)
            qx, qy = cx + rx + np.repeat(geo[n_s + 1::3], counts), cy + ry + np.repeat(geo[n_s + 2::3], counts)
            inside = (qx >= 0) & (qx <= cols - 1) & (qy >= 0) & (qy <= rows - 1)
            if clipped_m is not None:
                inside &= ndimage.map_coordinates(clipped_m, [qy, qx], order=0, mode="nearest") == 0
            mv = _at(coeff_m, qx, qy)
            linear = linear_reader(qx, qy, fixed.shape)
            if fit_blur:
                lv = linear(lap)
                mv = mv - 0.5 * tau * lv
            if it == 0:  # the best tone curve for the start geometry, so that Tukey's weights judge
                tone = _fit_tone(mv, fv, prior * inside)  # the geometry, not the exposure change
            mx, my = linear(gx), linear(gy)
            slope = tone[1] + 2.0 * tone[2] * mv  # P'(m)
            res = tone[0] + mv * (tone[1] + tone[2] * mv) - fv
            if n_soft:
                res += soft @ basis
            if fit_beta:
                dv = linear(detail)
                res += beta * dv
            robust = np.zeros_like(res)
            sds = []
            for mine in spans:
                robust[mine], sd = _tukey(res[mine], inside[mine])
                sds.append(sd)
            residual_sd = _median(np.array(sds))
            w = robust * inside * prior
            h, g = np.zeros((n_par, n_par)), np.zeros(n_par)
            for par, at_h, block, mine in zip(own, own_h, blocks, spans):
                _geometry_rows(block[:n_s + 3], slope[mine], mx[mine], my[mine], rx[mine], ry[mine], radius,
                               (c[mine] * ax[mine], sn[mine] * ax[mine]) if across else None)
                block[n_s + 4] = mv[mine]
                np.multiply(mv[mine], mv[mine], out=block[n_s + 5])
                if fit_blur:
                    np.multiply(-0.5 * slope[mine], lv[mine], out=block[n_s + 6])
                if fit_beta:
                    block[n_s + 6 + fit_blur] = dv[mine]
                weighted = block * w[mine]
                h[at_h] += weighted @ block.T
                g[par] += weighted @ res[mine]
            if along_scale is not None:
                h[1, :], h[:, 1], g[1] = 0.0, 0.0, 0.0
                h[1, 1] = 1.0
            try:
                step = -np.linalg.solve(h + ridge * np.trace(h), g)
            except np.linalg.LinAlgError:
                break
            geo += step[:n_geo]
            tone += step[n_geo:n_geo + 3]
            if fit_blur:
                tau += step[n_geo + 3]
            if fit_beta:
                beta += step[n_geo + 3 + fit_blur]
            if n_soft:
                soft += step[-n_soft:]
            if np.max(np.abs(step[:n_geo])) < tol_px:
                converged = True
                break
        if level < len(levels):
            continue  # what the fit kept is read on the last level only
        edges_f = fixed_i.edges() if edge_shares else None
        kept = []
        for k, mine in enumerate(spans):
            n_kept, n_usable = int(np.count_nonzero(w[mine])), int(np.count_nonzero(inside[mine]))
            n_region = max(int(np.count_nonzero(in_region[k])), 1)
            kept.append((n_kept, n_kept / max(n_usable, 1), n_usable / n_region,
                         _usable_edge_share(edges_f, in_region[k], usable_f, clipped_m, geo, k, radius, n_s)
                         if edge_shares else np.nan))
        if not fit_blur and min(k[0] for k in kept) > 6:
            try:
                cov = np.linalg.inv(h)[:n_geo, :n_geo] * residual_sd ** 2 * (len(w) / max(w.sum(), 1.0))
            except np.linalg.LinAlgError:
                cov = None
    var = np.clip(np.diag(cov), 0, None) if cov is not None else np.full(n_geo, np.inf)
    scale = float(np.exp(np.mean(geo[:n_s]) / radius))
    bones = tuple(BoneFit(BoneMotion(scale, float(geo[n_s + 3 * k] / radius), float(geo[n_s + 1 + 3 * k]),
                                     float(geo[n_s + 2 + 3 * k])),
                          float(np.sqrt(var[n_s + 2 + 3 * k])), float(np.sqrt(var[n_s + 1 + 3 * k])), *kept[k])
                  for k in range(n_bones))
    sd_jsn = np.inf
    if n_bones == 2 and cov is not None:
        i, j = n_s + 2, n_s + 5  # the two bones' dy
        sd_jsn = float(np.sqrt(max(cov[i, i] + cov[j, j] - 2 * cov[i, j], 0.0)))
    return RefineResult(bones, sd_jsn, residual_sd, tuple(float(t) for t in tone),
                        float(applied_px2 + tau), total_iter, converged, res, prior, inside, float(beta))


def _significant(h: np.ndarray, i: int, value: float, residual_sd: float, w: np.ndarray) -> bool:
    """Whether parameter i of a level's fit (normal matrix h, robust weights w) lies PROCESSING_MIN_T
    standard errors or more from zero."""
    try:
        var = np.linalg.inv(h)[i, i] * residual_sd ** 2 * (len(w) / max(w.sum(), 1.0))
    except np.linalg.LinAlgError:
        return True
    return bool(abs(value) >= PROCESSING_MIN_T * np.sqrt(max(var, 0.0)))


def _geometry_rows(rows: np.ndarray, slope: np.ndarray, mx: np.ndarray, my: np.ndarray, rx: np.ndarray,
                   ry: np.ndarray, radius: float, across=None) -> None:
    """The residual's derivatives by log-scale, rotation, dx and dy (each * radius or px) into `rows`
    (4 x pixels), written in place: slope P'(m), the moving gradient (mx, my) read at the mapped
    pixels, (rx, ry) their rotated, scaled offsets from the centre, on which log-scale and rotation act.
    across: (x, y) of the part of (rx, ry) the across-scale makes; the log-scale row is then two (5 rows),
    across and along."""
    if across is None:
        d_scale, turn, along_x, along_y = rows
        np.multiply(mx, rx, out=d_scale)
        d_scale += my * ry
    else:
        d_across, d_scale, turn, along_x, along_y = rows
        np.multiply(mx, across[0], out=d_across)
        d_across += my * across[1]
        d_across *= slope
        d_across /= radius
        np.multiply(mx, rx - across[0], out=d_scale)
        d_scale += my * (ry - across[1])
    d_scale *= slope
    d_scale /= radius
    np.multiply(mx, ry, out=turn)
    np.negative(turn, out=turn)
    turn += my * rx
    turn *= slope
    turn /= radius
    np.multiply(slope, mx, out=along_x)
    np.multiply(slope, my, out=along_y)


def _usable_edge_share(edges_f: np.ndarray, region: np.ndarray, usable_f: np.ndarray,
                       clipped_m: np.ndarray | None, geo: np.ndarray, k: int, radius: float, n_s: int = 1) -> float:
    """Share of a bone region's gradient energy on pixels unclipped in both images (the moving
    image read where bone k's current motion maps each pixel; outside the ROI counts as lost)."""
    total = float(edges_f[region].sum())
    if total <= 0:
        return 0.0
    ok = region & usable_f
    yy, xx = np.nonzero(ok)
    rows, cols = edges_f.shape
    cx, cy = (cols - 1) / 2.0, (rows - 1) / 2.0
    th = geo[n_s + 3 * k] / radius
    u, v = np.exp(geo[0] / radius) * (xx - cx), np.exp(geo[n_s - 1] / radius) * (yy - cy)
    qx = cx + np.cos(th) * u - np.sin(th) * v + geo[n_s + 1 + 3 * k]
    qy = cy + np.sin(th) * u + np.cos(th) * v + geo[n_s + 2 + 3 * k]
    good = (qx >= 0) & (qx <= cols - 1) & (qy >= 0) & (qy <= rows - 1)
    if clipped_m is not None:
        good &= ndimage.map_coordinates(clipped_m, [qy, qx], order=0, mode="nearest") == 0
    return float(edges_f[yy[good], xx[good]].sum() / total)
