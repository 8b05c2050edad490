"""`python -m jsnreg.detect_calibrate`: the detected joints' confidence model (jsnreg.detect_confidence),
fitted on joints whose detection never saw their hand: the RSNA train hands refined by the filters of the
other fold (jsnreg.detect_train's 2-fold cross-validation), the RSNA val hands and the adult val hands
(jsnreg.real_hands.adult_splits) with the shipped filters. Each detection is labelled right when it lies
within 2 mm of the annotated joint of its name (detect_bench.outcome "found"), wrong when it is misplaced,
misnamed or invented; detections the annotation does not score are left out.

Prints the model's reliability and AUC per source, out of fold (the model refitted without each hand's
group of hands: 6 groups by file name), writes `jsnreg/data/detect_confidence.json` (the model fitted on
all of them, its figures and provenance). `--test`: the shipped model on RSNA test and adult test
(report only, nothing written; run once, at the end). Needs the real hands (../shared/data/real-hands).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sys

import numpy as np

from . import detect_confidence as dc
from .detect_bench import TOLERANCE_MM, _images, load_annotations, outcome, scored
from .errors import InputError
from .real_hands import ANNOTATIONS, real_hands_dir

GROUPS = 6  # out-of-fold groups of images: every 6th by the sha256 of the file name
FAR_MM = 4.0  # a gross error (the tolerance is 2 mm; most misses are 2-3.5 mm)


def _rows(source: str, image: str, found, truth: dict, absent: set, tol_px: float) -> list[dict]:
    """A labelled row per scored detection: found = [(name, (x, y), signals)], truth in the same px."""
    rows = []
    for name, xy, signals in found:
        o = outcome(name, np.asarray(xy, float), truth, absent, tol_px)
        if o is not None:
            rows.append({"source": source, "image": image, "name": name, "outcome": o[1],
                         "right": o[1] == "found", "x": dc.features(signals).tolist(),
                         "old": min(1.0, signals["depth_ratio"] / 2),
                         "error_mm": float(np.hypot(*(np.asarray(xy) - truth[name])) * TOLERANCE_MM / tol_px) if name in truth else None})
    return rows


def train_cv_rows(folds: int = 2) -> list[dict]:
    """The RSNA train hands' detections, each hand refined by filters learned without it (the folds of
    jsnreg.detect_train.cross_validated)."""
    from .detect_refine import refine
    from .detect_train import GENERATED_WEIGHT, filters, generated_hands, training_hands

    annotations = load_annotations(ANNOTATIONS)
    hands = sorted(training_hands(), key=lambda h: h[0])
    generated = list(generated_hands())
    rows = []
    for k in range(folds):
        kept = [h for i, h in enumerate(hands) if i % folds != k] + generated
        made, _ = filters(kept, [1.0] * (len(kept) - len(generated)) + [GENERATED_WEIGHT] * len(generated))
        passes = [{t: np.fft.fft2(f) for t, f in p.items()} for p in made]
        for rel, fine, hand, truth in hands[k::folds]:
            _, absent = scored(annotations[rel])
            rows += _rows("rsna train CV", rel, refine(fine, hand, passes), truth, absent, TOLERANCE_MM / hand.mm)
    return rows


def shipped_rows(splits) -> list[dict]:
    """The detections (shipped filters) of the annotated images of the detection splits given."""
    from .detect import detections

    folder = real_hands_dir()
    annotations = load_annotations(ANNOTATIONS)
    rows = []
    for rel, source, pixels, spacing, entry in _images(folder, annotations, splits):
        truth, absent = scored(entry)
        try:
            found = [(n, (x, y), s) for n, x, y, s, _ in detections(pixels, spacing)]
        except InputError:
            continue
        rows += _rows(source, rel, found, truth, absent, TOLERANCE_MM / spacing)
    return rows


def out_of_fold(rows: list[dict], groups: int = GROUPS) -> np.ndarray:
    """Each row's confidence from the model fitted without its image's group (images sorted by the
    sha256 of their name, group = rank mod groups)."""
    images = sorted({r["image"] for r in rows}, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    group = {n: i % groups for i, n in enumerate(images)}
    x = np.array([r["x"] for r in rows])
    y = np.array([r["right"] for r in rows], float)
    g = np.array([group[r["image"]] for r in rows])
    p = np.zeros(len(rows))
    for k in range(groups):
        p[g == k] = dc.predict(dc.fit(x[g != k], y[g != k]), x[g == k])
    return p


def report(rows: list[dict], p: np.ndarray, label: str) -> str:
    """Reliability and AUC per source and for all of them, with the old confidence's AUC beside and how
    well the joints far off (> FAR_MM from their annotation, or misnamed) are told from the others."""
    y = np.array([r["right"] for r in rows], float)
    old = np.array([r["old"] for r in rows])
    far = np.array([r["outcome"] in ("misnamed", "invented") or (r["error_mm"] or 0.0) > FAR_MM for r in rows])
    lines = []
    sources = sorted({r["source"] for r in rows})
    for source in sources + ["all"]:
        m = np.array([source in ("all", r["source"]) for r in rows])
        lines.append(dc.format_reliability(f"{label} {source}", p[m], y[m]))
        lines.append(f"    old confidence (min(1, valley depth / 2 x median)): AUC {dc.auc(old[m], y[m]):.3f}; "
                     f"{int(far[m].sum())} joints > {FAR_MM:g} mm off or misnamed, told from the others at AUC "
                     f"{dc.auc(-p[m], far[m]):.3f} (old {dc.auc(-old[m], far[m]):.3f})")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if real_hands_dir() is None:
        raise InputError("the real-hands folder is not there (set JSNREG_REAL_HANDS or place ../shared/data)")
    if "--test" in argv:  # report only, on the held-out hands
        rows = shipped_rows(("test",))
        p = dc.predict(dc.shipped(), np.array([r["x"] for r in rows]))
        print(report(rows, p, "test, shipped model:"))
        return 0
    rows = train_cv_rows() + shipped_rows(("val",))
    p = out_of_fold(rows)
    text = report(rows, p, "out of fold:")
    print(text)
    x, y = np.array([r["x"] for r in rows]), np.array([r["right"] for r in rows], float)
    model = dc.fit(x, y)
    inside = dc.predict(model, x)
    print(dc.format_reliability("in sample, all", inside, y))
    dc.MODEL.write_text(json.dumps({
        "command": "python -m jsnreg.detect_calibrate",
        "date": datetime.date.today().isoformat(),
        "data": "RSNA train hands (2-fold CV filters, as python -m jsnreg.detect_train --cv), RSNA val and "
                "adult val hands (shipped filters) of jsnreg/data/real_hands_joints.json; right = within "
                f"{TOLERANCE_MM:g} mm of the annotated joint of its name",
        "annotations_sha256": hashlib.sha256(ANNOTATIONS.read_bytes()).hexdigest(),
        "joints": {s: int(sum(r["source"] == s for r in rows)) for s in sorted({r["source"] for r in rows})},
        "features": list(dc.FEATURES), "l2": dc.L2,
        "mean": [round(v, 6) for v in model["mean"]], "sd": [round(v, 6) for v in model["sd"]],
        "coef": [round(v, 6) for v in model["coef"]], "left_out": model["left_out"],
        "out_of_fold": {"auc": round(dc.auc(p, y), 4), "brier": round(float(np.mean((p - y) ** 2)), 4),
                        "reliability": [[lo, hi, n, round(m, 4), round(r, 4)]
                                        for lo, hi, n, m, r in dc.reliability(p, y)]}}, indent=1) + "\n")
    print(f"wrote {dc.MODEL}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
