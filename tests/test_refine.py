"""Per-bone refinement recovers known motions to sub-pixel precision, despite exposure and outliers."""

import numpy as np
import pytest
from scipy import ndimage

from jsnreg.refine import refine_bone
from jsnreg.transforms import IDENTITY, BoneMotion, warp_to_moving


def _texture(shape=(96, 96), seed=0):
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape), 2.5)
    return (img - img.min()) / np.ptp(img)


def _pair(truth, noise=0.01, gain=1.0, offset=0.0, seed=0):
    rng = np.random.default_rng(seed + 100)
    fixed = _texture(seed=seed)
    moving = warp_to_moving(fixed, truth, cval=0.5)
    moving = gain * moving + offset
    return fixed + rng.normal(0, noise, fixed.shape), moving + rng.normal(0, noise, fixed.shape)


def _region(shape=(96, 96), border=14):
    region = np.zeros(shape, bool)
    region[border:-border, border:-border] = True
    return region


@pytest.mark.parametrize("truth", [BoneMotion(1.0, 0.0, 0.37, -0.61), BoneMotion(1.03, 0.06, -2.2, 1.4)])
def test_recovers_motion_from_identity(truth):
    fixed, moving = _pair(truth)
    r = refine_bone(fixed, moving, _region(), IDENTITY)
    assert r.converged
    assert r.motion.dx_px == pytest.approx(truth.dx_px, abs=0.03)
    assert r.motion.dy_px == pytest.approx(truth.dy_px, abs=0.03)
    assert r.motion.dtheta_rad == pytest.approx(truth.dtheta_rad, abs=2e-3)
    assert r.motion.scale == pytest.approx(truth.scale, abs=2e-3)
    assert 0 < r.sd_dy_px < 0.03  # precision estimate is small and finite


def test_exposure_change_does_not_move_the_estimate():
    truth = BoneMotion(1.0, 0.01, 0.8, 0.45)
    fixed, moving = _pair(truth, gain=0.8, offset=0.1)
    r = refine_bone(fixed, moving, _region(), IDENTITY)
    assert r.motion.dy_px == pytest.approx(truth.dy_px, abs=0.03)
    assert r.gain == pytest.approx(1 / 0.8, rel=0.05)


def test_a_local_change_is_down_weighted():
    truth = BoneMotion(1.0, 0.0, 0.5, 0.9)
    fixed, moving = _pair(truth)
    moving[30:45, 30:45] = 1.0  # e.g. an erosion or a marker: a large local change
    r = refine_bone(fixed, moving, _region(), IDENTITY)
    assert r.motion.dy_px == pytest.approx(truth.dy_px, abs=0.05)
    assert r.inlier_fraction < 0.99


def test_noise_raises_the_predicted_sd():
    truth = BoneMotion(1.0, 0.0, 0.3, 0.3)
    quiet = refine_bone(*_pair(truth, noise=0.005), _region(), IDENTITY)
    noisy = refine_bone(*_pair(truth, noise=0.04), _region(), IDENTITY)
    assert noisy.sd_dy_px > 3 * quiet.sd_dy_px
