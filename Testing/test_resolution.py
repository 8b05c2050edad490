"""Registration at a working resolution: sizes, grids, and results taken back to full resolution."""

import numpy as np
import pytest

from jsnreg import quantify as q
from jsnreg import resolution, split
from jsnreg.images import Radiograph
from jsnreg.joints import JointSpec
from jsnreg.synthetic import make_hand_pair, make_joint_pair


def test_factor_and_sizes_follow_the_spacing():
    assert [resolution.work_factor(s) for s in (0.04, 0.1, 0.15, 0.175, 0.2, 0.3)] == [4, 2, 1, 1, 1, 1]
    assert resolution.roi_sizes_px(22.0, 0.1, 2) == (222, 111)
    assert resolution.roi_sizes_px(22.0, 0.175, 1) == (127, 127)  # the published work's ROI


def test_block_means_share_the_centre_of_the_full_grid():
    x = np.arange(12, dtype=float)
    ramp = np.add.outer(10 * x, x)  # value = 10 * row + column
    small = resolution.block_mean(ramp, 3)
    # Block (i, j) is the value at full pixel (3 i + 1, 3 j + 1): the centres coincide.
    np.testing.assert_allclose(small, np.add.outer(10 * (3 * np.arange(4) + 1), 3 * np.arange(4) + 1))
    with pytest.raises(ValueError):
        resolution.block_mean(ramp[:11], 3)


def test_boundary_scales_to_the_full_grid():
    full = resolution.boundary_to_full(np.full(5, 2.5), 2, 10)
    np.testing.assert_allclose(full, 5.0)
    # Across, the boundary is read at each full column's centre: a sloping one stays on its line.
    rows_w = 2.0 + 0.5 * np.arange(5)
    full = resolution.boundary_to_full(rows_w, 2, 10)
    c = np.arange(1, 9)  # full columns whose centres lie between the first and last working ones
    np.testing.assert_allclose(full[c], 2 * (2.0 + 0.5 * (c - 0.5) / 2))


@pytest.mark.parametrize("seed", [3, 4])
def test_reduced_resolution_recovers_a_known_jsn_in_original_pixels(engine, seed):
    # A 222 px pair at 0.1 mm with exact per-bone truth, measured on 2 x 2 block means.
    pair = make_joint_pair(np.random.default_rng(seed), size_px=222, spacing_mm=0.1, noise_sigma=0.01,
                           jsn_mm=0.4, max_rotation_deg=3.0)
    work = resolution.register_roi(engine, pair.fixed, pair.moving, 0.1, 2)
    full = resolution.register_roi(engine, pair.fixed, pair.moving, 0.1, 1)
    assert work.jsn_px == pytest.approx(pair.jsn_px, abs=0.15)  # px of the 222 px ROI
    assert work.jsn_mm == pytest.approx(pair.jsn_px * 0.1, abs=0.015)
    assert work.jsn_px == pytest.approx(full.jsn_px, abs=0.15)
    for got, truth in ((work.upper, pair.upper), (work.lower, pair.lower)):
        assert got.dy_px == pytest.approx(truth.dy_px, abs=0.3)
        assert got.dx_px == pytest.approx(truth.dx_px, abs=0.3)
    assert work.spacing_mm == 0.1
    assert work.details["working_resolution"] == {"factor": 2, "spacing_mm": 0.2, "roi_px": 111}
    # The network's estimate and the split are in the same full-resolution pixels.
    assert work.details["network"]["jsn_px"] == pytest.approx(pair.jsn_px, abs=1.5)
    assert len(work.details["split_rows"]) == 222


def test_images_are_at_full_resolution_and_match_the_numbers(engine):
    pair = make_joint_pair(np.random.default_rng(5), size_px=222, spacing_mm=0.1, noise_sigma=0.01)
    r = resolution.register_roi(engine, pair.fixed, pair.moving, 0.1, 2)
    assert r.images.fixed.shape == r.images.upper_mask.shape == r.images.warped().shape == (222, 222)
    assert np.array_equal(r.images.fixed, pair.fixed)
    assert r.mse_before == pytest.approx(float(np.mean(r.images.loss_before())))
    assert r.mse_after == pytest.approx(float(np.nanmean(r.images.loss_after())))
    assert r.mse_after < r.mse_before
    mask = split.upper_mask_from_rows((222, 222), np.asarray(r.details["split_rows"]))
    assert np.array_equal(mask, r.images.upper_mask)


def test_result_format_is_the_same_at_both_resolutions(engine):
    pair = make_joint_pair(np.random.default_rng(6), size_px=222, spacing_mm=0.1, noise_sigma=0.01)
    work = resolution.register_roi(engine, pair.fixed, pair.moving, 0.1, 2).to_dict()
    full = resolution.register_roi(engine, pair.fixed, pair.moving, 0.1, 1).to_dict()
    assert work.keys() == full.keys()
    assert set(work["details"]) == set(full["details"]) | {"working_resolution"}
    assert work["upper"].keys() == full["upper"].keys()


def test_quantify_at_working_resolution_rebuilds_the_same_images(engine):
    hand = make_hand_pair(seed=1)  # 0.2 mm/px: forced to 2 x 2 blocks here
    base, follow = Radiograph(hand.baseline, 0.2, {}), Radiograph(hand.followup, 0.2, {})
    joints = [JointSpec(n, *hand.joints[n]) for n in ("PIP3", "MCP2")]
    results = q.quantify(base, follow, joints, q.Settings(work_factor=2), engine=engine)
    for r in results:
        assert r.position["work_factor"] == 2 and r.position["roi_size_px"] == 110
        # 0.4 mm working pixels, twice as coarse as the method chooses: the numbers still hold.
        assert r.jsn_mm == pytest.approx(hand.truth_jsn_mm[r.name], abs=0.1)
        again = q.joint_images(base, follow, r)
        np.testing.assert_allclose(again.fixed, r.images.fixed)
        assert np.array_equal(again.upper_mask, r.images.upper_mask)
        np.testing.assert_allclose(again.warped(), r.images.warped(), equal_nan=True)
    assert q.Placement.from_dict(results[0].position).work_factor == 2


def test_a_bad_work_factor_is_refused():
    from jsnreg.errors import InputError

    with pytest.raises(InputError, match="work_factor"):
        q.working_factor(q.Settings(work_factor=0), 0.1)
    assert q.working_factor(q.Settings(), 0.1) == 2
