"""Study: the hand's magnification along its fingers, from its own joints, held in a second pass.

Each annotated real hand of SPLIT (val to choose; never tune on test) against the same film repositioned as a
whole (repositioned_hands.follow_up: every joint's true JSN 0, one magnification for the film). Pass 1 is
quantify as shipped; the hand's magnification is the median of its unflagged joints' fitted scales (each joint's
ROI pair, so what the placement left of the film's scale); pass 2 measures every joint again with that
magnification held along the ROI and only the one across fitted (Engine.along_scale). Per split: each pass's JSN
error SD (px of the full resolution), flags, and how far the joints' own scales lie from their hand's median.

    PYTHONPATH=JSNRegistration python Testing/tools/hand_magnification.py SPLIT [--seed 0]
"""
import argparse

import numpy as np

from jsnreg.detect_bench import load_annotations
from jsnreg.images import Radiograph, read_radiograph
from jsnreg.joints import JointSpec
from jsnreg.real_hands import ANNOTATIONS, real_hands_dir
from jsnreg.register import Engine
from repositioned_hands import follow_up, measured

MIN_JOINTS = 5  # unflagged joints a hand needs for its median


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("split", choices=("train", "val", "test"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    folder = real_hands_dir()
    engine = Engine.load()
    err1, err2, fl1, fl2, spread = [], [], [], [], []
    for rel, entry in load_annotations(ANNOTATIONS).items():
        if entry["split"] != args.split or not (folder / rel).is_file():
            continue
        base = read_radiograph(folder / rel, spacing_mm=float(entry["spacing_mm_nominal"]))
        rng = np.random.default_rng([args.seed, int.from_bytes(rel.encode(), "little") % 2**32])
        pixels, m = follow_up(base.pixels, rng)
        follow = Radiograph(pixels, base.spacing_mm, dict(base.meta))
        joints = [JointSpec(n, float(x), float(y), source="manual") for n, (x, y) in entry["joints"].items()]
        engine.along_scale = None
        first = measured(base, follow, joints, engine, [])
        scales = np.array([r.upper.scale for r in first if not r.flagged])
        if len(scales) < MIN_JOINTS:
            print(f"{rel}: {len(scales)} unflagged joints, no second pass", flush=True)
            continue
        hand = float(np.median(scales))
        engine.along_scale = hand
        second = {r.name: r for r in measured(base, follow, joints, engine, [])}
        engine.along_scale = None
        for r in first:
            if r.name in second:
                err1.append(r.jsn_mm / base.spacing_mm)
                err2.append(second[r.name].jsn_mm / base.spacing_mm)
                fl1.append(r.flagged)
                fl2.append(second[r.name].flagged)
        spread += list(scales / hand - 1)
        film = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
        print(f"{rel}: {len(first)} joints, hand magnification {hand:.5f} (film {film:.5f}), joints' scales about it "
              f"SD {100 * np.std(scales / hand - 1):.3f} %; JSN error SD {np.std(err1[-len(second):]):.3f} -> "
              f"{np.std(err2[-len(second):]):.3f} px", flush=True)
    e1, e2, f1, f2 = (np.array(v) for v in (err1, err2, fl1, fl2))
    print(f"{args.split}: {len(e1)} joints; JSN error SD {e1.std(ddof=1):.3f} -> {e2.std(ddof=1):.3f} px "
          f"(unflagged in both {e1[~f1 & ~f2].std(ddof=1):.3f} -> {e2[~f1 & ~f2].std(ddof=1):.3f}), max "
          f"{np.abs(e1).max():.2f} -> {np.abs(e2).max():.2f}; flagged {f1.mean():.1%} -> {f2.mean():.1%}; "
          f"joints' scales about their hand's median: SD {100 * np.std(spread):.3f} %, max {100 * np.abs(spread).max():.2f} %")


if __name__ == "__main__":
    main()
