"""Network-alone JSN error on real VAL pairs, per motion set and ROI shape, for one or more weights.

The same pairs and the same call as `jsnreg bench --real` (bench.real_set_pairs, then
Engine.register_roi(refine=False) with the true split), so the numbers match the bench's network row.
Usage: PYTHONPATH=JSNRegistration python Testing/tools/network_alone_val.py [--pairs 60] [--seed 2026] WEIGHTS.pt [WEIGHTS.pt ...]
(never test hands: the split is fixed to val).
"""

import argparse
import json

import numpy as np

from jsnreg.bench import real_set_pairs
from jsnreg.network import Network
from jsnreg.real_pairs import joints_of_split
from jsnreg.register import Engine


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("weights", nargs="+")
    p.add_argument("--pairs", type=int, default=60)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--json")
    args = p.parse_args()
    joints = joints_of_split("val")
    engines = [Engine(Network.load(w)) for w in args.weights]
    out = {}
    for set_name in ("realistic", "hard"):
        for shape in ("square", "wide"):
            pairs = real_set_pairs(set_name, shape, "val", args.pairs, args.seed, joints)
            for w, engine in zip(args.weights, engines):
                err = np.array([engine.register_roi(q.fixed, q.moving, q.spacing_mm, upper_mask=q.upper_mask,
                                                    refine=False, images=False).jsn_px - q.jsn_px for q in pairs])
                row = {"sd": float(err.std(ddof=1)), "max_abs": float(np.abs(err).max()),
                       "over_0.5px": float((np.abs(err) > 0.5).mean()), "mean": float(err.mean())}
                out.setdefault(w, {})[f"{set_name}_{shape}"] = row
                print(f"{set_name:9s} {shape:6s} {w}: SD {row['sd']:.3f} max {row['max_abs']:.2f} "
                      f">0.5 {row['over_0.5px']:.3f} mean {row['mean']:+.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
