"""Generated pairs: the truth is consistent with the images, signs follow the convention."""

import numpy as np
import pytest
from scipy import ndimage

from jsnreg.synthetic import KINDS, make_joint_pair
from jsnreg.transforms import IDENTITY, warp_to_fixed


def _clean_pair(seed, **kw):
    return make_joint_pair(np.random.default_rng(seed), noise_sigma=0.0, exposure_change=False,
                           blur_change=False, **kw)


def _masked_rmse(pair, motion, region):
    """RMS difference fixed vs moving warped back by `motion`, inside `region` (away from the border)."""
    warped = warp_to_fixed(pair.moving.astype(float), motion)
    inner = np.zeros_like(region)
    inner[12:-12, 12:-12] = True
    sel = region & inner & np.isfinite(warped)
    return float(np.sqrt(np.mean((warped[sel] - pair.fixed[sel]) ** 2)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("proximal_on_top", [False, True])
def test_truth_aligns_each_bone(kind, proximal_on_top):
    pair = _clean_pair(7, kind=kind, jsn_mm=0.6, proximal_on_top=proximal_on_top)
    # Bone regions kept a few px away from the split, where the other bone's motion differs.
    for motion, region in ((pair.upper, pair.upper_mask), (pair.lower, ~pair.upper_mask)):
        region = ndimage.binary_erosion(region, iterations=4)
        truth = _masked_rmse(pair, motion, region)
        identity = _masked_rmse(pair, IDENTITY, region)
        assert truth < 0.005, (kind, truth)
        assert truth < identity / 8, (kind, truth, identity)


def test_other_bone_truth_does_not_fit():
    """The two bones really move differently: each bone's truth fits its own region best."""
    pair = _clean_pair(3, kind="PIP", jsn_mm=0.8)
    upper = ndimage.binary_erosion(pair.upper_mask, iterations=4)
    assert _masked_rmse(pair, pair.upper, upper) < _masked_rmse(pair, pair.lower, upper) / 3


@pytest.mark.parametrize("jsn_mm", [-0.4, 0.0, 0.35, 0.9])
def test_jsn_truth_equals_request_and_sign(jsn_mm):
    for seed in range(4):
        pair = make_joint_pair(np.random.default_rng(seed), jsn_mm=jsn_mm)
        assert pair.jsn_mm == pytest.approx(jsn_mm, abs=1e-9)
        assert pair.jsn_px == pytest.approx(pair.upper.dy_px - pair.lower.dy_px)
        if jsn_mm > 0:
            assert pair.upper.dy_px - pair.lower.dy_px > 0


def test_narrowing_is_visible_as_a_thinner_gap():
    """Positive JSN: the dark joint space is thinner at follow-up (counted along the centre columns)."""
    pair = _clean_pair(11, kind="MCP", jsn_mm=1.0, spacing_mm=0.1, max_rotation_deg=0.0,
                       max_magnification=0.0, proximal_on_top=False)

    def gap_rows(image):
        centre = image[:, 60:68].mean(axis=1)
        rows = np.arange(30, 98)
        level = (centre[rows].max() + centre[rows].min()) / 2
        return int(np.sum(centre[rows] < level))

    assert gap_rows(pair.fixed) - gap_rows(pair.moving) == pytest.approx(10, abs=3)


def test_upper_mask_has_upper_bone_above():
    for seed in range(6):
        pair = make_joint_pair(np.random.default_rng(seed))
        rows = np.arange(pair.fixed.shape[0])[:, None]
        boundary = pair.upper_mask.sum(axis=0)
        # One boundary per column: True from the top down to it, then False.
        assert np.array_equal(pair.upper_mask, rows < boundary[None, :])
        assert 0.25 < boundary.mean() / pair.fixed.shape[0] < 0.75


def test_reproducible_and_ranges():
    a = make_joint_pair(np.random.default_rng(5))
    b = make_joint_pair(np.random.default_rng(5))
    c = make_joint_pair(np.random.default_rng(6))
    assert np.array_equal(a.fixed, b.fixed) and np.array_equal(a.moving, b.moving)
    assert a.upper == b.upper and a.lower == b.lower
    assert not np.array_equal(a.fixed, c.fixed)
    for pair in (a, c):
        assert pair.fixed.dtype == np.float32 and pair.fixed.shape == (128, 128)
        assert pair.upper_mask.dtype == bool
        assert 0.0 <= pair.fixed.min() and pair.moving.max() <= 1.0
        assert 0.1 <= pair.spacing_mm <= 0.2 and 0.005 <= pair.noise_sigma <= 0.04
        assert pair.kind in KINDS
        assert abs(pair.upper.scale - 1) <= 0.04 + 1e-9


def test_noise_is_what_was_asked():
    pair = make_joint_pair(np.random.default_rng(2), noise_sigma=0.02, exposure_change=False, blur_change=False)
    clean = make_joint_pair(np.random.default_rng(2), noise_sigma=0.0, exposure_change=False, blur_change=False)
    sd = float(np.std(pair.fixed.astype(float) - clean.fixed))
    assert 0.015 < sd < 0.025


@pytest.fixture(scope="module")
def hand():
    from jsnreg.synthetic import make_hand_pair
    return make_hand_pair(seed=1)


def test_hand_joints_inside_and_truth(hand):
    from jsnreg.joints import STANDARD_JOINTS
    from jsnreg.synthetic import DEFAULT_NARROWING_MM
    rows, cols = hand.baseline.shape
    assert set(hand.joints) == set(STANDARD_JOINTS) == set(hand.followup_joints)
    for pts in (hand.joints, hand.followup_joints):
        for x, y in pts.values():
            assert 64 <= x < cols - 64 and 64 <= y < rows - 64
    assert hand.truth_jsn_mm == DEFAULT_NARROWING_MM
    assert min(hand.truth_jsn_mm.values()) < 0 < max(hand.truth_jsn_mm.values()) <= 0.6
    assert hand.meta_baseline["patient_id"] == hand.meta_followup["patient_id"] == "DEMO-0001"


def test_hand_joints_sit_in_dark_gaps_between_bones(hand):
    """Each joint centre is darker than the bone just above and below it along the image column."""
    for name, (x, y) in hand.joints.items():
        x, y = int(round(x)), int(round(y))
        profile = hand.baseline[y - 15:y + 16, x - 1:x + 2].mean(axis=1)
        assert profile[15] < profile[:12].max() - 0.05 and profile[15] < profile[19:].max() - 0.05, name


def test_hand_custom_narrowing_moves_distal_bones():
    from jsnreg.synthetic import make_hand_pair
    a = make_hand_pair(seed=2, narrowing_mm={"PIP3": 0.8})
    none = make_hand_pair(seed=2, narrowing_mm={})
    assert a.truth_jsn_mm["PIP3"] == 0.8 and a.truth_jsn_mm["MCP3"] == 0.0
    expected_px = 0.8 * a.meta_followup["magnification"] / a.spacing_mm
    shift = lambda name: np.hypot(*np.subtract(a.followup_joints[name], none.followup_joints[name]))  # noqa: E731
    assert shift("DIP3") == pytest.approx(expected_px, rel=1e-6)  # distal bones moved by the narrowing
    assert shift("PIP3") == pytest.approx(expected_px / 2, rel=1e-6)  # the joint centre by half of it
    assert shift("MCP3") == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError):
        make_hand_pair(seed=2, narrowing_mm={"XYZ": 0.1})
