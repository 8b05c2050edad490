"""Upper/lower split: a minimal path through the dark joint space."""

import numpy as np

from jsnreg import split


def _two_bones(rows=96, cols=96, gap_rows=(44, 52), curve=0.0):
    y, x = np.mgrid[0:rows, 0:cols]
    centre = (gap_rows[0] + gap_rows[1]) / 2 + curve * ((x - cols / 2) / (cols / 2)) ** 2
    half = (gap_rows[1] - gap_rows[0]) / 2
    img = np.where(np.abs(y - centre) < half, 0.2, 0.8)
    return img + np.random.default_rng(0).normal(0, 0.02, img.shape), centre[0]


def test_path_follows_a_straight_gap():
    img, truth = _two_bones()
    rows = split.split_rows(img)
    assert np.all(np.abs(rows - truth) < 3.0)


def test_path_follows_a_curved_gap_off_centre():
    img, truth = _two_bones(gap_rows=(30, 38), curve=8.0)
    rows = split.split_rows(img)
    assert np.median(np.abs(rows - truth)) < 2.0


def test_mask_and_rows_round_trip():
    rows = np.linspace(30, 40, 50)
    mask = split.upper_mask_from_rows((80, 50), rows)
    assert mask[0].all() and not mask[-1].any()
    assert np.allclose(split.rows_from_upper_mask(mask), np.ceil(rows))


def test_minimal_path_takes_the_cheap_row():
    cost = np.ones((20, 30))
    cost[7, :] = 0.0
    assert (split.minimal_path(cost) == 7).all()


def test_split_sits_midway_between_the_surfaces_of_a_lopsided_gap():
    """The gap is darkest near the upper bone (a blurred, brighter lower cortex): the split still
    lies halfway between the two bone surfaces, not on the darkest row."""
    img, _ = _two_bones(gap_rows=(40, 56))
    y = np.arange(img.shape[0])[:, None]
    inside = (y >= 40) & (y < 56)
    img = np.where(inside, 0.15 + 0.25 * (y - 40) / 16, img)
    assert np.argmin(img[40:56, 48]) < 3  # darkest at the top of the gap
    rows = split.split_rows(img)
    assert np.all(np.abs(rows[10:-10] - 48.0) < 1.0)


def test_split_of_generated_joints_is_near_the_true_middle():
    from jsnreg.synthetic import make_joint_pair

    rng = np.random.default_rng(5)
    deviations = []
    for _ in range(8):
        pair = make_joint_pair(rng, noise_sigma=0.01)
        true = split.rows_from_upper_mask(pair.upper_mask)
        centre = slice(50, 78)  # columns across the bones (the path is free beside them)
        deviations.append(np.mean(np.abs(split.split_rows(pair.fixed) - true)[centre]))
    assert np.mean(deviations) < 0.5  # px (the darkest row of the gap: 0.9 px)


def _joint_with_physis(rows=96, cols=96, gap=(50, 56), physis=(40, 43)):
    """Two bones with a joint space and, in the upper bone, a thinner band as dark (a physis) with
    the bright epiphysis between the two."""
    img, _ = _two_bones(rows, cols, gap)
    y = np.arange(rows)[:, None] + np.zeros((1, cols))
    img = np.where((y >= physis[1]) & (y < gap[0]), img + 0.1, img)
    return np.where((y >= physis[0]) & (y < physis[1]), 0.2, img)


def test_runner_up_joint_line_is_the_physis_beside_the_joint_space():
    img = _joint_with_physis()
    boundary, runner_ups = split.split_candidates(img)
    assert np.all(np.abs(boundary[10:-10] - 53.0) < 1.5)  # the joint space's middle
    assert len(runner_ups) == 1 and np.median(np.abs(runner_ups[0] - 41.5)) < 1.5  # the physis's


def test_one_joint_line_has_no_runner_up():
    img, _ = _two_bones()
    boundary, runner_ups = split.split_candidates(img)
    assert runner_ups == []
    assert np.array_equal(boundary, split.split_rows(img))


def test_a_runner_up_line_is_sought_on_each_side_of_the_split():
    """The ROI's middle row on a physis (rows 46-48, as with the centre 2 mm distal of the joint):
    the split takes it; the joint space 12 rows below and a thin dark line in the bone above are
    both runner-ups (one runner-up overall left one of them unseen)."""
    img, _ = _two_bones(gap_rows=(58, 64))
    y = np.arange(96)[:, None] + np.zeros((1, 96))
    img = np.where((y >= 46) & (y < 49), 0.15, img)
    img = np.where((y >= 30) & (y < 33), 0.2, img)
    boundary, runner_ups = split.split_candidates(img)
    assert np.median(np.abs(boundary - 47.5)) < 1.5
    assert sorted(round(float(np.median(line))) for line in runner_ups) == [32, 62]


def test_banded_paths_are_the_separate_paths():
    """Two problems stacked with a row of inf between give each one's own minimal path and cost."""
    rng = np.random.default_rng(1)
    top, bottom = rng.random((15, 25)), rng.random((12, 25))
    stacked = np.vstack([top, np.full((1, 25), np.inf), bottom])
    (p_top, c_top), (p_bottom, c_bottom) = split.banded_paths(stacked, [(0, 15), (16, 28)], 1, 0.02)
    assert (p_top == split.minimal_path(top, 1, 0.02)).all()
    assert (p_bottom - 16 == split.minimal_path(bottom, 1, 0.02)).all()
    assert np.isfinite(c_top) and np.isfinite(c_bottom)
    blocked = stacked.copy()
    blocked[16:, 5] = np.inf  # a column without a row in the lower band
    assert not np.isfinite(split.banded_paths(blocked, [(16, 28)], 1, 0.02)[0][1])
