"""Pairs from real radiographs with known truth: the composition, the truth, the split rule.

The composition tests use a drawn neighbourhood (two bright bones, a dark gap), so they run
anywhere; the tests on the real hands skip when ../shared/data/real-hands is absent.
"""

import json

import numpy as np
import pytest

from jsnreg import real_pairs as rp
from jsnreg.real_hands import annotated_images
from jsnreg.transforms import roi_centre

H = rp.HOOD_PX
GAP_ROWS = (105, 119)  # the drawn joint space, rows of the neighbourhood


def _drawn_joint() -> rp.RealJoint:
    """Soft tissue 0.25, a textured upper and lower bone (0.6-0.9) with a gap between them."""
    rng = np.random.default_rng(3)
    hood = np.full((H, H), 0.25)
    cols = slice(60, 164)
    hood[:GAP_ROWS[0], cols] = 0.75
    hood[GAP_ROWS[1]:, cols] = 0.7
    hood += 0.1 * (hood > 0.5) * rng.uniform(-1, 1, (H, H))
    boundary = np.full(H, (GAP_ROWS[0] + GAP_ROWS[1]) / 2.0)
    return rp.RealJoint("drawn.png", "PIP3", "train", hood.astype(np.float32), boundary, 0.0, 0.1)


def _translation(dx, dy):
    m = np.eye(3)
    m[:2, 2] = (dx, dy)
    return m


@pytest.mark.parametrize("shape_name", ["square", "wide"])
def test_zero_motion_without_look_change_is_the_roi_itself(shape_name):
    joint = _drawn_joint()
    shape = rp.SHAPES[shape_name]
    lay = rp.layers(joint.hood, joint.boundary_rows)
    moving = rp.compose(lay, shape, np.eye(3), np.eye(3), np.eye(3))
    np.testing.assert_allclose(moving, rp.crop(joint.hood, shape), atol=1e-5)


def test_a_pure_shift_of_both_bones_is_the_shifted_roi_with_jsn_zero():
    joint = _drawn_joint()
    shape = rp.SHAPES["square"]
    lay = rp.layers(joint.hood, joint.boundary_rows)
    m = _translation(2.0, -3.0)
    moving = rp.compose(lay, shape, m, m, m)
    # moving(q) = fixed(q - shift): the neighbourhood shifted by whole pixels, then cropped.
    shifted = np.roll(np.roll(joint.hood, -3, axis=0), 2, axis=1)
    np.testing.assert_allclose(moving, rp.crop(shifted, shape), atol=1e-5)
    from jsnreg.transforms import from_matrix
    upper, lower = (from_matrix(m, roi_centre(shape)) for _ in range(2))
    assert upper.dy_px == pytest.approx(-3.0) and upper.dx_px == pytest.approx(2.0)
    assert upper.dy_px - lower.dy_px == pytest.approx(0.0)


def test_a_gap_that_opens_shows_joint_space_and_a_bone_moving_in_stays_visible():
    joint = _drawn_joint()
    shape = rp.SHAPES["square"]
    lay = rp.layers(joint.hood, joint.boundary_rows)
    r0 = (H - shape[0]) // 2
    gap = slice(GAP_ROWS[0] - r0, GAP_ROWS[1] - r0)
    col = slice(30, 60)  # ROI columns over the bones
    # The upper bone moves up 4 px: its former last rows are now joint space, at gap intensity.
    opened = rp.compose(lay, shape, np.eye(3), _translation(0, -4), np.eye(3))
    np.testing.assert_allclose(opened[gap.start - 4:gap.start, col], 0.25, atol=1e-3)
    # The lower bone moves up 20 px, over the upper bone: both show, added as attenuation, so the
    # overlap is brighter than either bone alone.
    over = rp.compose(lay, shape, np.eye(3), np.eye(3), _translation(0, -20))
    rows_over = slice(gap.start - 5, gap.start - 1)
    upper_alone = rp.crop(joint.hood, shape)[rows_over, col]
    assert np.all(over[rows_over, col] > upper_alone + 0.05)
    assert np.all(over[rows_over, col] > 0.8)


def test_pairs_carry_the_drawn_motions_as_truth_and_clip():
    joint = _drawn_joint()
    rng = np.random.default_rng(0)
    pairs = rp.make_pairs(joint, rng, 60, "realistic", "wide")
    jsn = np.array([p.jsn_px for p in pairs])
    assert np.abs(jsn).max() <= 3.3 and jsn.std() > 0.5  # within about +-3 px, not all zero
    for p in pairs:
        assert p.fixed.shape == p.moving.shape == p.upper_mask.shape == rp.SHAPES["wide"]
        assert 0.0 <= p.fixed.min() and p.moving.max() <= 1.0
        assert abs(p.upper.scale - p.lower.scale) < 1e-9  # the common magnification only
        assert abs(np.degrees(p.upper.dtheta_rad - p.lower.dtheta_rad)) <= 4.0 + 1e-9
    # Some visits clip: whole pixels at 0 (air) or 1 (bright bone).
    assert any((p.moving == 0).mean() > 0.01 or (p.moving == 1).mean() > 0.01 for p in pairs)
    hard = rp.make_pairs(joint, rng, 60, "hard", "square")
    assert np.abs([p.jsn_px for p in hard]).max() > 3.5


def test_flipped_pairs_keep_the_split_on_the_gap():
    joint = _drawn_joint()
    rng = np.random.default_rng(1)
    for p in rp.make_pairs(joint, rng, 8, "realistic", "square", look_change=False):
        rows = p.upper_mask.sum(axis=0)
        r0 = (H - 128) // 2
        assert np.all((rows >= GAP_ROWS[0] - r0) & (rows <= GAP_ROWS[1] - r0))


def test_bad_set_or_shape_is_refused():
    with pytest.raises(ValueError, match="motion set"):
        rp.make_pairs(_drawn_joint(), np.random.default_rng(0), 1, "easy")
    with pytest.raises(ValueError, match="ROI shape"):
        rp.make_pairs(_drawn_joint(), np.random.default_rng(0), 1, "hard", "round")


@pytest.fixture(scope="module")
def real():
    if not rp.available():
        pytest.skip("real hand radiographs not available (../shared/data/real-hands)")
    return annotated_images()


def test_split_rule_no_train_hand_in_val_or_test(real):
    from jsnreg.real_hands import rsna_splits

    by_split = {}
    for key, entry in real.items():
        by_split.setdefault(entry["split"], set()).add(rp.patient_of(key))
    train = by_split.get("train", set())
    assert not train & by_split.get("val", set()) and not train & by_split.get("test", set())
    assert all(e["split"] == "test" for k, e in real.items() if k.startswith("adult-annotated/"))
    # Every annotated RSNA hand sits in the split the contract's rule gives its file name.
    rule = rsna_splits([p.name for p in (rp.real_hands_folder() / "rsna-bone-age").glob("*.png")])
    for key, entry in real.items():
        if key.startswith("rsna-bone-age/"):
            assert entry["split"] == rule[key.split("/", 1)[1]], key


def test_real_test_pairs_come_from_test_hands_only(real):
    pairs = rp.make_real_pairs("test", "realistic", "square", n=6, seed=0)
    assert len(pairs) == 6
    assert all(real[p.image]["split"] == "test" and p.split == "test" for p in pairs)
    again = rp.make_real_pairs("test", "realistic", "square", n=6, seed=0)
    assert all(np.array_equal(a.moving, b.moving) and a.upper == b.upper for a, b in zip(pairs, again))
    json.dumps([p.upper.to_dict() for p in pairs])


def test_an_roi_offset_along_the_finger_is_the_centred_neighbourhood_moved_with_its_truth(real):
    """ROI centres 2 mm distal of the joint (12 rows of 0.172 mm, distal up): the neighbourhood's
    rows are the centred one's 12 rows further up, the split (the truth) 12 rows lower."""
    key = next(k for k in sorted(real) if real[k]["split"] == "val" and (rp.real_hands_folder() / k).is_file())
    k = rp.offset_rows(2.0)
    assert k == 12 and rp.offset_rows(-1.0) == -6
    centred, moved = rp.image_joints(key, real[key]), rp.image_joints(key, real[key], k)
    assert [j.name for j in moved] == [j.name for j in centred]
    for c, m in zip(centred, moved):
        assert np.array_equal(m.boundary_rows, c.boundary_rows + k)
        assert np.allclose(m.hood[k:], c.hood[:-k], atol=1e-5)
        assert not np.allclose(m.hood, c.hood, atol=1e-3)


def test_an_offset_beyond_4_mm_is_refused():
    from jsnreg.errors import InputError

    with pytest.raises(InputError, match="within"):
        rp.offset_rows(4.5)
