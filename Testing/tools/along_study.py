"""Study: the roll bias with the magnification along the finger known. A finger rolled between the visits
changes its bones' widths, not their lengths (roll_study.py); with the magnification along the ROI given (as a
hand-level estimate would give it) and only the one across fitted, does the JSN lose the bias, and what does an
error in the given magnification cost? Real pairs of SPLIT (val to choose; never test), given mask; the kept fit
of the shipped method refitted on levels 1-2 with refine_bones(across=True, along_scale=S), S the truth's common
magnification times (1 + EPS) for each EPS. Also the shipped fit's own magnification error (its shared scale
over the truth's, SD and mean): how well one joint tells the hand's magnification.

    PYTHONPATH=JSNRegistration python Testing/tools/along_study.py SPLIT AMOUNT [EPS ...]
"""
import sys

import numpy as np

from jsnreg import real_pairs, register
from jsnreg.real_pairs import joints_of_split, make_real_pairs
from jsnreg.refine import refine_bones
from jsnreg.register import Engine, fit_jsn_px
from roll_study import squeezing

drawn = real_pairs.draw_motions


def kept_fits(engine):
    """register.best_of_starts wrapped so that the last call's inputs and kept fit can be read."""
    last = {}
    orig = register.best_of_starts

    def keep(fixed, moving, regions, starts, soft_slope=None):
        fit, info = orig(fixed, moving, regions, starts, soft_slope)
        last.update(args=(fixed, moving, regions), soft=soft_slope, fit=fit)
        return fit, info
    register.best_of_starts = keep
    return last


if __name__ == "__main__":
    split, amount = sys.argv[1], float(sys.argv[2])
    eps_list = [0.0] + [float(e) for e in sys.argv[3:]]
    if split not in ("train", "val"):
        sys.exit("usage: along_study.py train|val AMOUNT [EPS ...]")
    engine = Engine.load()
    last = kept_fits(engine)
    joints = joints_of_split(split)
    for label, draw in (("as drawn", drawn), (f"across +-{amount:g}", squeezing(amount, False))):
        real_pairs.draw_motions = draw
        for set_name in ("realistic", "hard"):
            for shape in ("square", "wide"):
                rows = []
                for p in make_real_pairs(split, set_name, shape, 60, 2026, joints=joints):
                    r = engine.register_roi(p.fixed, p.moving, p.spacing_mm, upper_mask=p.upper_mask, images=False)
                    row = [r.jsn_px - p.jsn_px, last["fit"].bones[0].motion.scale / p.upper.scale - 1]
                    for eps in eps_list:
                        fit = refine_bones(*last["args"], [b.motion for b in last["fit"].bones], levels=(1, 2),
                                           soft_slope=last["soft"], edge_shares=False, across=True,
                                           along_scale=p.upper.scale * (1 + eps))
                        row.append(fit_jsn_px(fit) - p.jsn_px)
                    rows.append(row)
                e = np.array(rows)
                cells = ", ".join(f"along x(1{eps:+g}) {e[:, k + 2].std(ddof=1):.3f} (max {np.abs(e[:, k + 2]).max():.2f})"
                                  for k, eps in enumerate(eps_list))
                print(f"{label:14s} {set_name:9s} {shape:6s}: shipped SD {e[:, 0].std(ddof=1):.3f} px "
                      f"(max {np.abs(e[:, 0]).max():.2f}), its magnification error SD {100 * e[:, 1].std(ddof=1):.2f} % "
                      f"(mean {100 * e[:, 1].mean():+.2f} %); {cells}", flush=True)
    real_pairs.draw_motions = drawn
