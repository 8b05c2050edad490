"""`jsnreg calibrate`: fit the confidence model on real VALIDATION pairs and write it with its
provenance to weights/confidence.json (confidence.py). One command to redo after a retraining.

Pairs: real_pairs.make_real_pairs of the split (never test), motion sets realistic and hard, ROI
shapes square and wide, each registered by the whole method twice: with the automatic split and
with the given mask (both are what users run). The engine runs with a neutral calibration, so the
signals and the hard flags are those of the method itself.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import numpy as np

from . import confidence as cm

SETS = ("realistic", "hard")
SHAPES = ("square", "wide")


def record(result, truth_jsn_px: float) -> dict:
    return {"error_px": result.jsn_px - truth_jsn_px, "hard_flag": bool(result.flagged),
            "reason": result.flag_reason, "features": result.details["features"]}


def collect(engine, pairs, log=print) -> list[dict]:
    """Every pair through the whole method, automatic split and given mask: errors and signals."""
    out = []
    t0 = time.time()
    for k, p in enumerate(pairs):
        for mask in (None, p.upper_mask):
            r = engine.register_roi(p.fixed, p.moving, p.spacing_mm, upper_mask=mask)
            rec = record(r, p.jsn_px)
            rec.update(set=getattr(p, "motion_set", ""), shape=getattr(p, "shape_name", ""),
                       image=getattr(p, "image", ""), mask="given" if mask is not None else "automatic")
            out.append(rec)
        if (k + 1) % 50 == 0:
            log(f"[{k + 1}/{len(pairs)}] pairs ({time.time() - t0:.0f} s)")
    return out


def fit(records: list[dict]) -> dict:
    """The model, its flag threshold and its figures on these records."""
    x = np.array([cm.feature_vector(r["features"]) for r in records])
    err = np.array([r["error_px"] for r in records])
    hard = np.array([r["hard_flag"] for r in records])
    use = ~hard  # hard-flagged results are flagged whatever their confidence
    mean, scale, coef, intercept = cm.fit_scale_model(x[use], err[use])
    cal = cm.Calibration({"features": list(cm.FEATURES), "mean": mean.tolist(), "scale": scale.tolist(),
                          "coef": coef.tolist(), "intercept": intercept, "flag_scale_px": np.inf, "provenance": {}})
    b = np.array([cal.error_scale_px(r["features"]) for r in records])
    conf = np.array([cal.confidence(r["features"]) for r in records])
    threshold = cm.choose_threshold(b, np.abs(err) > cm.GOOD_PX, hard)  # hard flags count as caught
    flagged = hard | (b > threshold)
    return {"features": list(cm.FEATURES), "mean": mean.tolist(), "scale": scale.tolist(),
            "coef": coef.tolist(), "intercept": intercept, "flag_scale_px": threshold,
            "figures": cm.flag_figures(err, flagged), "figures_by_group": by_group(records, err, flagged),
            "reliability": cm.reliability(conf, err)}


def by_group(records: list[dict], err: np.ndarray, flagged: np.ndarray) -> dict:
    """Per motion set, ROI shape and mask: error SD and max (px) and the flag figures."""
    out = {}
    keys = sorted({(r["set"], r["shape"], r["mask"]) for r in records})
    for key in keys:
        sel = np.array([(r["set"], r["shape"], r["mask"]) == key for r in records])
        e = err[sel]
        out["/".join(key)] = {"error_sd_px": float(e.std(ddof=1)) if e.size > 1 else None,
                              "error_max_px": float(np.abs(e).max()),
                              "error_sd_unflagged_px": float(e[~flagged[sel]].std(ddof=1)) if (~flagged[sel]).sum() > 1 else None,
                              **cm.flag_figures(e, flagged[sel])}
    return out


def run(split: str = "val", n_pairs: int = 200, seed: int = 0, out: Path | None = None,
        weights_path: Path | None = None, log=print) -> dict:
    """Calibrate on `n_pairs` pairs per motion set and ROI shape of `split`; write the file."""
    from .errors import InputError
    from .network import default_network, file_sha256, model_info
    from .real_hands import annotation_path
    from .real_pairs import joints_of_split, make_real_pairs
    from .register import Engine

    if split == "test":
        raise InputError("the confidence is never calibrated on test hands: use --split val")
    joints = joints_of_split(split)
    engine = Engine(default_network(str(weights_path) if weights_path else None), cm.Calibration.neutral())
    pairs = [p for s in SETS for shape in SHAPES
             for p in make_real_pairs(split, s, shape, n_pairs, seed, joints=joints)]
    records = collect(engine, pairs, log)
    model = fit(records)
    model["provenance"] = {
        "data": {"source": "real_pairs.make_real_pairs", "split": split, "motion_sets": list(SETS),
                 "shapes": list(SHAPES), "pairs_per_set_and_shape": n_pairs, "seed": seed,
                 "masks": ["automatic", "given"], "results": len(records),
                 "images": sorted({j.image for j in joints}), "joints": len(joints),
                 "annotations_sha256": file_sha256(annotation_path()) if annotation_path().is_file() else ""},
        "network": model_info(weights_path),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": f"jsnreg calibrate --split {split} --pairs {n_pairs} --seed {seed}",
    }
    out = Path(out or cm.CALIBRATION_FILE)
    out.write_text(json.dumps(model, indent=1) + "\n")
    cm.load.cache_clear()
    f = model["figures"]
    log(f"calibrated on {f['n']} results ({f['bad']} beyond {cm.GOOD_PX} px): flagged above an error scale of "
        f"{model['flag_scale_px']:.3f} px; "
        f"unflagged beyond 0.5 px {f['unflagged_bad_share']:.2%}, errors caught "
        f"{f['bad_caught'] if f['bad_caught'] is None else format(f['bad_caught'], '.1%')}, good flagged {f['good_flagged']:.1%}"
        f" -> {out}")
    return model
