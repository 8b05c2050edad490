"""Study: quantify with and without its second pass (the hand's magnification held along each joint's ROI).

Each annotated real hand of SPLIT against the same film repositioned as a whole (repositioned_hands.follow_up:
every joint's true JSN 0, one magnification for the film), measured by quantify once with the second pass
switched off (Settings(hand_magnification=False)) and once as shipped. Per split: each
one's JSN error SD (px), flags, and how far the joints' own fitted magnifications lie from their hand's median.

    PYTHONPATH=JSNRegistration python Testing/tools/hand_magnification.py SPLIT [--seed 0]
"""
import argparse

import numpy as np

from jsnreg import quantify as q
from jsnreg.register import Engine
from repositioned_hands import hands, measured


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("split", choices=("train", "val", "test"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    engine = Engine.load()
    err, flags, spread = {"one pass": [], "shipped": []}, {"one pass": [], "shipped": []}, []
    for _, _, base, follow, joints in hands(args.split, args.seed):
        for label, settings in (("one pass", q.Settings(hand_magnification=False)), ("shipped", q.Settings())):
            results = measured(base, follow, joints, engine, [], settings)
            err[label] += [r.jsn_mm / base.spacing_mm for r in results]
            flags[label] += [r.flagged for r in results]
            if label == "one pass":
                scales = np.array([r.upper.scale for r in results if not r.flagged])
                spread += list(scales / np.median(scales) - 1)
    cells = "; ".join(f"{label}: JSN error SD {np.std(e, ddof=1):.3f} px, max {np.abs(e).max():.2f}, flagged "
                      f"{np.mean(flags[label]):.1%}" for label, e in err.items())
    print(f"{args.split}: {len(err['shipped'])} joints; {cells}; the joints' magnifications about their hand's "
          f"median: SD {100 * np.std(spread):.3f} %, max {100 * np.abs(spread).max():.2f} %")


if __name__ == "__main__":
    main()
