"""The transform convention every number depends on: q = c + s R (p - c) + (dx, dy)."""

import numpy as np
import pytest

from jsnreg.transforms import (BoneMotion, compose, from_matrix, map_points, matrix, roi_centre, warp_to_fixed,
                               warp_to_moving)


def test_centre_moves_by_dx_dy_whatever_scale_and_rotation():
    c = roi_centre((127, 127))
    m = BoneMotion(scale=1.05, dtheta_rad=0.2, dx_px=1.25, dy_px=-0.75)
    q = map_points(m, np.array([c]), c)[0]
    assert q == pytest.approx([c[0] + 1.25, c[1] - 0.75])


def test_positive_rotation_turns_clockwise_on_screen():
    c = roi_centre((101, 101))
    right_of_centre = np.array([[c[0] + 10, c[1]]])
    q = map_points(BoneMotion(dtheta_rad=np.pi / 2), right_of_centre, c)[0]
    assert q == pytest.approx([c[0], c[1] + 10])  # rows grow downwards: the point went down


def test_matrix_round_trip():
    c = roi_centre((80, 160))
    m = BoneMotion(0.97, -0.08, 3.5, 2.25)
    back = from_matrix(matrix(m, c), c)
    assert back.as_tuple() == pytest.approx(m.as_tuple())


def test_warp_to_fixed_undoes_warp_to_moving():
    rng = np.random.default_rng(1)
    from scipy import ndimage
    img = ndimage.gaussian_filter(rng.random((64, 64)), 2.0)
    m = BoneMotion(1.02, 0.05, 1.7, -2.3)
    back = warp_to_fixed(warp_to_moving(img, m, cval=0.0), m)
    inner = np.s_[12:-12, 12:-12]
    assert np.nanmax(np.abs(back[inner] - img[inner])) < 2e-3 * np.ptp(img)


def test_moving_image_of_a_bone_shifted_down_has_positive_dy():
    img = np.zeros((41, 41))
    img[10, 20] = 1.0
    moved = warp_to_moving(img, BoneMotion(dy_px=3.0), order=1, cval=0.0)
    assert np.unravel_index(np.argmax(moved), moved.shape) == (13, 20)


def test_compose_is_the_product_of_the_motions_matrices_about_any_centre():
    rng = np.random.default_rng(3)
    for _ in range(200):
        first, then = (BoneMotion(*rng.uniform([0.9, -0.5, -10, -10], [1.1, 0.5, 10, 10])) for _ in range(2))
        for centre in ((63.5, 63.5), (79.5, 39.5), (0.0, 0.0)):
            expected = from_matrix(matrix(then, centre) @ matrix(first, centre), centre)
            np.testing.assert_allclose(compose(first, then).as_tuple(), expected.as_tuple(), atol=1e-12)
    # rotations add, wrapped into (-pi, pi] as the matrices give them
    turned = compose(BoneMotion(dtheta_rad=3.0), BoneMotion(dtheta_rad=0.5))
    assert abs(turned.dtheta_rad - (3.5 - 2 * np.pi)) < 1e-12
