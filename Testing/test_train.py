"""The training command's data: real pairs from train hands only, generated pairs, the card."""

import json

import numpy as np
import pytest

from jsnreg import real_hands, real_pairs, train
from jsnreg.network import network_input


def test_network_input_pads_a_non_square_roi_instead_of_stretching_it():
    rng = np.random.default_rng(0)
    fixed, moving = rng.random((80, 160)), rng.random((80, 160))
    mask = np.zeros((80, 160), bool)
    mask[:40] = True
    x = network_input(fixed, moving, mask)
    # The grid spans the 160 columns; rows beyond the ROI's 80 are padded with 0 in every channel.
    assert x.shape == (3, 64, 64)
    pad = np.abs(np.arange(64) - 31.5) * 2.5 > 40
    assert np.all(x[:, pad] == 0)
    inside = x[0][~pad]
    assert abs(inside.mean()) < 1e-5 and abs(inside.std() - 1) < 1e-3
    assert set(np.unique(x[2][~pad])) <= {-1.0, 1.0} and np.all(x[2][~pad][: 10] == 1.0)


def test_a_tiny_training_run_uses_train_hands_only_and_writes_its_card(tmp_path):
    if not real_pairs.available():
        pytest.skip("real hand radiographs not available (../shared/data/real-hands)")
    ann = real_hands.annotated_images()
    if not any(e["split"] == "train" for e in ann.values()):
        pytest.skip("no train hands annotated yet")
    card = train.train(tmp_path / "net.pt", n_train=60, real_share=0.5, n_val=8, epochs=1, batch=16,
                       log=lambda *a: None)
    saved = json.loads((tmp_path / "net.json").read_text())
    assert saved == json.loads(json.dumps(card))
    data = saved["data"]
    assert data["real_train_hands"] and all(ann[h]["split"] == "train" for h in data["real_train_hands"])
    assert all(ann[h]["split"] == "val" for h in data["real_val_hands"])
    assert data["n_real_train"] + data["n_generated_train"] == saved["n_train"]
    assert data["n_real_train"] >= 1 and data["n_generated_train"] >= 1
    assert "--real-share 0.5" in saved["command"] and saved["seed"] == 0 and saved["input"] == "padded"
    for v in saved["validation_jsn_error_px"].values():
        assert np.isfinite(v["sd"]) and v["n"] >= 1
    assert (tmp_path / "net.pt").stat().st_size > 1e6


def test_real_training_chunk_is_seeded_and_mixes_shapes():
    if not real_pairs.available() or not real_pairs.load_joints("val"):
        pytest.skip("no annotated real val hands")
    a = train._real_chunk((7, "val", ((0, 6), (1, 6)), "coarse", None, 0.4, 0.0))
    b = train._real_chunk((7, "val", ((0, 6), (1, 6)), "coarse", None, 0.4, 0.0))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert len(a[0]) == 12 and len({tuple(s) for s in a[2]}) > 1


def test_real_training_pairs_can_be_cut_off_the_joint():
    """--offset-mm 2: half the real pairs centred 1 or 2 mm proximal or distal of the joint (whole rows of the
    0.17 mm/px grid), seeded like the others."""
    assert train.offset_choices(0.0) == (0,)
    rows = train.offset_choices(2.0)
    assert rows[0] == 0 and sorted(rows[1:]) == [-12, -6, 6, 12]
    if not real_pairs.available() or not real_pairs.load_joints("val"):
        pytest.skip("no annotated real val hands")
    off = [train._real_chunk((7, "val", ((0, 8), (1, 8)), "coarse", None, 0.4, 2.0)) for _ in range(2)]
    centred = train._real_chunk((7, "val", ((0, 8), (1, 8)), "coarse", None, 0.4, 0.0))
    assert np.array_equal(off[0][0], off[1][0]) and np.array_equal(off[0][1], off[1][1])
    assert not np.array_equal(off[0][0], centred[0])


def test_the_hard_share_sets_how_many_real_training_pairs_have_each_bones_larger_own_motion():
    if not real_pairs.available() or not real_pairs.load_joints("val"):
        pytest.skip("no annotated real val hands")
    from jsnreg.network import params_to_motions

    def own_motion_px(hard_share):
        _, y, shapes = train._real_chunk((7, "val", ((0, 20), (1, 20)), "coarse", None, hard_share, 0.0))
        # the coarse target is both bones' whole motions; their difference is the bones' own motions
        moves = [params_to_motions(t, tuple(s)) for t, s in zip(y, shapes)]
        return np.array([np.hypot(u.dx_px - lo.dx_px, u.dy_px - lo.dy_px) for u, lo in moves])

    realistic, hard = own_motion_px(0.0), own_motion_px(1.0)
    # realistic own shifts are within 1.5 px along and 1 px across per bone, hard ones 4 px
    assert np.median(hard) > 2 * np.median(realistic)


def test_each_weights_file_gets_the_input_encoding_it_was_trained_with(tmp_path):
    import shutil

    from jsnreg.network import DEFAULT_WEIGHTS, Network

    assert Network.load(DEFAULT_WEIGHTS).padded  # the shipped weights were trained on padded input
    unpadded = tmp_path / "old.pt"  # weights whose card does not say "padded" get the old encoding
    shutil.copy(DEFAULT_WEIGHTS, unpadded)
    unpadded.with_suffix(".json").write_text(json.dumps({"command": "jsnreg train"}))
    assert not Network.load(unpadded).padded
    rng = np.random.default_rng(1)
    square = [rng.random((96, 96)), rng.random((96, 96)), rng.random((96, 96)) > 0.5]
    np.testing.assert_array_equal(network_input(*square), network_input(*square, padded=False))


def test_the_fine_stage_sees_the_moving_roi_through_each_bones_estimate():
    from jsnreg.synthetic import make_joint_pair
    from jsnreg.transforms import BoneMotion

    pair = make_joint_pair(np.random.default_rng(3), max_rotation_deg=5.0, max_translation_px=6.0)
    args = (pair.fixed, pair.moving, pair.upper_mask)
    plain = network_input(*args)
    still = BoneMotion(1.0, 0.0, 0.0, 0.0)
    np.testing.assert_allclose(network_input(*args, motions=(still, still)), plain, atol=1e-5)
    at_truth = network_input(*args, motions=(pair.upper, pair.lower))

    def misfit(x):
        return float(np.mean((x[0] - x[1]) ** 2))

    # Sampled at the true motions, the moving channel is the fixed one (up to noise and exposure).
    assert misfit(at_truth) < 0.2 * misfit(plain)


@pytest.mark.parametrize("stage", ["fine", "precise"])
def test_residual_training_pairs_target_what_the_estimate_leaves(stage):
    from jsnreg.network import params_to_motions

    ranges, zoom, _ = train.STAGES[stage]
    x, y, shapes = train._generated_chunk((5, True, 4, stage, None))
    x0, y0, _ = train._generated_chunk((5, True, 4, "coarse", None))
    assert x.shape == x0.shape and not np.array_equal(x[:, 1], x0[:, 1])
    if zoom == 1:
        np.testing.assert_array_equal(x[:, 0], x0[:, 0])  # the same pairs, seen through an estimate
    for target, shape in zip(y, shapes):
        for r in params_to_motions(target, tuple(shape), zoom):
            # Small residuals only (the stage's ranges), in ROI px whatever the grid.
            assert abs(r.dx_px) <= ranges["shift_px"] + 1e-6 and abs(r.dy_px) <= ranges["shift_px"] + 1e-6
            assert abs(np.degrees(r.dtheta_rad)) <= ranges["rot_deg"] + 1e-6


def _check_cascade_pairs(monkeypatch, stage: str, weights, follows, zoom: int, plain_stage: str) -> None:
    """A cascade stage's pairs: with every pair at the estimate of `follows` (the stages it follows), the
    input is the moving ROI seen at that estimate (on the stage's grid) and the target what it leaves (the
    truth once composed); with none, exactly the plain stage's random residuals."""
    from jsnreg.network import params_to_motions
    from jsnreg.synthetic import make_joint_pair
    from jsnreg.transforms import compose

    monkeypatch.setattr(train, "CASCADE_SHARE", 1.0)
    rng = np.random.default_rng(4)
    for _ in range(3):
        pair = make_joint_pair(rng, max_rotation_deg=5.0, max_translation_px=6.0)
        x, y = train._encode_one(pair, np.random.default_rng(0), stage, str(weights))
        estimate = follows.predict(pair.fixed, pair.moving, pair.upper_mask)
        np.testing.assert_array_equal(x, network_input(pair.fixed, pair.moving, pair.upper_mask, motions=estimate,
                                                       zoom=zoom))
        for r, e, t in zip(params_to_motions(y, pair.fixed.shape, zoom), estimate, (pair.upper, pair.lower)):
            got = compose(r, e)  # the target after the estimate is the truth (float32 targets)
            assert abs(got.dx_px - t.dx_px) < 1e-4 and abs(got.dy_px - t.dy_px) < 1e-4
            assert abs(got.dtheta_rad - t.dtheta_rad) < 1e-6 and abs(got.scale - t.scale) < 1e-6
    monkeypatch.setattr(train, "CASCADE_SHARE", 0.0)
    pair = make_joint_pair(np.random.default_rng(4))
    a = train._encode_one(pair, np.random.default_rng(0), stage, str(weights))
    b = train._encode_one(pair, np.random.default_rng(0), plain_stage)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_cascade_pairs_are_seen_at_the_coarse_estimate_and_target_what_it_leaves(monkeypatch):
    from jsnreg.network import DEFAULT_WEIGHTS, Network

    _check_cascade_pairs(monkeypatch, "cascade", DEFAULT_WEIGHTS, Network.load(DEFAULT_WEIGHTS, fine=False), 1, "fine")


def test_the_cascade_needs_the_coarse_weights_it_follows(tmp_path):
    with pytest.raises(ValueError, match="coarse weights"):
        train.train(tmp_path / "net.pt", n_train=4, n_val=2, epochs=1, stage="cascade", log=lambda *a: None)


def test_precise_cascade_pairs_are_seen_at_the_coarse_and_fine_estimate_on_the_precise_grid(monkeypatch, tmp_path):
    import shutil

    from jsnreg.network import DEFAULT_WEIGHTS, PRECISE_SUFFIX, PRECISE_ZOOM, Network, fine_weights_path
    from jsnreg.synthetic import make_joint_pair

    # A precise stage lying beside the weights is not part of what the precise cascade follows.
    for src in (DEFAULT_WEIGHTS, fine_weights_path(DEFAULT_WEIGHTS), fine_weights_path(DEFAULT_WEIGHTS, PRECISE_SUFFIX)):
        shutil.copy(src, tmp_path / src.name)
    weights = tmp_path / DEFAULT_WEIGHTS.name
    follows = Network.load(weights)
    assert follows.fine is not None and follows.precise is not None
    follows.precise = None
    pair = make_joint_pair(np.random.default_rng(4), max_rotation_deg=5.0, max_translation_px=6.0)
    coarse_only = Network.load(weights, fine=False).predict(pair.fixed, pair.moving, pair.upper_mask)
    assert follows.predict(pair.fixed, pair.moving, pair.upper_mask)[0].dx_px != coarse_only[0].dx_px  # fine passes in it
    _check_cascade_pairs(monkeypatch, "precise-cascade", weights, follows, PRECISE_ZOOM, "precise")


def test_the_precise_cascade_needs_the_fine_stage_it_follows_and_records_both(tmp_path):
    import shutil

    from jsnreg.network import DEFAULT_WEIGHTS, file_sha256, fine_weights_path

    shutil.copy(DEFAULT_WEIGHTS, tmp_path / "net.pt")
    with pytest.raises(ValueError, match="fine stage"):
        train.train(tmp_path / "net.pt", n_train=4, n_val=2, epochs=1, stage="precise-cascade", log=lambda *a: None)
    shutil.copy(fine_weights_path(DEFAULT_WEIGHTS), tmp_path / "net-fine.pt")
    card = train.train(tmp_path / "net.pt", n_train=8, real_share=0.0, n_val=2, epochs=1, batch=4,
                       stage="precise-cascade", workers=1, log=lambda *a: None)
    assert card["data"]["cascade"] == {
        "coarse": "net.pt", "coarse_sha256": file_sha256(DEFAULT_WEIGHTS), "share": train.CASCADE_SHARE,
        "fine": "net-fine.pt", "fine_sha256": file_sha256(fine_weights_path(DEFAULT_WEIGHTS)),
        "fine_passes": train.FINE_PASSES}
    assert card["command"].endswith(" --precise --cascade") and card["stage"] == "precise-cascade"
    assert card["zoom"] == train.PRECISE_ZOOM and (tmp_path / "net-precise.pt").is_file()


def test_the_precise_grid_shows_the_roi_middle_at_twice_the_resolution():
    from jsnreg.network import PRECISE_ZOOM, network_input
    from jsnreg.synthetic import make_joint_pair

    pair = make_joint_pair(np.random.default_rng(3), size_px=128)
    rows, cols = pair.fixed.shape
    middle = (slice(rows // 4, rows - rows // 4), slice(cols // 4, cols - cols // 4))
    # The precise grid over the whole ROI is the plain grid over the ROI's middle half.
    np.testing.assert_allclose(network_input(pair.fixed, pair.moving, pair.upper_mask, zoom=PRECISE_ZOOM),
                               network_input(pair.fixed[middle], pair.moving[middle], pair.upper_mask[middle]),
                               atol=1e-5)
    # Its outputs are in its own grid's half-width: the same numbers mean half the shift in ROI px.
    from jsnreg.network import params_to_motions
    out = np.full(8, 0.5, np.float32)
    (u1, _), (u2, _) = params_to_motions(out, (rows, cols)), params_to_motions(out, (rows, cols), PRECISE_ZOOM)
    assert u2.dy_px == pytest.approx(u1.dy_px / PRECISE_ZOOM) and u2.dtheta_rad == pytest.approx(u1.dtheta_rad)


def test_a_fine_stage_beside_the_weights_is_loaded_composed_and_hashed(tmp_path):
    import shutil

    from jsnreg.network import DEFAULT_WEIGHTS, Network, fine_weights_path, model_info, model_sha256
    from jsnreg.synthetic import make_joint_pair

    coarse = tmp_path / "net.pt"
    shutil.copy(DEFAULT_WEIGHTS, coarse)
    shutil.copy(DEFAULT_WEIGHTS.with_suffix(".json"), coarse.with_suffix(".json"))
    alone = Network.load(coarse)
    assert alone.fine is None and not model_info(coarse)["fine"]
    hash_alone = model_sha256(coarse)
    shutil.copy(DEFAULT_WEIGHTS, fine_weights_path(coarse))  # any weights will do as a fine stage
    both = Network.load(coarse)
    assert both.fine is not None and model_info(coarse)["fine"] and model_sha256(coarse) != hash_alone
    assert Network.load(coarse, fine=False).fine is None
    pair = make_joint_pair(np.random.default_rng(4))
    one = alone.predict(pair.fixed, pair.moving, pair.upper_mask)
    two = both.predict(pair.fixed, pair.moving, pair.upper_mask)
    assert any(abs(a.dy_px - b.dy_px) > 1e-3 for a, b in zip(one, two))  # the second stage acts


def test_a_precise_stage_after_the_fine_one_is_loaded_used_and_hashed(tmp_path):
    import shutil

    from jsnreg.network import (DEFAULT_WEIGHTS, PRECISE_SUFFIX, Network, fine_weights_path, model_info,
                                model_sha256)
    from jsnreg.synthetic import make_joint_pair

    coarse = tmp_path / "net.pt"
    for src, dst in ((DEFAULT_WEIGHTS, coarse), (DEFAULT_WEIGHTS.with_suffix(".json"), coarse.with_suffix(".json")),
                     (fine_weights_path(DEFAULT_WEIGHTS), fine_weights_path(coarse))):
        shutil.copy(src, dst)
    two = Network.load(coarse)
    hash_two = model_sha256(coarse)
    assert two.precise is None and not model_info(coarse)["precise"]
    shutil.copy(fine_weights_path(DEFAULT_WEIGHTS, PRECISE_SUFFIX), fine_weights_path(coarse, PRECISE_SUFFIX))
    three = Network.load(coarse)
    assert three.precise is not None and model_info(coarse)["precise"] and model_sha256(coarse) != hash_two
    assert Network.load(coarse, fine=False).precise is None  # never without the fine stage before it
    pair = make_joint_pair(np.random.default_rng(4))
    a = two.predict(pair.fixed, pair.moving, pair.upper_mask)
    b = three.predict(pair.fixed, pair.moving, pair.upper_mask)
    assert any(abs(x.dy_px - y.dy_px) > 1e-3 for x, y in zip(a, b))  # the precise stage acts
    truth = pair.upper.dy_px - pair.lower.dy_px
    assert abs(b[0].dy_px - b[1].dy_px - truth) < 1.0


def test_the_pass_counts_are_part_of_the_networks_identity_and_change_its_estimate(monkeypatch):
    import jsnreg.network as network
    from jsnreg.synthetic import make_joint_pair

    net = network.Network.load()
    pair = make_joint_pair(np.random.default_rng(5))
    shipped = network.model_sha256(), net.predict(pair.fixed, pair.moving, pair.upper_mask)
    monkeypatch.setattr(network, "FINE_PASSES", network.FINE_PASSES - 1)
    fewer = network.model_sha256(), net.predict(pair.fixed, pair.moving, pair.upper_mask)
    assert fewer[0] != shipped[0] and network.model_info()["passes"]["fine"] == network.FINE_PASSES
    change_px = max(abs(getattr(x, k) - getattr(y, k)) for x, y in zip(fewer[1], shipped[1]) for k in ("dx_px", "dy_px"))
    assert change_px > 1e-4  # one pass fewer is another estimate
