"""Study: the finger rolled about its long axis between the visits, so that the bones' projected widths
change (x cos of the roll, for an elliptic cross-section) while their lengths do not: what a per-bone
similarity with one shared scale cannot follow. The real pairs of one split (val to choose; never test),
each visit's layers squeezed or stretched across the ROI (x) about the joint centre: the soft tissue and
both bones by a common factor 1 + U(-A, A) ("common": the finger rolls as a whole), or each bone by its own
further factor as well ("own"). The truth is unchanged (the squeeze keeps the joint centre where it is).
Per motion set and ROI shape: the whole method's JSN error SD, beyond 0.5 px, unflagged beyond, good flagged,
automatic split, without and with the squeeze. Needs ../shared/data/real-hands.

    PYTHONPATH=JSNRegistration python Testing/tools/roll_study.py SPLIT A [common|own]
"""
import sys

import numpy as np

from jsnreg import real_pairs
from jsnreg.real_pairs import joints_of_split, make_real_pairs
from jsnreg.register import Engine
from jsnreg.transforms import roi_centre
from study_pairs import automatic_split_errors

drawn = real_pairs.draw_motions


def across(factor: float, centre_x: float) -> np.ndarray:
    """3x3 on (x, y, 1): x scaled by `factor` about the column `centre_x`."""
    m = np.eye(3)
    m[0, 0], m[0, 2] = factor, centre_x * (1 - factor)
    return m


def squeezing(amount: float, own: bool):
    def draw(rng, shape, motion_set):
        common, upper, lower = drawn(rng, shape, motion_set)
        cx = roi_centre(shape)[0]
        finger = rng.uniform(-amount, amount)
        bone = (lambda: rng.uniform(-amount, amount)) if own else (lambda: 0.0)
        # Applied first (in the fixed frame): the joint centre stays put, so each bone's truth does too.
        return (common @ across(1 + finger, cx), upper @ across(1 + finger + bone(), cx),
                lower @ across(1 + finger + bone(), cx))
    return draw


if __name__ == "__main__":
    split, amount = sys.argv[1], float(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "common"
    if split not in ("train", "val") or mode not in ("common", "own"):
        sys.exit("usage: roll_study.py train|val AMOUNT [common|own]")
    engine = Engine.load()
    joints = joints_of_split(split)
    for label, draw in (("as drawn", drawn), (f"across +-{amount:g} {mode}", squeezing(amount, mode == "own"))):
        real_pairs.draw_motions = draw
        for set_name in ("realistic", "hard"):
            for shape in ("square", "wide"):
                err, flagged = automatic_split_errors(engine, make_real_pairs(split, set_name, shape, 60, 2026,
                                                                               joints=joints))
                bad = np.abs(err) > 0.5
                print(f"{label:22s} {set_name:9s} {shape:6s}: SD {err.std(ddof=1):.3f} px, beyond 0.5 px {bad.sum()}, "
                      f"unflagged beyond {(bad & ~flagged).sum()}, good flagged {(flagged & ~bad).mean():.1%}", flush=True)
    real_pairs.draw_motions = drawn
