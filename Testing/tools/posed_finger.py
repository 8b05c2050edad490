"""Study: a finger posed otherwise at follow-up (spread or deviated): on each annotated real hand of a split,
the index finger distal of MCP2 (a band 6.5 mm to either side of its MCP2-DIP2 axis) turned about MCP2 by
each TURN_DEG, its old place filled with the film's background. Where does quantify place MCP2, PIP2 and
DIP2 in that follow-up (mm from where the turn put them), and what does it measure (true JSN 0)? The band's
straight sides cut the finger's soft tissue, so a poorer fit there is this study's, not the finger's.

    PYTHONPATH=JSNRegistration python Testing/tools/posed_finger.py SPLIT TURN_DEG [TURN_DEG ...]
"""
import sys

import numpy as np

from jsnreg.bench_hand import turned_finger
from jsnreg.detect_bench import load_annotations
from jsnreg.images import Radiograph, read_radiograph
from jsnreg.joints import JointSpec
from jsnreg.quantify import Settings, quantify
from jsnreg.real_hands import ANNOTATIONS, real_hands_dir
from jsnreg.register import Engine

JOINTS = ("MCP2", "PIP2", "DIP2")


if __name__ == "__main__":
    split, turns = sys.argv[1], [float(v) for v in sys.argv[2:]]
    engine, folder = Engine.load(), real_hands_dir()
    for deg in turns:
        off = {name: [] for name in JOINTS}
        bad = 0
        for rel, entry in load_annotations(ANNOTATIONS).items():
            if entry["split"] != split or not (folder / rel).is_file() or not set(JOINTS) <= set(entry["joints"]):
                continue
            base = read_radiograph(folder / rel, spacing_mm=float(entry["spacing_mm_nominal"]))
            at = {k: np.asarray(v, float) for k, v in entry["joints"].items()}
            follow = turned_finger(base.pixels, at["MCP2"], at["DIP2"], deg, base.spacing_mm)
            a = np.radians(deg)
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            joints = [JointSpec(k, *at[k], source="manual") for k in JOINTS]
            for r in quantify(base, Radiograph(follow, base.spacing_mm, {}), joints, Settings(), engine):
                truth = rot @ (at[r.name] - at["MCP2"]) + at["MCP2"]
                off[r.name].append(np.hypot(*(np.array(r.position["followup_xy"]) - truth)) * base.spacing_mm)
                bad += abs(r.jsn_mm / base.spacing_mm) > 0.5 and not r.flagged
        print(f"turn {deg:+.0f} deg, {split}: " + ", ".join(
            f"{k} within 1 mm {np.mean(np.array(v) <= 1.0):.0%} (median {np.median(v):.2f} mm, max {np.max(v):.1f})"
            for k, v in off.items()) + f"; unflagged beyond 0.5 px: {bad}", flush=True)
