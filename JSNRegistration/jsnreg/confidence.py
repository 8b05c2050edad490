"""The confidence of a refined joint: P(|JSN error| <= 0.5 px) from signals that hold on real
radiographs, calibrated on real validation pairs (`jsnreg calibrate`).

Model: the JSN error is taken as Laplace distributed (heavier tails than a normal: a wrong
minimum is rare but far) with a scale b that the signals predict, log b = a + c . z (z the
standardised features), fitted by least squares to log |error| + 0.5772 (the mean of log |e| for
a Laplace e is log b - Euler's gamma). Every validation pair teaches the model how large its error
is, not only the few beyond 0.5 px, which a classifier would have to learn from.
Confidence = P(|e| <= 0.5 px) = 1 - exp(-0.5 / b); flagged where b exceeds the calibrated
`flag_scale_px` (the same order, without the confidence's rounding near 1).

Signals (measure.signals): the JSN's predicted SD, the forward-backward disagreement, the spread
of the refined minima from independent starts, the disagreement of the starts themselves and of
the network with the refinement, the share of pixels the robust weights kept and the share of the
bones' edges left unsaturated. The calibration file `weights/confidence.json` holds the model, the
flag threshold chosen on the validation pairs, the figures it reached there, and its provenance
(data, network SHA-256, date, command), so a new network is one command from a new calibration.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from .network import WEIGHTS_DIR

CALIBRATION_FILE = WEIGHTS_DIR / "confidence.json"
FEATURES = ("log_sd_jsn", "log_fb_px", "log_minima_px", "log_start_px", "log_net_diff_px",
            "inlier_fraction", "edge_share")
GOOD_PX = 0.5  # a result within this of the truth is right
RIDGE = 1.0  # L2 penalty (in units of pairs) on the standardised coefficients
EULER_GAMMA = 0.5772156649  # log b - E[log |e|] for a Laplace e of scale b
ERROR_FLOOR_PX = 1e-4
TARGET_RECALL = 0.99  # share of errors > GOOD_PX the flag must catch (validation)
MAX_GOOD_FLAGGED = 0.05  # the flag may cost at most this share of the good results (validation)
# Whatever the validation pairs allow, no result goes out unflagged that the model itself gives more
# than this chance of being beyond GOOD_PX. With one or two such errors among the validation pairs the
# recall rule alone rests the threshold on a single example: recalibrated so, another val sample's only
# error went out unflagged (its error scale 0.127 px, the threshold 0.156 px).
MAX_RISK = 0.01


def feature_vector(signals: dict) -> np.ndarray:
    return np.array([float(signals[k]) for k in FEATURES])


class Calibration:
    def __init__(self, data: dict):
        self.data = data
        self.mean = np.asarray(data["mean"], float)
        self.scale = np.asarray(data["scale"], float)
        self.coef = np.asarray(data["coef"], float)
        self.intercept = float(data["intercept"])
        self.flag_scale_px = float(data["flag_scale_px"])
        if tuple(data["features"]) != FEATURES:
            raise ValueError(f"calibration features {data['features']} are not this engine's {FEATURES}")

    def error_scale_px(self, signals: dict) -> float:
        """The predicted Laplace scale b of the JSN error (px); its SD is sqrt(2) b."""
        z = (feature_vector(signals) - self.mean) / self.scale
        return float(np.exp(self.intercept + z @ self.coef))

    def confidence(self, signals: dict) -> float:
        return float(1.0 - np.exp(-GOOD_PX / self.error_scale_px(signals)))

    def flagged(self, signals: dict) -> bool:
        return self.error_scale_px(signals) > self.flag_scale_px

    @property
    def flag_confidence(self) -> float:
        """The confidence at the flag threshold: a result is flagged below it (about 0.99, so a flagged
        result's confidence, rounded to two decimals, can still read 0.99)."""
        return float(1.0 - np.exp(-GOOD_PX / self.flag_scale_px))

    def weakest_signal(self, signals: dict) -> str:
        """The feature that raises the predicted error scale most (pulls the confidence down most)."""
        z = (feature_vector(signals) - self.mean) / self.scale
        return FEATURES[int(np.argmax(z * self.coef))]

    @classmethod
    def neutral(cls) -> "Calibration":
        """One error scale (1 px) for all, never flagged: what `calibrate` runs the engine with."""
        n = len(FEATURES)
        return cls({"features": list(FEATURES), "mean": [0.0] * n, "scale": [1.0] * n, "coef": [0.0] * n,
                    "intercept": 0.0, "flag_scale_px": np.inf, "provenance": {"data": "none (neutral)"}})

    @property
    def provenance(self) -> dict:
        return self.data["provenance"]


@lru_cache(maxsize=4)
def load(path: str | None = None) -> Calibration:
    """The calibration in use (the shipped file unless a path is given)."""
    return Calibration(json.loads(Path(path or CALIBRATION_FILE).read_text()))


def fit_scale_model(x: np.ndarray, error_px: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Ridge least squares of log |error| + Euler's gamma on the standardised features:
    (mean, scale, coef, intercept) of log b."""
    mean = x.mean(axis=0)
    scale = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    y = np.log(np.maximum(np.abs(error_px), ERROR_FLOOR_PX)) + EULER_GAMMA
    penalty = RIDGE * np.eye(z.shape[1])
    penalty[0, 0] = 0.0
    beta = np.linalg.solve(z.T @ z + penalty, z.T @ y)
    return mean, scale, beta[1:], float(beta[0])


def choose_threshold(scale_px: np.ndarray, bad: np.ndarray, hard: np.ndarray) -> float:
    """The error scale above which results are flagged: within the budget of MAX_GOOD_FLAGGED good
    results flagged (hard-flagged ones included), the one that catches the most bad results; of
    those, the largest (fewest good flagged). Where the budget allows TARGET_RECALL, that is met.
    Never above the scale at which P(|error| > GOOD_PX) = MAX_RISK."""
    best, best_key = float(np.inf), (-1.0, -np.inf)
    for t in np.concatenate([[np.inf], np.unique(scale_px)]):
        flagged = hard | (scale_px > t)
        good_flagged = flagged[~bad].mean() if (~bad).any() else 0.0
        if good_flagged > MAX_GOOD_FLAGGED:
            continue
        recall = min(flagged[bad].mean(), TARGET_RECALL) if bad.any() else 1.0
        if (recall, t) > best_key:
            best, best_key = float(t), (recall, t)
    return min(best, GOOD_PX / -np.log(MAX_RISK))


def flag_figures(error_px: np.ndarray, flagged: np.ndarray) -> dict:
    """The figures the targets are about: unflagged share beyond GOOD_PX, errors caught, good flagged."""
    bad = np.abs(error_px) > GOOD_PX
    return {"n": int(len(error_px)), "bad": int(bad.sum()),
            "unflagged_bad_share": float(bad[~flagged].mean()) if (~flagged).any() else 0.0,
            "bad_caught": float(flagged[bad].mean()) if bad.any() else None,
            "good_flagged": float(flagged[~bad].mean()) if (~bad).any() else None}


def reliability(conf: np.ndarray, error_px: np.ndarray, bins: int = 10) -> list[dict]:
    """Per confidence bin: how many results and which share of them were within GOOD_PX."""
    good = np.abs(error_px) <= GOOD_PX
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf >= lo) & ((conf < hi) if hi < 1 else (conf <= hi))
        out.append({"low": float(lo), "high": float(hi), "n": int(sel.sum()),
                    "mean_confidence": float(conf[sel].mean()) if sel.any() else None,
                    "share_within_0.5px": float(good[sel].mean()) if sel.any() else None})
    return out


def plot_reliability(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    used = [r for r in rows if r["n"]]
    ax.plot([0, 1], [0, 1], color="0.7", lw=1)
    ax.plot([r["mean_confidence"] for r in used], [r["share_within_0.5px"] for r in used], "o-")
    for r in used:
        ax.annotate(str(r["n"]), (r["mean_confidence"], r["share_within_0.5px"]), fontsize=7,
                    textcoords="offset points", xytext=(3, -9))
    ax.set_xlabel("confidence (bin mean)")
    ax.set_ylabel("share within 0.5 px of the truth")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
