"""The confidence model: its fit, its flag threshold, and the shipped calibration's provenance."""

import numpy as np
import pytest

from jsnreg import confidence as cm
from jsnreg.network import DEFAULT_WEIGHTS, model_sha256


def test_the_shipped_calibration_loads_and_says_where_it_comes_from():
    cal = cm.load()
    prov = cal.provenance
    assert prov["data"]["split"] == "val"  # never test hands
    assert prov["data"]["source"] == "real_pairs.make_real_pairs"
    assert prov["data"]["results"] > 100
    # Calibrated for the network in use: retrain -> `jsnreg calibrate --split val` again.
    assert prov["network"]["sha256"] == model_sha256(DEFAULT_WEIGHTS)  # both stages
    assert prov["date"] and prov["command"].startswith("jsnreg calibrate")
    assert tuple(cal.data["features"]) == cm.FEATURES
    assert 0 < cal.flag_scale_px < 1


def test_larger_disagreement_means_lower_confidence():
    cal = cm.load()
    base = {k: 0.0 for k in cm.FEATURES}
    base.update(log_sd_jsn=-1.5, log_fb_px=-1.5, log_minima_px=-3.0, log_start_px=-1.0,
                log_net_diff_px=-1.0, inlier_fraction=1.0, edge_share=1.0)
    worse = dict(base, log_sd_jsn=0.0)
    assert cal.confidence(worse) < cal.confidence(base)
    assert cal.error_scale_px(worse) > cal.error_scale_px(base)


def test_scale_model_recovers_a_known_error_scale():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 0, (4000, 1))
    b_true = 0.5 * np.exp(x[:, 0])  # the error's Laplace scale grows with the feature
    err = rng.laplace(0.0, b_true)
    mean, scale, coef, intercept = cm.fit_scale_model(x, err)
    predicted = np.exp(intercept + (x - mean) / scale @ coef)
    assert np.median(predicted / b_true) == pytest.approx(1.0, abs=0.1)


def test_threshold_meets_the_unflagged_target_and_keeps_good_results():
    scale = np.concatenate([np.full(990, 0.05), np.full(10, 0.8)])
    bad = np.concatenate([np.zeros(990, bool), np.ones(10, bool)])
    t = cm.choose_threshold(scale, bad, np.zeros(1000, bool))
    flagged = scale > t
    assert flagged[bad].all() and not flagged[~bad].any()


def test_reliability_bins_count_every_result():
    conf = np.linspace(0, 1, 101)
    err = np.where(conf > 0.5, 0.1, 1.0)
    rows = cm.reliability(conf, err)
    assert sum(r["n"] for r in rows) == 101
    assert rows[-1]["share_within_0.5px"] == 1.0 and rows[0]["share_within_0.5px"] == 0.0


def test_threshold_never_lets_out_a_result_its_own_model_calls_risky():
    # One bad result with a huge scale would let the recall rule alone set the threshold just below it.
    scale = np.concatenate([np.linspace(0.02, 0.3, 999), [2.0]])
    bad = np.zeros(1000, bool)
    bad[-1] = True
    t = cm.choose_threshold(scale, bad, np.zeros(1000, bool))
    assert np.exp(-cm.GOOD_PX / t) == pytest.approx(cm.MAX_RISK)
    unflagged = scale <= t
    assert np.exp(-cm.GOOD_PX / scale[unflagged]).max() <= cm.MAX_RISK


def test_the_flag_names_the_signal_that_raises_the_error_scale():
    cal = cm.load()
    features = dict(zip(cm.FEATURES, cal.mean))
    features["log_sd_jsn"] += 3 * cal.scale[cm.FEATURES.index("log_sd_jsn")]  # far less precise than usual
    features["inlier_fraction"] += 2 * cal.scale[cm.FEATURES.index("inlier_fraction")]  # a better fit than usual
    assert cal.weakest_signal(features) == "log_sd_jsn"


def test_a_result_is_flagged_exactly_below_the_flag_confidence():
    """The flag reason quotes the threshold as a confidence: flagged <=> confidence below it."""
    cal = cm.load()
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(200):
        features = dict(zip(cm.FEATURES, cal.mean + cal.scale * rng.normal(0, 2, len(cm.FEATURES))))
        if abs(cal.confidence(features) - cal.flag_confidence) > 1e-9:
            assert cal.flagged(features) == (cal.confidence(features) < cal.flag_confidence)
            seen.add(cal.flagged(features))
    assert seen == {True, False}  # both sides of the threshold were drawn
    assert 0.9 < cal.flag_confidence < 1.0
