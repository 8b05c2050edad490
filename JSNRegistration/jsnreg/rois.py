"""Joint regions of interest cut out of whole radiographs, and finding a joint in the follow-up.

Coordinates are (x, y) = (column, row) in pixels, rows growing downwards; angles in radians.
An ROI of side S px, centred on c and turned by angle t, maps its pixel q to the image point

    p = c + R(t) @ (q - r),     r = ((S - 1) / 2, (S - 1) / 2),   R(t) = [[cos t, -sin t],
                                                                       [sin t,  cos t]]

so the ROI centre pixel r lands exactly on c, and the ROI's "up" (0, -1) points along
(sin t, -cos t) in the image: a positive t turns the ROI clockwise on screen (as in
jsnreg.transforms). The finger axis angle is defined the same way, so cutting with it makes the
finger vertical, distal end up, and the joint space horizontal in the ROI.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, ndimage

from .errors import InputError

# Share of an ROI that may fall outside the image and be padded with the edge value.
MAX_OUTSIDE_FRACTION = 0.25
# Pixels kept around a sampled region so the cubic spline prefilter of the crop matches the
# whole image's to ~1e-6 (its pole is 0.268, 0.268**12 ~ 1e-7).
SPLINE_MARGIN_PX = 12


def _rotation(angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s], [s, c]])


def roi_to_image(points_xy, centre_xy, size_px: int, angle_rad: float) -> np.ndarray:
    """Map ROI pixel coordinates (..., 2) in (x, y) to image pixel coordinates."""
    q = np.asarray(points_xy, dtype=np.float64)
    half = (size_px - 1) / 2.0
    return (q - half) @ _rotation(angle_rad).T + np.asarray(centre_xy, dtype=np.float64)


def image_to_roi(points_xy, centre_xy, size_px: int, angle_rad: float) -> np.ndarray:
    """Map image pixel coordinates (..., 2) in (x, y) to ROI pixel coordinates (inverse of
    `roi_to_image`)."""
    p = np.asarray(points_xy, dtype=np.float64)
    half = (size_px - 1) / 2.0
    return (p - np.asarray(centre_xy, dtype=np.float64)) @ _rotation(angle_rad) + half


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 2:
        raise InputError(f"a 2-D radiograph is needed, got shape {image.shape}")
    return image


def _sample_local(image: np.ndarray, x: np.ndarray, y: np.ndarray, order: int) -> np.ndarray:
    """Interpolate `image` at (x, y), edge values outside, working on a crop around the points
    (a whole radiograph's spline prefilter would cost far more than the few samples)."""
    rows, cols = image.shape
    margin = SPLINE_MARGIN_PX if order > 1 else 2
    x0 = int(np.clip(np.floor(x.min()) - margin, 0, cols - 1))
    x1 = int(np.clip(np.ceil(x.max()) + margin + 1, x0 + 1, cols))
    y0 = int(np.clip(np.floor(y.min()) - margin, 0, rows - 1))
    y1 = int(np.clip(np.ceil(y.max()) + margin + 1, y0 + 1, rows))
    crop = np.asarray(image[y0:y1, x0:x1], dtype=np.float64)
    return ndimage.map_coordinates(crop, [y - y0, x - x0], order=order, mode="nearest")


def _roi_points(centre_xy, size_px: int, angle_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """Image (x, y) of every ROI pixel, each (size_px, size_px)."""
    v, u = np.mgrid[0:size_px, 0:size_px].astype(np.float64)
    p = roi_to_image(np.stack([u, v], axis=-1), centre_xy, size_px, angle_rad)
    return p[..., 0], p[..., 1]


def cut_roi(image: np.ndarray, centre_xy, size_px: int, angle_rad: float = 0.0,
            edge: str = "pad") -> np.ndarray:
    """Cut a size_px x size_px ROI centred on centre_xy (x, y px), turned by angle_rad.

    Sampled with cubic B-splines; the ROI centre pixel ((size_px - 1) / 2, (size_px - 1) / 2)
    is exactly centre_xy. edge="pad" fills pixels outside the image with the nearest edge value
    as long as at most a quarter of the ROI is outside; edge="refuse" allows none outside.
    """
    image = _check_image(image)
    x, y = check_roi_inside(image.shape, centre_xy, size_px, angle_rad, edge)
    return _sample_local(image, x, y, order=3)


def check_roi_inside(shape: tuple[int, int], centre_xy, size_px: int, angle_rad: float = 0.0,
                     edge: str = "pad") -> tuple[np.ndarray, np.ndarray]:
    """InputError unless the ROI cut_roi would cut lies inside an image of `shape` as the edge
    policy demands; returns the image (x, y) of its pixels."""
    if int(size_px) != size_px or size_px < 3:
        raise InputError(f"ROI size must be a whole number of pixels >= 3, got {size_px}")
    if edge not in ("pad", "refuse"):
        raise InputError(f"edge policy must be 'pad' or 'refuse', got {edge!r}")
    size_px = int(size_px)
    rows, cols = shape
    cx, cy = (float(v) for v in centre_xy)
    if not (0 <= cx <= cols - 1 and 0 <= cy <= rows - 1):
        raise InputError(f"joint at ({cx:.1f}, {cy:.1f}) lies outside the image "
                         f"({cols} x {rows} px)")
    x, y = _roi_points((cx, cy), size_px, angle_rad)
    tol = 1e-9
    outside = (x < -tol) | (x > cols - 1 + tol) | (y < -tol) | (y > rows - 1 + tol)
    fraction = float(outside.mean())
    limit = MAX_OUTSIDE_FRACTION if edge == "pad" else 0.0
    if fraction > limit:
        raise InputError(
            f"joint at ({cx:.1f}, {cy:.1f}) is too close to the image edge: {fraction:.0%} of its "
            f"{size_px} x {size_px} px ROI falls outside the image (allowed: {limit:.0%}, "
            f"edge policy '{edge}')")
    return x, y


def estimate_axis_angle(image: np.ndarray, centre_xy, radius_px: float) -> float:
    """Direction of the finger's long axis near a joint, in radians in (-pi/2, pi/2].

    The angle t is that of the axis from the image's vertical, clockwise on screen positive:
    the distal direction is (sin t, -cos t), so cut_roi(..., angle_rad=t) shows the finger
    vertical, distal (upper) side up. Found as the direction along which line integrals of the
    intensity over a disc of radius_px around the joint vary most across the disc: lines along
    the bright bones give a profile of sharp bone-soft tissue contrast, any other direction blurs
    it (a Radon-transform orientation estimate, insensitive to the dark joint space).
    """
    image = _check_image(image)
    if not radius_px >= 3:
        raise InputError(f"axis radius must be at least 3 px, got {radius_px}")
    # About 64 samples across the disc; smoothing first so coarse sampling does not alias.
    step = max(1.0, radius_px / 32.0)
    n = int(np.ceil(radius_px / step))
    offsets = np.arange(-n, n + 1) * step
    # v along the candidate axis (every other step: a line integral needs fewer samples than the
    # profile across it: a quarter less time, angles within 0.25 deg on a generated hand), u across
    v, u = np.meshgrid(offsets[::2], offsets, indexing="ij")
    inside = u ** 2 + v ** 2 <= radius_px ** 2
    u, v = u[inside], v[inside]
    columns = np.round(u / step).astype(int) + n
    chord = np.bincount(columns, minlength=2 * n + 1)
    used = chord > 0
    cx, cy = (float(c) for c in centre_xy)
    rows, cols = image.shape
    pad = int(radius_px + 2 * step) + 2
    y0, x0 = max(0, int(cy) - pad), max(0, int(cx) - pad)
    local = np.asarray(image[y0:int(cy) + pad + 1, x0:int(cx) + pad + 1], dtype=np.float64)
    if local.size == 0:
        raise InputError(f"joint at ({cx:.1f}, {cy:.1f}) lies outside the image "
                         f"({cols} x {rows} px)")
    if step > 1:
        local = ndimage.gaussian_filter(local, step / 2.0, mode="nearest")

    # Each sample's share of its chord's mean: the profile across the disc is one matrix product.
    chord_mean = np.zeros((u.size, int(used.sum())))
    chord_mean[np.arange(u.size), np.cumsum(used)[columns] - 1] = 1.0 / chord[columns]
    weights = chord[used] / chord[used].sum()

    def spreads(angles: np.ndarray) -> np.ndarray:
        """Chord-weighted variance of the profile across the disc, for each candidate angle."""
        s, c = np.sin(angles)[:, None], np.cos(angles)[:, None]
        x = cx - x0 + u * c + v * s  # u along (cos t, sin t), v along the axis (sin t, -cos t)
        y = cy - y0 + u * s - v * c
        values = ndimage.map_coordinates(local, [y.ravel(), x.ravel()], order=1, mode="nearest")
        profiles = values.reshape(len(angles), -1) @ chord_mean
        mean = profiles @ weights
        return ((profiles - mean[:, None]) ** 2) @ weights

    scan = np.radians(np.arange(-90.0, 90.0, 3.0))
    best = scan[int(np.argmax(spreads(scan)))]
    fine = best + np.radians(np.arange(-3.0, 3.01, 0.25))
    scores = spreads(fine)
    k = int(np.clip(np.argmax(scores), 1, len(fine) - 2))
    angle = fine[k] + _parabola_peak(scores[k - 1:k + 2]) * (fine[1] - fine[0])
    # An axis is a line: fold into (-pi/2, pi/2] so "up" is the side nearest the image's up.
    return float(np.pi / 2 - np.mod(np.pi / 2 - angle, np.pi))


def _parabola_peak(three: np.ndarray) -> float:
    """Offset in [-0.5, 0.5] (in steps) of the vertex of a parabola through three samples."""
    a, b, c = three
    curvature = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0


# How far a finger's segment may turn about its proximal joint between the visits beyond the hand's own
# rotation (a finger spread or deviated otherwise), searched for its next joint.
MAX_FINGER_TURN_DEG = 25.0
# A smaller turn is read as none (the strip's correlation peaks broadly: on a film only moved as a whole
# it read 0.65 deg): the next joint, its search centred without it, is still within reach (2 mm at 40 mm).
MIN_FINGER_TURN_DEG = 3.0


SEGMENT_HALF_WIDTH_MM = 4.0  # the strip along a finger's segment matched for its turn: the bone and its edges
SEGMENT_TURN_STEP_DEG = 2.0


def segment_turn(baseline: np.ndarray, followup: np.ndarray, base_from, base_to, follow_from,
                 coarse: np.ndarray, spacing_mm: float, factor: int) -> float:
    """How much more (rad, as matrix_rotation counts) than the coarse matrix predicts the finger's segment
    from base_from to base_to (baseline px; its proximal end found at follow_from in the follow-up) turned
    about that end at follow-up: the turn, within +-MAX_FINGER_TURN_DEG, at which a strip along the
    segment (its proximal three quarters, SEGMENT_HALF_WIDTH_MM to either side) best correlates with the
    follow-up, to a fraction of SEGMENT_TURN_STEP_DEG by a parabola (0 below MIN_FINGER_TURN_DEG). Both
    are read on factor x factor block means."""
    b0, b1 = np.asarray(base_from, float), np.asarray(base_to, float)
    along = b1 - b0
    length = np.linalg.norm(along)
    t = along / max(length, 1e-9)
    n = np.array([-t[1], t[0]])
    step = float(factor)
    s_, w_ = np.meshgrid(np.arange(0.1 * length, 0.75 * length, step),
                         np.arange(-SEGMENT_HALF_WIDTH_MM / spacing_mm, SEGMENT_HALF_WIDTH_MM / spacing_mm + 1e-9, step),
                         indexing="ij")
    offsets = s_[..., None] * t + w_[..., None] * n  # baseline px from base_from
    if s_.shape[0] < 3:  # joints too close for a strip between them: nothing to read a turn from
        return 0.0
    template = _sample_binned(baseline, b0[0] + offsets[..., 0], b0[1] + offsets[..., 1], factor).ravel()
    template = template - template.mean()
    if not np.any(template):
        return 0.0
    linear = np.asarray(coarse, float)[:2, :2]
    turns = np.radians(np.arange(-MAX_FINGER_TURN_DEG, MAX_FINGER_TURN_DEG + 1e-9, SEGMENT_TURN_STEP_DEG))
    scores = []
    for turn in turns:
        q = offsets @ (_rotation(turn) @ linear).T + np.asarray(follow_from, float)
        window = _sample_binned(followup, q[..., 0], q[..., 1], factor).ravel()
        window = window - window.mean()
        scores.append(float(template @ window / (np.linalg.norm(template) * np.linalg.norm(window) + 1e-12)))
    k = int(np.argmax(scores))
    turn = float(turns[k])
    if 0 < k < len(turns) - 1:
        turn += _parabola_peak(np.array(scores[k - 1:k + 2])) * np.radians(SEGMENT_TURN_STEP_DEG)
    return turn if abs(np.degrees(turn)) >= MIN_FINGER_TURN_DEG else 0.0


def along_finger(coarse: np.ndarray, base_xy, follow_xy, turn_rad: float) -> np.ndarray:
    """The coarse matrix (baseline px -> follow-up px) for the next joint of a finger: moved so that the
    finger's last joint found (base_xy in the baseline) lands where it was found (follow_xy), and turned
    about it by turn_rad beyond the matrix's own rotation (segment_turn: a finger posed otherwise at
    follow-up; its next joint is searched where the turn puts it, and its ROI cut at that angle)."""
    linear = _rotation(turn_rad) @ np.asarray(coarse, dtype=np.float64)[:2, :2]
    m = np.eye(3)
    m[:2, :2] = linear
    m[:2, 2] = np.asarray(follow_xy, float) - linear @ np.asarray(base_xy, float)
    return m


def matrix_rotation(m: np.ndarray) -> float:
    """Rotation angle (rad, clockwise on screen positive) of the similarity part of a 3x3 matrix.

    A follow-up ROI angle is the baseline angle plus this rotation of the coarse matrix.
    """
    m = np.asarray(m, dtype=np.float64)
    return float(np.arctan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1]))


# Rotations of the hand between visits tried as starting points of the global alignment.
START_ANGLES_DEG = np.arange(-30.0, 30.1, 2.5)


def _binned(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks (trailing rows/columns that do not fill a block dropped).

    Block (i, j) is centred on original pixel (factor * j + (factor - 1) / 2, same for i) in x, y.
    """
    rows, cols = (n // factor * factor for n in image.shape)
    blocks = np.asarray(image[:rows, :cols], dtype=np.float64)
    return blocks.reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))


def _start_rotation_shift(fixed: np.ndarray, moving: np.ndarray) -> tuple[float, np.ndarray]:
    """Rough (angle_rad, shift_xy px) with moving(R(angle) (p - c) + c + shift) ~ fixed(p),
    c the centre of `fixed`: phase correlation of `fixed` turned by each START_ANGLES_DEG,
    the angle with the sharpest peak winning. Phase correlation ignores exposure differences.
    """
    rows, cols = (2 * max(a, b) for a, b in zip(fixed.shape, moving.shape))
    spectrum = np.fft.rfft2(moving - moving.mean(), (rows, cols))
    centre_yx = (np.array(fixed.shape, dtype=np.float64) - 1) / 2
    best = (-np.inf, 0.0, np.zeros(2))
    for angle in np.radians(START_ANGLES_DEG):
        c, s = np.cos(angle), np.sin(angle)
        turn_yx = np.array([[c, -s], [s, c]])  # R(-angle) of (x, y), written for (y, x)
        turned = ndimage.affine_transform(fixed, turn_yx, centre_yx - turn_yx @ centre_yx,
                                          order=1, mode="nearest")
        cross = spectrum * np.conj(np.fft.rfft2(turned - turned.mean(), (rows, cols)))
        surface = np.fft.irfft2(cross / (np.abs(cross) + 1e-12), (rows, cols))
        surface = ndimage.gaussian_filter(surface, 1.0, mode="wrap")  # peak height, not a spike
        iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)
        if surface[iy, ix] > best[0]:
            shift = [ix if ix < cols // 2 else ix - cols, iy if iy < rows // 2 else iy - rows]
            best = (surface[iy, ix], float(angle), np.array(shift, dtype=np.float64))
    return best[1], best[2]


def coarse_align(baseline: np.ndarray, followup: np.ndarray, target_px: int = 192) -> np.ndarray:
    """Global similarity (rotation, isotropic scale, shift) of two radiographs of one hand.

    Returns the 3x3 matrix acting on (x, y, 1) that maps baseline pixels to follow-up pixels.
    Both images are binned to about target_px on the baseline's longer side; a phase-correlation
    scan over rotations gives the start, then a multi-resolution SimpleITK registration with a
    correlation metric (insensitive to a different exposure between visits) refines it.
    """
    import SimpleITK as sitk

    baseline, followup = _check_image(baseline), _check_image(followup)
    if not (np.all(np.isfinite(baseline)) and np.all(np.isfinite(followup))):
        raise InputError("a radiograph has NaN or infinite intensities; they cannot be aligned")
    factor = max(1, int(round(max(baseline.shape) / target_px)))
    small = [_binned(im, factor) for im in (baseline, followup)]
    # Physical coordinates of the binned images are the original pixel coordinates (x, y).
    fixed, moving = (sitk.GetImageFromArray(im.astype(np.float32)) for im in small)
    for im in (fixed, moving):
        im.SetSpacing((float(factor), float(factor)))
        im.SetOrigin(((factor - 1) / 2.0, (factor - 1) / 2.0))
    quarter = [_binned(im, 4) for im in small]
    if min(min(q.shape) for q in quarter) < 8:
        raise InputError(f"radiographs of {baseline.shape} and {followup.shape} px are too small "
                         "or too narrow to align")
    angle, shift_px = _start_rotation_shift(*quarter)
    initial = sitk.Similarity2DTransform()
    initial.SetCenter(tuple((np.array(quarter[0].shape[::-1]) * 4 - 1) / 2.0 * factor
                            + (factor - 1) / 2.0))
    initial.SetAngle(angle)
    initial.SetTranslation(tuple(shift_px * 4.0 * factor))
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsCorrelation()
    # A regular quarter of the pixels: three times faster, still well under a pixel.
    reg.SetMetricSamplingStrategy(reg.REGULAR)
    reg.SetMetricSamplingPercentage(0.25, seed=1)
    reg.SetInterpolator(sitk.sitkLinear)
    # Steps below 0.01 px (physical units are pixels) only polish: half the time, the hand's
    # corners moved by 0.3 px, and the joint searches start from it anyway.
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-2,
                                                 numberOfIterations=200,
                                                 gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(initial, inPlace=False)
    try:
        transform = reg.Execute(fixed, moving)
    except RuntimeError as exc:
        raise InputError(f"the two radiographs could not be aligned: {exc}") from None
    # Physical coordinates are pixel coordinates: read the matrix off three mapped points.
    origin = np.array(transform.TransformPoint((0.0, 0.0)))
    m = np.eye(3)
    m[:2, 0] = np.array(transform.TransformPoint((1.0, 0.0))) - origin
    m[:2, 1] = np.array(transform.TransformPoint((0.0, 1.0))) - origin
    m[:2, 2] = origin
    return m


def _ncc_map(window: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of `template` at every position fully inside `window`."""
    t = template - template.mean()
    (wr, wc), (tr, tc) = window.shape, t.shape
    shape = (fft.next_fast_len(wr, real=True), fft.next_fast_len(wc, real=True))
    valid = (slice(tr - 1, wr), slice(tc - 1, wc))

    def correlate(image: np.ndarray, kernel_spectrum: np.ndarray) -> np.ndarray:
        return fft.irfft2(fft.rfft2(image, shape) * kernel_spectrum, shape)[valid]

    numerator = correlate(window, fft.rfft2(t[::-1, ::-1], shape))
    box = fft.rfft2(np.ones_like(t), shape)
    sums, squares = correlate(window, box), correlate(window ** 2, box)
    variance = np.maximum(squares - sums ** 2 / t.size, 1e-12)
    return numerator / np.sqrt(variance * np.sum(t ** 2))


# Joint searches run on block means of the images, so that the template has about this many
# pixels a side (a 22 mm ROI at 0.1 mm/px: blocks of 3 px); the registration refines the position.
SEARCH_TEMPLATE_PX = 64


def _sample_binned(image: np.ndarray, x: np.ndarray, y: np.ndarray, factor: int) -> np.ndarray:
    """Linear interpolation at (x, y) (px of `image`) of its factor x factor block means, on a
    local crop (edge values outside): a search at reduced resolution without aliasing noise."""
    if factor == 1:
        return _sample_local(image, x, y, order=1)
    rows, cols = image.shape
    margin = 2 * factor
    x0 = int(np.clip(np.floor(x.min()) - margin, 0, cols - 1))
    y0 = int(np.clip(np.floor(y.min()) - margin, 0, rows - 1))
    x1 = int(np.clip(np.ceil(x.max()) + margin + 1, x0 + factor, cols))
    y1 = int(np.clip(np.ceil(y.max()) + margin + 1, y0 + factor, rows))
    blocks = _binned(image[y0:y1, x0:x1], factor)
    # Block j is centred on crop pixel factor * j + (factor - 1) / 2.
    return ndimage.map_coordinates(blocks, [(y - y0 - (factor - 1) / 2) / factor,
                                            (x - x0 - (factor - 1) / 2) / factor], order=1, mode="nearest")


def locate_joint(baseline: np.ndarray, followup: np.ndarray, centre_xy, size_px: int,
                 coarse: np.ndarray, search_px: int | None = None,
                 turns_deg: tuple[float, ...] = (-6.0, 0.0, 6.0)) -> tuple[float, float]:
    """Centre (x, y) px in the follow-up of the joint at centre_xy in the baseline.

    The coarse matrix (baseline px -> follow-up px) predicts the position; the baseline ROI
    (size_px, axis-aligned) is then matched by normalised cross-correlation within search_px
    (default size_px / 4) of the prediction, with the follow-up sampled through the coarse
    matrix so rotation and scale between visits are undone, also turned by each of turns_deg
    about the joint for a finger posed differently. Both are sampled on a grid of block means
    (about SEARCH_TEMPLATE_PX blocks across the ROI), and the best peak is located to a fraction
    of a block by a parabola through its neighbours (within a pixel or two at full resolution).
    The follow-up ROI angle is the baseline angle plus matrix_rotation(coarse).
    """
    baseline, followup = _check_image(baseline), _check_image(followup)
    size_px = int(size_px)
    search = int(round(size_px / 4 if search_px is None else search_px))
    if search < 1:
        raise InputError(f"search radius must be at least 1 px, got {search_px}")
    factor = max(1, size_px // SEARCH_TEMPLATE_PX)
    coarse = np.asarray(coarse, dtype=np.float64)
    centre = np.asarray(centre_xy, dtype=np.float64)
    rows, cols = followup.shape
    predicted = coarse[:2, :2] @ centre + coarse[:2, 2]
    if not (0 <= predicted[0] <= cols - 1 and 0 <= predicted[1] <= rows - 1):
        raise InputError(f"joint at ({centre[0]:.1f}, {centre[1]:.1f}) is predicted outside the "
                         f"follow-up, at ({predicted[0]:.1f}, {predicted[1]:.1f})")
    # Offsets from the joint (baseline px) on the block grid: template and search window.
    n_template, n_search = max(3, size_px // factor), max(1, int(np.ceil(search / factor)))
    n_window = n_template + 2 * n_search

    def grid(n: int) -> np.ndarray:
        return (np.stack(np.mgrid[0:n, 0:n][::-1], axis=-1) - (n - 1) / 2.0) * factor

    t_points = grid(n_template) + centre
    template = _sample_binned(baseline, t_points[..., 0], t_points[..., 1], factor)
    if np.ptp(template) < 1e-6:
        raise InputError(f"joint at ({centre_xy[0]:.1f}, {centre_xy[1]:.1f}) shows no structure "
                         "to find in the follow-up")
    offsets = grid(n_window)
    best = (-np.inf, None)
    for turn in np.radians(turns_deg):
        # Baseline offsets from the joint, turned about it, then through the coarse matrix.
        local = coarse[:2, :2] @ _rotation(turn)
        points = (offsets @ local.T) + predicted
        window = _sample_binned(followup, points[..., 0], points[..., 1], factor)
        scores = _ncc_map(window, template)
        iy, ix = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if scores[iy, ix] > best[0]:
            best = (scores[iy, ix], (scores, iy, ix, local))
    scores, iy, ix, local = best[1]
    dx = ix + (_parabola_peak(scores[iy, ix - 1:ix + 2]) if 0 < ix < scores.shape[1] - 1 else 0.0)
    dy = iy + (_parabola_peak(scores[iy - 1:iy + 2, ix]) if 0 < iy < scores.shape[0] - 1 else 0.0)
    found = predicted + local @ ((np.array([dx, dy]) - n_search) * factor)
    return float(found[0]), float(found[1])
