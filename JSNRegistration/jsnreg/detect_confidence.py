"""A detected joint's confidence: the estimated probability that it lies within 2 mm of the joint's
annotated centre and is named right, from the signals its refinement leaves (jsnreg.detect_refine._signals).

A logistic model over a few features: one intercept per joint type; the last filter pass's
peak-to-sidelobe ratio (log, and how far it falls below PSR_LOW) and its second-best place's score over
the best's (and how far that exceeds SECOND_HIGH: two dark lines compete); how far the refinement moved
the joint from where its search started (palm radii); whether an MCP was searched for again by the
phalanges' proportion; how far its finger's phalanx ratio is from the typical one (log) and whether that
ratio is missing on a finger 2-5; the traced valley's depth ratio (log); the palm radius (mm: the larger
hands, adults' and older children's, are the harder ones at a fixed 2 mm); how far the re-centring moved
it from the filters' point (mm: the filters and the bone's axis disagree). The hinges let the few clear
failures (a weak or doubled filter peak: val 1541's thumb and MCP5, 9-11 mm off) weigh without bending
the fit for the many sound joints. Each signal may only push the confidence its own way (SIGNS); one
that the fit would turn the other way is left out (the shipped model's "left_out": the second-best
place says no more than the PSR once that is in, the move and the phalanx ratio nothing the data holds). Fitted by `python -m jsnreg.detect_calibrate` (plain numpy, no sampling) on
joints detected with filters that never saw their hand; the coefficients and their provenance ship as
`jsnreg/data/detect_confidence.json`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

MODEL = Path(__file__).parent / "data" / "detect_confidence.json"
TYPES = ("IP1", "MCP1", "MCP", "PIP", "DIP")
FEATURES = TYPES + ("log_psr", "psr_low", "second", "second_high", "move_radii", "researched", "phalanx_off",
                    "no_phalanx_ratio", "log_depth_ratio", "radius_mm", "recentred_mm")
# The direction each signal can only push the confidence (+1: more is better).
SIGNS = {"log_psr": 1, "psr_low": -1, "second": -1, "second_high": -1, "move_radii": -1, "researched": -1,
         "phalanx_off": -1, "no_phalanx_ratio": -1, "log_depth_ratio": 1, "radius_mm": -1, "recentred_mm": -1}
PSR_LOW = 8.0  # the median sound joint's is 10
SECOND_HIGH = 0.5  # the median joint's is 0.36; the gross failures' 0.64-0.93
TYPICAL_PHALANX_RATIO = 1.66  # detect_refine's (not imported: the model stays readable on its own)
# Ridge on the standardised coefficients (not the types' intercepts), in log-likelihood units. Chosen on the
# fit's data, out of fold (2026-12-03): Brier 0.1472 at 1, 0.1465 at 10, 0.1459 at 30 (the types' base rates
# alone: 0.1506), AUC 0.613, 0.610, 0.602; unconstrained signs, at 10: Brier 0.1468, AUC 0.603, and the
# joints > 4 mm off told from the others at AUC 0.68 against 0.76.
L2 = 10.0


def features(signals: dict) -> np.ndarray:
    """The model's raw feature vector (FEATURES order) of one joint's signals."""
    kind = signals["type"]
    ratio = signals["phalanx_ratio"]
    finger = kind in ("MCP", "PIP", "DIP")
    psr = max(signals["psr"], 0.5)
    return np.array([float(kind == t) for t in TYPES] + [
        float(np.log(psr)), max(0.0, float(np.log(PSR_LOW / psr))),
        float(signals["second"]), max(0.0, float(signals["second"]) - SECOND_HIGH),
        float(signals["move_radii"]),
        float(bool(signals["researched"])),
        abs(float(np.log(ratio / TYPICAL_PHALANX_RATIO))) if ratio else 0.0,
        float(finger and not ratio),
        float(np.log(max(signals["depth_ratio"], 1e-3))),
        float(signals["radius_mm"]), float(signals["recentred_mm"])])


def _design(x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Raw features standardised (the type indicators kept as they are)."""
    return (np.asarray(x, float) - mean) / sd


def fit(x: np.ndarray, y: np.ndarray, l2: float = L2, iterations: int = 50) -> dict:
    """The logistic model of y (1: right, 0: wrong) on raw features x (n, len(FEATURES)) by Newton's
    method on the ridge-penalised log-likelihood, each signal held to its expected direction (SIGNS):
    one whose coefficient comes out the other way is left out (coefficient 0: it only fits noise, or
    another signal already says it), the most contrary first, and the rest refitted.
    {"mean", "sd", "coef"} (lists, FEATURES order) and "left_out" (names)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    k = len(TYPES)
    mean, sd = x.mean(axis=0), x.std(axis=0)
    mean[:k], sd[:k] = 0.0, 1.0
    sd[sd < 1e-9] = 1.0
    z = _design(x, mean, sd)
    ridge = np.r_[np.full(k, 1e-6), np.full(z.shape[1] - k, max(l2, 1e-6))]  # the types' intercepts barely held
    sign = np.r_[np.zeros(k), [SIGNS[f] for f in FEATURES[k:]]]
    active = list(range(z.shape[1]))
    while True:
        za, w = z[:, active], np.zeros(len(active))
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-za @ w))
            step = np.linalg.solve((za * (p * (1 - p))[:, None]).T @ za + np.diag(ridge[active]),
                                   za.T @ (p - y) + ridge[active] * w)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        against = w * sign[active]
        if against.min() >= 0:
            break
        active.pop(int(np.argmin(against)))
    coef = np.zeros(z.shape[1])
    coef[active] = w
    return {"mean": mean.tolist(), "sd": sd.tolist(), "coef": coef.tolist(),
            "left_out": [f for i, f in enumerate(FEATURES) if i not in active]}


def predict(model: dict, x: np.ndarray) -> np.ndarray:
    """P(right) of raw features x (n, len(FEATURES)) under a model (fit's or the shipped file's)."""
    z = _design(np.atleast_2d(x), np.asarray(model["mean"]), np.asarray(model["sd"]))
    return 1.0 / (1.0 + np.exp(-z @ np.asarray(model["coef"])))


@lru_cache(maxsize=1)
def shipped() -> dict:
    """The shipped model, read once per process."""
    return json.loads(MODEL.read_text())


def joint_confidence(signals: dict) -> float:
    """The shipped model's probability that the joint with these signals is within 2 mm and named right."""
    return float(predict(shipped(), features(signals))[0])


def auc(p: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (the chance a right joint is given more confidence than a wrong one,
    ties counted half); nan without both kinds."""
    p, y = np.asarray(p, float), np.asarray(y, bool)
    pos, neg = p[y], p[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    return float(greater / (len(pos) * len(neg)))


BINS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)


def reliability(p: np.ndarray, y: np.ndarray, bins=BINS) -> list[tuple]:
    """[(low, high, joints, mean confidence, share right)] per confidence bin holding joints."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    out = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        inside = (p >= lo) & ((p < hi) if hi < bins[-1] else (p <= hi))
        if inside.any():
            out.append((lo, hi, int(inside.sum()), float(p[inside].mean()), float(y[inside].mean())))
    return out


def format_reliability(label: str, p, y) -> str:
    """A few lines: the AUC and the Brier score, then per bin predicted against observed."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    if not len(p):
        return f"{label}: no scored detections"
    lines = [f"{label}: {len(p)} joints, {int(y.sum())} right; AUC {auc(p, y):.3f}, "
             f"Brier {float(np.mean((p - y) ** 2)):.3f}, mean confidence {p.mean():.3f} vs right {y.mean():.3f}"]
    lines += [f"    conf {lo:.2f}-{hi:.2f}: {n:4d} joints, mean {m:.3f}, right {r:.3f}"
              for lo, hi, n, m, r in reliability(p, y)]
    return "\n".join(lines)
