"""The refinement recovers known motions to sub-pixel precision, despite exposure, blur and outliers."""

import numpy as np
import pytest
from scipy import ndimage

from jsnreg.refine import clipped, refine_bones
from jsnreg.transforms import IDENTITY, BoneMotion, warp_to_moving


def refine_one(fixed, moving, region, init=IDENTITY):
    """One bone: its fit and the shared terms."""
    r = refine_bones(fixed, moving, [region], [init])
    return r.bones[0], r


def _texture(shape=(96, 96), seed=0):
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape), 2.5)
    return (img - img.min()) / np.ptp(img)


def _pair(truth, noise=0.01, gain=1.0, offset=0.0, gamma=1.0, blur_px=0.0, seed=0):
    """Fixed and moving textures; the moving one moved, then blurred and tone-mapped."""
    rng = np.random.default_rng(seed + 100)
    fixed = _texture(seed=seed)
    moving = warp_to_moving(fixed, truth, cval=0.5)
    if blur_px:
        moving = ndimage.gaussian_filter(moving, blur_px)
    moving = gain * moving ** gamma + offset
    return fixed + rng.normal(0, noise, fixed.shape), moving + rng.normal(0, noise, fixed.shape)


def _region(shape=(96, 96), border=14):
    region = np.zeros(shape, bool)
    region[border:-border, border:-border] = True
    return region


@pytest.mark.parametrize("truth", [BoneMotion(1.0, 0.0, 0.37, -0.61), BoneMotion(1.03, 0.06, -2.2, 1.4)])
def test_recovers_motion_from_identity(truth):
    fixed, moving = _pair(truth)
    b, r = refine_one(fixed, moving, _region())
    assert r.converged
    assert b.motion.dx_px == pytest.approx(truth.dx_px, abs=0.03)
    assert b.motion.dy_px == pytest.approx(truth.dy_px, abs=0.03)
    assert b.motion.dtheta_rad == pytest.approx(truth.dtheta_rad, abs=2e-3)
    assert b.motion.scale == pytest.approx(truth.scale, abs=2e-3)
    assert 0 < b.sd_dy_px < 0.03  # precision estimate is small and finite


@pytest.mark.parametrize("gamma", [1.0, 0.8, 1.25])
def test_exposure_and_tone_change_do_not_move_the_estimate(gamma):
    truth = BoneMotion(1.0, 0.01, 0.8, 0.45)
    fixed, moving = _pair(truth, gain=0.8, offset=0.1, gamma=gamma, noise=0.002)
    b, r = refine_one(fixed, moving, _region())
    assert b.motion.dy_px == pytest.approx(truth.dy_px, abs=0.02)
    assert b.motion.dx_px == pytest.approx(truth.dx_px, abs=0.02)
    # The fitted tone curve maps the follow-up's intensities back onto the baseline's.
    level = np.linspace(0.2, 0.8, 7)
    c0, c1, c2 = r.tone
    mapped = 0.8 * level ** gamma + 0.1
    assert c0 + c1 * mapped + c2 * mapped ** 2 == pytest.approx(level, abs=0.02)


@pytest.mark.parametrize("blur_fixed, blur_moving", [(0.0, 1.1), (1.1, 0.0)])
def test_a_blur_difference_is_estimated_and_does_not_move_the_estimate(blur_fixed, blur_moving):
    truth = BoneMotion(1.02, -0.03, -1.3, 0.7)
    fixed, moving = _pair(truth, blur_px=blur_moving, noise=0.002)
    if blur_fixed:
        fixed = ndimage.gaussian_filter(fixed, blur_fixed)
    b, r = refine_one(fixed, moving, _region())
    assert r.blur_px2 == pytest.approx(blur_moving ** 2 - blur_fixed ** 2, abs=0.3)
    assert b.motion.dy_px == pytest.approx(truth.dy_px, abs=0.02)
    assert b.motion.scale == pytest.approx(truth.scale, abs=1e-3)


def test_a_local_change_is_down_weighted():
    truth = BoneMotion(1.0, 0.0, 0.5, 0.9)
    fixed, moving = _pair(truth)
    # e.g. an erosion: a large local change, noisy as the rest of the film (a flat one would be a clip)
    moving[30:45, 30:45] = 1.0 + np.random.default_rng(1).normal(0, 0.01, (15, 15))
    b, r = refine_one(fixed, moving, _region())
    assert b.motion.dy_px == pytest.approx(truth.dy_px, abs=0.05)
    assert b.inlier_fraction < 0.99


def test_noise_raises_the_predicted_sd():
    truth = BoneMotion(1.0, 0.0, 0.3, 0.3)
    quiet, _ = refine_one(*_pair(truth, noise=0.005), _region())
    noisy, _ = refine_one(*_pair(truth, noise=0.04), _region())
    assert noisy.sd_dy_px > 3 * quiet.sd_dy_px


def test_two_bones_share_the_scale_and_move_on_their_own():
    """Upper half moved one way, lower half another, one magnification: each bone's motion and
    the JSN's predicted SD come back."""
    up_truth, lo_truth = BoneMotion(1.02, 0.02, 1.1, -0.4), BoneMotion(1.02, -0.03, -0.7, 0.9)
    fixed, moving_up = _pair(up_truth, noise=0.005)
    _, moving_lo = _pair(lo_truth, noise=0.005)
    rows = np.arange(fixed.shape[0])[:, None]
    moving = np.where(rows < fixed.shape[0] // 2, moving_up, moving_lo)
    upper, lower = _region(), _region()
    upper[fixed.shape[0] // 2 - 4:] = False
    lower[:fixed.shape[0] // 2 + 4] = False
    r = refine_bones(fixed, moving, [upper, lower], [IDENTITY, IDENTITY])
    for fit, truth in zip(r.bones, (up_truth, lo_truth)):
        assert fit.motion.scale == pytest.approx(1.02, abs=2e-3)
        assert fit.motion.dtheta_rad == pytest.approx(truth.dtheta_rad, abs=3e-3)
        assert fit.motion.dy_px == pytest.approx(truth.dy_px, abs=0.03)
        assert fit.motion.dx_px == pytest.approx(truth.dx_px, abs=0.03)
    assert r.bones[0].motion.scale == r.bones[1].motion.scale
    assert 0 < r.sd_jsn_px < 0.05


def test_soft_tissue_that_moves_with_the_finger_is_modelled():
    """Two bones under a finger's soft profile that moved 1.5 px across with the finger, not with
    them: unmodelled it drags the bones' dx (and dy); the soft-tissue term takes it up."""
    up_truth, lo_truth = BoneMotion(1.0, 0.01, 0.8, -0.4), BoneMotion(1.0, -0.01, -0.6, 0.7)
    fixed, moving_up = _pair(up_truth, noise=0.005)
    _, moving_lo = _pair(lo_truth, noise=0.005)
    rows = np.arange(fixed.shape[0])[:, None]
    moving = np.where(rows < fixed.shape[0] // 2, moving_up, moving_lo)
    x = np.arange(fixed.shape[1])
    finger = lambda x: 0.5 * (np.tanh((x - 24) / 5) - np.tanh((x - 72) / 5))  # noqa: E731
    fixed = 0.5 * fixed + 0.4 * finger(x)[None, :]
    moving = 0.5 * moving + 0.4 * finger(x - 1.5)[None, :]
    upper, lower = _region(), _region()
    upper[fixed.shape[0] // 2 - 4:] = False
    lower[:fixed.shape[0] // 2 + 4] = False
    slope = np.gradient(finger(x))
    plain = refine_bones(fixed, moving, [upper, lower], [IDENTITY, IDENTITY])
    soft = refine_bones(fixed, moving, [upper, lower], [IDENTITY, IDENTITY], soft_slope=slope / np.abs(slope).max())
    assert max(abs(b.motion.dx_px - t.dx_px) for b, t in zip(plain.bones, (up_truth, lo_truth))) > 0.2
    for fit, truth in zip(soft.bones, (up_truth, lo_truth)):
        assert fit.motion.dx_px == pytest.approx(truth.dx_px, abs=0.05)
        assert fit.motion.dy_px == pytest.approx(truth.dy_px, abs=0.03)


def test_clipped_pixels_are_found_and_left_out():
    truth = BoneMotion(1.0, 0.0, 0.6, -0.8)
    fixed, moving = _pair(truth, noise=0.005)
    bright = moving > np.percentile(moving, 70)
    moving_clipped = np.where(bright, moving.max(), moving)  # a saturated follow-up
    assert not clipped(moving).any()
    assert clipped(moving_clipped)[bright].all()
    b, _ = refine_one(fixed, moving_clipped, _region())
    assert 0.1 < b.usable_fraction < 0.7  # 30 % clipped, and a margin round them
    assert b.motion.dy_px == pytest.approx(truth.dy_px, abs=0.05)


def _resampled(image, dy=0.37, dx=0.21):
    """The image read at a sub-pixel shift with cubic splines, as an ROI is cut from its film."""
    rows, cols = np.meshgrid(np.arange(image.shape[0]) + dy, np.arange(image.shape[1]) + dx, indexing="ij")
    return ndimage.map_coordinates(image, [rows, cols], order=3, mode="nearest")


@pytest.mark.parametrize("share", [30, 50])
def test_a_resampled_clip_is_still_found(share):
    """A saturated follow-up cut with cubic splines no longer holds one value (the splines ring about
    it): most of its saturated pixels are still found, and no pixel beyond the clip's margin."""
    from jsnreg.refine import CLIP_MARGIN_PX

    _, moving = _pair(BoneMotion(1.0, 0.0, 0.6, -0.8), noise=0.01)
    level = np.percentile(moving, 100 - share)
    saturated = np.minimum(moving, level)
    found = clipped(_resampled(saturated))
    assert found[saturated == level].mean() > 0.5
    assert not found[~ndimage.binary_dilation(saturated == level, iterations=CLIP_MARGIN_PX + 1)].any()


def test_cubic_gather_reads_the_spline_as_map_coordinates():
    """The numpy gather of large reads (refine._at) gives map_coordinates' values inside the image,
    up to its edges, and finite values beyond them (which the refinement leaves out)."""
    from jsnreg import refine

    spline = refine._spline(_texture((40, 56)))
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(0, 55, 3000), [0.0, 55.0, 0.0, 55.0]])
    y = np.concatenate([rng.uniform(0, 39, 3000), [0.0, 39.0, 39.0, 0.0]])
    assert len(x) >= refine.GATHER_MIN_POINTS
    expected = ndimage.map_coordinates(spline.coeffs, [y, x], order=3, prefilter=False, mode="mirror")
    assert np.abs(refine._at(spline, x, y) - expected).max() < 1e-12
    beyond = refine._at(spline, x + 60.0, y - 50.0)
    assert np.isfinite(beyond).all()
