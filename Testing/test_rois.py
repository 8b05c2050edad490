import numpy as np
import pytest
from scipy import ndimage

from jsnreg.errors import InputError
from jsnreg.rois import (coarse_align, cut_roi, estimate_axis_angle, image_to_roi, locate_joint,
                         matrix_rotation, roi_to_image)


def finger(shape, centre, angle_rad, gap=6.0, noise=0.02, seed=0):
    """Two bright rounded bones (width 36, length 70 px) on soft tissue, a dark gap between them,
    along the distal direction (sin a, -cos a) through `centre`; the distal bone slightly
    brighter."""
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(float)
    dx, dy = x - centre[0], y - centre[1]
    along = dx * np.sin(angle_rad) - dy * np.cos(angle_rad)
    across = dx * np.cos(angle_rad) + dy * np.sin(angle_rad)
    image = 0.1 + 0.2 * (np.abs(across) < 29)
    for side, brightness in ((1, 0.85), (-1, 0.75)):
        s = side * along - gap / 2 - 35
        corner = np.hypot(np.maximum(np.abs(s) - 27, 0), np.maximum(np.abs(across) - 10, 0))
        image = np.where(corner < 8, brightness, image)
    image = ndimage.gaussian_filter(image, 1.2)
    return image + np.random.default_rng(seed).normal(0, noise, shape)


def textured_hand(shape, seed=1):
    """Bright textured palm and fingers (ellipses) on a dark background."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(float)
    hand = np.zeros(shape)
    for cx, cy, a, b in [(0.5, 0.7, 0.3, 0.2), (0.3, 0.35, 0.05, 0.2), (0.45, 0.3, 0.05, 0.25),
                         (0.6, 0.32, 0.05, 0.22), (0.75, 0.4, 0.05, 0.18)]:
        hand[((x - cx * cols) / (a * cols)) ** 2 + ((y - cy * rows) / (b * rows)) ** 2 < 1] = 0.5
    texture = ndimage.gaussian_filter(rng.normal(size=shape), 3.0)
    return np.clip(ndimage.gaussian_filter(hand, 2.0) + 0.3 * hand * texture / texture.std()
                   + 0.05, 0, 1)


def similarity(angle_deg, scale, shift_xy, centre_xy):
    """3x3 matrix on (x, y, 1): rotation (clockwise on screen), scale about centre, then shift."""
    a = np.radians(angle_deg)
    rs = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m = np.eye(3)
    m[:2, :2] = rs
    m[:2, 2] = np.asarray(centre_xy) - rs @ centre_xy + shift_xy
    return m


def moved(image, m, cval=0.05):
    """The image content moved by m: out(q) = image(m^-1 q)."""
    inv = np.linalg.inv(m)
    y, x = np.mgrid[0:image.shape[0], 0:image.shape[1]].astype(float)
    return ndimage.map_coordinates(image, [inv[1, 0] * x + inv[1, 1] * y + inv[1, 2],
                                           inv[0, 0] * x + inv[0, 1] * y + inv[0, 2]],
                                   order=3, mode="constant", cval=cval)


@pytest.mark.parametrize("tilt_deg", [-50.0, -12.0, 0.0, 7.0, 33.0, 85.0])
def test_axis_angle_of_a_tilted_finger(tilt_deg):
    centre = (150.4, 160.7)
    image = finger((320, 300), centre, np.radians(tilt_deg))
    angle = estimate_axis_angle(image, centre, 60)
    assert -np.pi / 2 < angle <= np.pi / 2
    assert abs(np.degrees(angle) - tilt_deg) < 2.0


def test_cutting_along_the_axis_shows_the_finger_upright():
    centre = (150.4, 160.7)
    upright = cut_roi(finger((320, 300), centre, 0.0, noise=0), centre, 101)
    tilted = finger((320, 300), centre, np.radians(-23.0), noise=0)
    roi = cut_roi(tilted, centre, 101, estimate_axis_angle(tilted, centre, 50))
    assert np.mean(np.abs(roi - upright)) < 0.01
    # The brighter distal bone is on top: the ROI is not upside down.
    assert roi[:45].mean() > roi[-45:].mean() + 0.03


def test_roi_centre_lands_exactly_on_the_given_point():
    centre = (40.37, 55.81)
    y, x = np.mgrid[0:100, 0:90].astype(float)
    dot = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * 2.0 ** 2))
    for angle in (0.0, 0.3, -1.1):
        roi = cut_roi(dot, centre, 21, angle)
        v, u = np.mgrid[0:21, 0:21]
        assert np.unravel_index(np.argmax(roi), roi.shape) == (10, 10)
        assert np.sum(roi * u) / roi.sum() == pytest.approx(10.0, abs=0.01)
        assert np.sum(roi * v) / roi.sum() == pytest.approx(10.0, abs=0.01)


def test_cut_samples_the_image_at_the_mapped_points():
    y, x = np.mgrid[0:120, 0:110].astype(float)
    smooth = lambda x, y: 0.5 + 0.3 * np.sin(0.11 * x + 0.05 * y) * np.cos(0.07 * y)  # noqa: E731
    centre, size, angle = (52.3, 61.9), 41, 0.4
    roi = cut_roi(smooth(x, y), centre, size, angle)
    v, u = np.mgrid[0:size, 0:size].astype(float)
    p = roi_to_image(np.stack([u, v], axis=-1), centre, size, angle)
    np.testing.assert_allclose(roi, smooth(p[..., 0], p[..., 1]), atol=2e-4)


def test_roi_and_image_coordinates_round_trip():
    points = np.random.default_rng(0).uniform(-20, 80, size=(50, 2))
    for angle in (0.0, 0.7, -1.3):
        back = roi_to_image(image_to_roi(points, (31.5, 40.2), 61, angle), (31.5, 40.2), 61, angle)
        np.testing.assert_allclose(back, points, atol=1e-10)
    np.testing.assert_allclose(roi_to_image([30.0, 30.0], (31.5, 40.2), 61, 0.7), [31.5, 40.2])
    # The ROI's up (0, -1) points along the finger's distal direction (sin t, -cos t).
    t = 0.7
    up = roi_to_image([[30.0, 29.0]], (0, 0), 61, t) - roi_to_image([[30.0, 30.0]], (0, 0), 61, t)
    np.testing.assert_allclose(up[0], [np.sin(t), -np.cos(t)], atol=1e-12)


def test_edge_policy_pads_up_to_a_quarter_and_refuses_beyond():
    y, x = np.mgrid[0:100, 0:100].astype(float)
    image = 0.5 + 0.4 * np.sin(0.2 * y) * np.cos(0.03 * x)
    roi = cut_roi(image, (10.0, 50.0), 41)  # columns x = -10 .. 30: 10 of 41 outside
    np.testing.assert_allclose(roi[:, :10], np.repeat(image[30:71, :1], 10, axis=1), atol=1e-3)
    with pytest.raises(InputError, match="too close to the image edge"):
        cut_roi(image, (8.0, 50.0), 41)  # 12 of 41 columns outside
    with pytest.raises(InputError, match="too close to the image edge"):
        cut_roi(image, (10.0, 50.0), 41, edge="refuse")
    assert cut_roi(image, (20.0, 50.0), 41, edge="refuse").shape == (41, 41)
    with pytest.raises(InputError, match="outside the image"):
        cut_roi(image, (120.0, 50.0), 41)


def test_matrix_rotation_reads_the_angle_of_a_similarity():
    assert matrix_rotation(similarity(-17.0, 1.2, (5, 3), (40, 30))) == \
        pytest.approx(np.radians(-17.0))


def test_coarse_align_recovers_a_known_similarity_despite_other_exposure():
    shape = (480, 400)
    baseline = textured_hand(shape)
    truth = similarity(7.0, 1.05, (18.0, -11.0), (200.0, 240.0))
    followup = 0.75 * np.clip(moved(baseline, truth), 0, 1) ** 1.2 + 0.1  # another exposure
    followup += np.random.default_rng(2).normal(0, 0.01, shape)
    estimate = coarse_align(baseline, followup)
    corners = np.array([[40, 40, 1], [360, 40, 1], [40, 440, 1], [360, 440, 1]], float).T
    assert np.abs((estimate @ corners - truth @ corners)[:2]).max() < 1.0
    assert abs(np.degrees(matrix_rotation(estimate)) - 7.0) < 0.5


def test_locate_joint_finds_a_displaced_joint_to_sub_pixel():
    shape = (480, 400)
    baseline = textured_hand(shape)
    joint = (180.0, 150.0)  # on a finger
    shift = np.array([3.3, -2.6])
    followup = moved(baseline, similarity(0.0, 1.0, shift, joint))
    found = locate_joint(baseline, followup, joint, 61, np.eye(3))
    np.testing.assert_allclose(found, np.array(joint) + shift, atol=0.5)
    # Through a rotated, scaled follow-up with its coarse matrix, plus a local offset of the joint.
    truth = similarity(9.0, 0.96, (12.0, 7.0), (200.0, 240.0))
    local = similarity(0.0, 1.0, shift, joint)
    followup = moved(baseline, truth @ local)
    found = locate_joint(baseline, followup, joint, 61, truth)
    expected = (truth @ local @ [*joint, 1.0])[:2]
    np.testing.assert_allclose(found, expected, atol=0.5)


def test_locate_joint_refuses_a_prediction_outside_the_follow_up():
    image = textured_hand((200, 160))
    with pytest.raises(InputError, match="predicted outside"):
        locate_joint(image, image, (80.0, 60.0), 31, similarity(0.0, 1.0, (500.0, 0.0), (0, 0)))
