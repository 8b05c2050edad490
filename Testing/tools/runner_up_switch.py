"""Study behind measure.line_taken: would the automatic split do better by taking a runner-up joint
line's fit whenever the band between that line and the split is explained better by the other bone's
motion? (Shipped: ratio 1.0, JSN change > 0.4 px.)

For real pairs of one split (val to choose; never test), ROI centres OFFSET mm along the finger, 60 pairs
per set and shape, it registers each pair once and then reads, per runner-up line, its fit's JSN and
its band residuals (the engine's details: start_search.split_alternatives; these ROIs are measured on
their own grid, so those JSNs are in ROI px). It prints, per band ratio
r and least JSN change m, what taking the line with the lowest band_other / band_own below r (of those
whose fit moves the JSN by more than m px) would do: results beyond 0.5 px before -> after, pairs
switched, fixed and broken, and the RMS error of the results within 0.5 px. Needs
../shared/data/real-hands.

    PYTHONPATH=JSNRegistration python Testing/tools/runner_up_switch.py SPLIT OFFSET_MM [OFFSET_MM ...]
"""
import sys

import numpy as np

from jsnreg.bench import real_set_pairs
from jsnreg.real_pairs import joints_of_split, offset_rows
from jsnreg.register import Engine

RATIOS = (0.9, 1.0, 1.1)
MOVES_PX = (0.0, 0.4)  # 0.4: measure.SPLIT_BAND_PX, the band rule's least JSN change


def errors(engine, split: str, offset_mm: float, n: int = 60, seed: int = 2026) -> list:
    """(error px of the split's own fit, [(runner-up fit's error px, band_own, band_other)]) per pair."""
    joints = joints_of_split(split, offset_rows(offset_mm))
    out = []
    for set_name in ("realistic", "hard"):
        for shape in ("square", "wide"):
            for p in real_set_pairs(set_name, shape, split, n, seed, joints):
                r = engine.register_roi(p.fixed, p.moving, p.spacing_mm, images=False)
                truth = p.upper.dy_px - p.lower.dy_px
                alts = [(a["jsn_px"] - truth, a["band_own"], a["band_other"])
                        for a in r.details["start_search"].get("split_alternatives", []) if a["jsn_px"] is not None]
                kept = r.details.get("split_taken", {}).get("kept_jsn_px", r.jsn_px)  # the split's own fit
                out.append((kept - truth, alts))
    return out


def switched(rows: list, ratio: float, move_px: float) -> dict:
    before = np.array([e for e, _ in rows])
    after = before.copy()
    for k, (kept, alts) in enumerate(rows):
        better = [(other / own, e) for e, own, other in alts
                  if np.isfinite(own) and other < ratio * own and abs(e - kept) > move_px]
        if better:
            after[k] = min(better)[1]
    good0, good1 = np.abs(before) <= 0.5, np.abs(after) <= 0.5
    return {"beyond": (int((~good0).sum()), int((~good1).sum())), "switched": int((after != before).sum()),
            "fixed": int((~good0 & good1).sum()), "broke": int((good0 & ~good1).sum()),
            "rms_good": (float(np.sqrt(np.mean(before[good0] ** 2))), float(np.sqrt(np.mean(after[good1] ** 2))))}


if __name__ == "__main__":
    split, offsets = sys.argv[1], [float(v) for v in sys.argv[2:]]
    engine = Engine.load()
    for offset in offsets:
        rows = errors(engine, split, offset)
        for ratio in RATIOS:
            for move in MOVES_PX:
                s = switched(rows, ratio, move)
                print(f"{split} {offset:+.0f} mm, ratio {ratio}, JSN change > {move} px: {len(rows)} results, beyond 0.5 px {s['beyond'][0]} -> "
                      f"{s['beyond'][1]}; switched {s['switched']}, fixed {s['fixed']}, broke {s['broke']}; RMS "
                      f"within 0.5 px {s['rms_good'][0]:.4f} -> {s['rms_good'][1]:.4f}")
