"""Whole real hands repositioned, no joint changed: how many joints are flagged, and how far off are the others.

Each annotated real hand of a split (../shared/data/real-hands) is measured against a follow-up that is the
same film turned, scaled and shifted as a whole (seeded per hand), under another exposure curve, a little
blur and new noise: every joint's true JSN is 0. The joints are the annotated ones (as a user would place
them; --detected: the joints jsnreg.detect finds on the baseline, as `jsnreg quantify` without joints
places them), measured by `quantify.quantify` as `jsnreg quantify` does. A flag here is a good result flagged
unless its error is beyond 0.5 px.
Usage: PYTHONPATH=JSNRegistration python Testing/tools/repositioned_hands.py SPLIT [--detected] [--seed 0] [--json OUT]
       [--unsharp MM AMOUNT]   (the follow-up film unsharp masked, as another site's processing would leave it)
(SPLIT: train, val or test; the adult films are all test, as in the registration benchmarks).
"""

import argparse
import collections
import json

import numpy as np
from scipy import ndimage

from jsnreg.bench_hand import moved_film, similarity_matrix
from jsnreg.detect_bench import load_annotations
from jsnreg.errors import InputError
from jsnreg.images import Radiograph, read_radiograph
from jsnreg.detect import detect_joints
from jsnreg.joints import JointSpec, detected_joints
from jsnreg.quantify import Settings, quantify
from jsnreg.real_hands import ANNOTATIONS, real_hands_dir
from jsnreg.register import Engine

ROTATION_DEG, SCALE, SHIFT_PX = 5.0, 0.03, 30.0  # the whole film repositioned, uniform in +-
NOISE_SD = (0.005, 0.015)


def follow_up(pixels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The film repositioned (3x3 on x, y, 1), re-exposed, blurred and re-noised; and the matrix."""
    rows, cols = pixels.shape
    m = similarity_matrix(rng.uniform(-ROTATION_DEG, ROTATION_DEG), 1 + rng.uniform(-SCALE, SCALE),
                          rng.uniform(-SHIFT_PX, SHIFT_PX, 2), ((cols - 1) / 2, (rows - 1) / 2))
    moved = ndimage.gaussian_filter(np.clip(moved_film(pixels, m), 0, 1), rng.uniform(0.0, 0.8))
    exposed = rng.uniform(0.85, 1.0) * moved ** rng.uniform(0.85, 1.2) + rng.uniform(0.0, 0.05)
    return np.clip(exposed + rng.normal(0.0, rng.uniform(*NOISE_SD), pixels.shape), 0, 1).astype(np.float32), m


def measured(base: Radiograph, follow: Radiograph, joints: list, engine: Engine, refused: list,
             settings: Settings | None = None) -> list:
    """quantify's results; a joint quantify refuses (its ROI beyond the film's edge) is left out and listed."""
    while joints:
        try:
            return quantify(base, follow, joints, settings or Settings(), engine)
        except InputError as exc:
            name = str(exc).split()[1]
            if name not in {j.name for j in joints}:
                raise
            refused.append(f"{base.meta.get('path', '')} {name}: {exc}")
            joints = [j for j in joints if j.name != name]
    return []


def unsharp(radius_mm: float, amount: float):
    """A film change for hands(): unsharp masking, the detail below radius_mm raised `amount` times."""
    def film(pixels: np.ndarray, entry: dict) -> np.ndarray:
        soft = ndimage.gaussian_filter(pixels, radius_mm / float(entry["spacing_mm_nominal"]))
        return np.clip(pixels + amount * (pixels - soft), 0, 1).astype(np.float32)
    return film


def hands(split: str, seed: int, film=None):
    """(image path, annotation entry, baseline, follow-up, annotated joints) of each annotated real hand of
    `split`, the follow-up being its film (or film(pixels, entry), changed before the move) repositioned by
    follow_up, seeded per hand."""
    folder = real_hands_dir()
    for rel, entry in load_annotations(ANNOTATIONS).items():
        if entry["split"] != split or not (folder / rel).is_file():
            continue
        base = read_radiograph(folder / rel, spacing_mm=float(entry["spacing_mm_nominal"]))
        rng = np.random.default_rng([seed, int.from_bytes(rel.encode(), "little") % 2**32])
        pixels, _ = follow_up(base.pixels if film is None else film(base.pixels, entry), rng)
        follow = Radiograph(pixels, base.spacing_mm, dict(base.meta))
        joints = [JointSpec(n, float(x), float(y), source="manual") for n, (x, y) in entry["joints"].items()]
        yield rel, entry, base, follow, joints


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("split", choices=("train", "val", "test"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    p.add_argument("--detected", action="store_true", help="the joints jsnreg.detect finds on the baseline")
    p.add_argument("--unsharp", nargs=2, type=float, metavar=("MM", "AMOUNT"),
                   help="the follow-up film processed otherwise: its detail below MM raised AMOUNT times (unsharp masking)")
    args = p.parse_args()
    engine = Engine.load()
    rows, refused = [], []
    for rel, _, base, follow, joints in hands(args.split, args.seed, film=unsharp(*args.unsharp) if args.unsharp else None):
        if args.detected:
            joints = detected_joints(detect_joints(base.pixels, base.spacing_mm))
        for r in measured(base, follow, joints, engine, refused):
            rows.append({"image": rel, "joint": r.name, "error_px": r.jsn_mm / base.spacing_mm, "error_mm": r.jsn_mm,
                         "flagged": bool(r.flagged), "reason": r.flag_reason, "confidence": r.confidence})
        bad = [f"{r['joint']}" for r in rows if r["image"] == rel and r["flagged"]]
        print(f"{rel}: {len(joints)} joints, flagged {len(bad)} {' '.join(bad)}", flush=True)
    err = np.array([r["error_px"] for r in rows])
    flagged = np.array([r["flagged"] for r in rows])
    good = np.abs(err) <= 0.5
    print(f"{args.split}: {len(rows)} joints, flagged {flagged.mean():.1%} (good flagged {flagged[good].mean():.1%}); "
          f"beyond 0.5 px {(~good).sum()}, unflagged {(~good & ~flagged).sum()}; error SD {err.std(ddof=1):.3f} px, "
          f"unflagged SD {err[~flagged].std(ddof=1):.3f} px, max unflagged {np.abs(err[~flagged]).max():.2f} px; "
          f"error SD {np.std([r['error_mm'] for r in rows], ddof=1):.4f} mm")
    for line in refused:
        print(f"  refused: {line}")
    reasons = collections.Counter(part.split(":")[0].split(" (")[0] for r in rows if r["flagged"] for part in r["reason"].split("; "))
    for reason, n in reasons.most_common():
        print(f"  {n:3d}  {reason}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
