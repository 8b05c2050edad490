"""A detected joint's confidence (jsnreg.detect_confidence): the logistic fit, its reliability and AUC
measures, the shipped model and its provenance, and on real val hands how it ranks and calibrates."""

import json

import numpy as np
import pytest

from jsnreg import detect_confidence as dc
from jsnreg.detect import DetectedJoint
from jsnreg.real_hands import real_hands_dir


def _signals(**changed):
    sound = {"type": "PIP", "psr": 11.0, "second": 0.33, "move_radii": 0.02, "researched": False,
             "phalanx_ratio": 1.68, "depth_ratio": 3.0, "radius_mm": 39.0, "recentred_mm": 0.5}
    return {**sound, **changed}


def test_fit_recovers_a_known_logistic_model_and_is_calibrated():
    rng = np.random.default_rng(0)
    n = 6000
    x = np.zeros((n, len(dc.FEATURES)))
    x[np.arange(n), rng.integers(0, len(dc.TYPES), n)] = 1.0  # one type per joint
    x[:, len(dc.TYPES):] = rng.normal(size=(n, len(dc.FEATURES) - len(dc.TYPES)))
    signs = np.array([dc.SIGNS[f] for f in dc.FEATURES[len(dc.TYPES):]])
    true_w = np.r_[[1.5, 0.5, 1.0, 0.0, 2.0], signs * np.linspace(0.3, 1.0, len(signs))]  # each its expected way
    p_true = 1.0 / (1.0 + np.exp(-x @ true_w))
    y = (rng.random(n) < p_true).astype(float)
    model = dc.fit(x, y, l2=0.0)
    assert model["left_out"] == []
    w = np.asarray(model["coef"]) / np.asarray(model["sd"])  # back to raw units (the features' means are ~0)
    assert np.abs(w - true_w).max() < 0.2, np.round(w - true_w, 2)
    p = dc.predict(model, x)
    for lo, hi, count, mean, right in dc.reliability(p, y):
        assert abs(mean - right) < 0.06 or count < 100, (lo, hi, count, mean, right)
    assert dc.auc(p, y) == pytest.approx(dc.auc(p_true, y), abs=0.01)


def test_ridge_leaves_the_types_base_rates_alone():
    """A heavy ridge shrinks the signals' coefficients, not the joint types' intercepts: each type's
    confidence falls back to that type's share right, not to 0.5."""
    rng = np.random.default_rng(1)
    n = 2000
    x = np.zeros((n, len(dc.FEATURES)))
    types = rng.integers(0, 2, n)  # IP1 or MCP1
    x[np.arange(n), types] = 1.0
    x[:, len(dc.TYPES):] = rng.normal(size=(n, len(dc.FEATURES) - len(dc.TYPES)))
    y = (rng.random(n) < np.where(types == 0, 0.9, 0.6)).astype(float)
    p = dc.predict(dc.fit(x, y, l2=1e6), x)
    assert p[types == 0].mean() == pytest.approx(y[types == 0].mean(), abs=0.02)
    assert p[types == 1].mean() == pytest.approx(y[types == 1].mean(), abs=0.02)


def test_auc_and_reliability_bins():
    assert dc.auc([0.9, 0.8, 0.3], [1, 1, 0]) == 1.0
    assert dc.auc([0.2, 0.8], [1, 0]) == 0.0
    assert dc.auc([0.5, 0.5], [1, 0]) == 0.5
    assert np.isnan(dc.auc([0.5], [1]))
    bins = dc.reliability([0.1, 0.2, 0.85, 1.0], [0, 1, 1, 1])
    assert bins == [(0.0, 0.5, 2, pytest.approx(0.15), 0.5), (0.8, 0.9, 1, 0.85, 1.0), (0.95, 1.0, 1, 1.0, 1.0)]


def test_shipped_model_and_its_provenance():
    data = json.loads(dc.MODEL.read_text())
    assert data["command"].startswith("python -m jsnreg.detect_calibrate")
    assert data["date"] and "RSNA train" in data["data"] and "val" in data["data"] and "test" not in data["data"]
    assert data["features"] == list(dc.FEATURES)
    assert len(data["coef"]) == len(data["mean"]) == len(data["sd"]) == len(dc.FEATURES)
    assert data["out_of_fold"]["auc"] > 0.55


def test_a_signal_the_fit_would_turn_against_its_direction_is_left_out():
    """A signal that only stands in for a strong one it correlates with (here the move, following the
    joint's true quality more closely than the noisy PSR does) would be fitted the wrong way ("the farther
    moved, the more right"): it is left out, and the PSR and depth keep their own way."""
    rng = np.random.default_rng(2)
    n = 4000
    x = np.zeros((n, len(dc.FEATURES)))
    x[:, 0] = 1.0
    psr, depth = dc.FEATURES.index("log_psr"), dc.FEATURES.index("log_depth_ratio")
    move = dc.FEATURES.index("move_radii")
    quality = rng.normal(size=n)
    x[:, psr] = quality + rng.normal(size=n)
    x[:, depth] = rng.normal(size=n)
    x[:, move] = quality + 0.3 * rng.normal(size=n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(1.0 + 2.0 * quality + 0.5 * x[:, depth])))).astype(float)
    model = dc.fit(x, y, l2=0.0)
    assert model["left_out"] == ["move_radii"]  # the features left at 0 have nothing to turn
    assert model["coef"][move] == 0.0 and model["coef"][psr] > 0 and model["coef"][depth] > 0


def test_a_weak_filter_peak_or_a_far_re_centring_lowers_the_confidence():
    sound = dc.joint_confidence(_signals())
    assert 0.7 < sound < 1.0
    assert dc.joint_confidence(_signals(psr=3.0)) < sound - 0.1
    assert dc.joint_confidence(_signals(recentred_mm=3.0)) < sound - 0.05
    assert dc.joint_confidence(_signals(psr=2.5, second=0.85, move_radii=0.2)) < 0.6
    assert dc.joint_confidence(_signals(type="MCP1")) < dc.joint_confidence(_signals(type="IP1"))


def test_bench_sets_confidence_against_the_outcome():
    from jsnreg.detect_bench import judged

    truth = {"MCP2": np.array([100.0, 100.0]), "PIP2": np.array([100.0, 300.0])}
    detected = [DetectedJoint("MCP2", 105, 100, 0.9), DetectedJoint("PIP2", 100, 200, 0.4),
                DetectedJoint("DIP5", 500, 500, 0.3), DetectedJoint("DIP4", 700, 700, 0.8)]
    pairs = judged(detected, truth, {"DIP5"}, tol_px=20)
    assert pairs == [(0.9, True), (0.4, False), (0.3, False)]  # DIP4 is not scored
    text = dc.format_reliability("x", np.array([c for c, _ in pairs]), np.array([r for _, r in pairs], float))
    assert text.startswith("x: 3 joints, 1 right; AUC 1.000")
    assert "conf 0.90-0.95:    1 joints, mean 0.900, right 1.000" in text


@pytest.mark.skipif(real_hands_dir() is None, reason="real hands not in ../shared/data")
def test_real_val_detections_confidence_ranks_and_calibrates():
    """On RSNA val and adult val (the model's own data, with the shipped filters): the right joints are
    ranked above the wrong ones, the mean confidence is near the share right, and the joints more than
    4 mm off are given less than the median right one."""
    from jsnreg.detect_calibrate import shipped_rows

    rows = shipped_rows(("val",))
    assert len(rows) > 200
    p = dc.predict(dc.shipped(), np.array([r["x"] for r in rows]))
    y = np.array([r["right"] for r in rows], float)
    assert dc.auc(p, y) > 0.7
    # 0.09 low: the model was fitted on the points before the 2026-12-08 re-check, where train CV's joints (a
    # third of the fit) and six val hands' were right less often (Testing/benchmarks.md, "The annotations re-checked")
    assert abs(p.mean() - y.mean()) < 0.1
    far = np.array([r["error_mm"] is not None and r["error_mm"] > 4.0 for r in rows])
    assert far.sum() >= 3 and np.median(p[far]) < np.median(p[y == 1]) - 0.2
