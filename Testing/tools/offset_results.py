"""Per-pair results of the whole method (automatic split) on real pairs with the ROI centre moved along the
finger, and the difference between two such runs (before and after a change to the engine).

    PYTHONPATH=JSNRegistration python Testing/tools/offset_results.py dump SPLIT OUT.json OFFSET_MM [...]
    python Testing/tools/offset_results.py diff BEFORE.json AFTER.json

dump: for each offset, the bench's real pairs of SPLIT (realistic and hard motions, square and wide ROIs, 60
each, seed 2026: the pairs of `jsnreg bench --real --split SPLIT --offset-mm D --pairs 60`), each pair's JSN
error (px), flag, confidence, flag reason and whether a runner-up line was taken. diff: per offset, results
beyond 0.5 px, those unflagged, good results flagged and lines taken, before -> after, and every pair whose
flag or error changed. Needs ../shared/data/real-hands.
"""
import json
import sys

import numpy as np


def dump(split: str, out: str, offsets: list[float]) -> None:
    from jsnreg.bench import real_set_pairs
    from jsnreg.real_pairs import joints_of_split, offset_rows
    from jsnreg.register import Engine

    engine = Engine.load()
    rows = []
    for off in offsets:
        joints = joints_of_split(split, offset_rows(off))
        for set_name in ("realistic", "hard"):
            for shape in ("square", "wide"):
                for k, p in enumerate(real_set_pairs(set_name, shape, split, 60, 2026, joints)):
                    r = engine.register_roi(p.fixed, p.moving, p.spacing_mm, images=False)
                    rows.append({"offset": off, "set": set_name, "shape": shape, "k": k, "image": p.image,
                                 "joint": p.joint, "err": r.jsn_px - p.jsn_px, "flagged": bool(r.flagged),
                                 "conf": float(r.confidence), "reason": r.flag_reason, "taken": "split_taken" in r.details})
    with open(out, "w") as f:
        json.dump({"split": split, "rows": rows}, f)
    print(out, len(rows), "results")


def diff(before: str, after: str) -> None:
    a, b = (json.load(open(f))["rows"] for f in (before, after))
    for off in sorted({r["offset"] for r in a}):
        ra, rb = ([r for r in rows if r["offset"] == off] for rows in (a, b))
        err = [np.array([r["err"] for r in rows]) for rows in (ra, rb)]
        flag = [np.array([r["flagged"] for r in rows]) for rows in (ra, rb)]
        bad = [np.abs(e) > 0.5 for e in err]
        count = lambda f: " -> ".join(str(int(f(k).sum())) for k in (0, 1))  # noqa: E731
        print(f"offset {off:+g} mm, {len(ra)} results: beyond 0.5 px {count(lambda k: bad[k])}, unflagged "
              f"{count(lambda k: bad[k] & ~flag[k])}, good flagged {count(lambda k: ~bad[k] & flag[k])}, lines taken "
              f"{count(lambda k: np.array([r['taken'] for r in (ra, rb)[k]]))}")
        for x, y in zip(ra, rb):
            if x["flagged"] != y["flagged"] or abs(x["err"] - y["err"]) > 0.05:
                print(f"  {x['set']} {x['shape']} {x['k']} {x['image']} {x['joint']}: error {x['err']:+.3f} -> "
                      f"{y['err']:+.3f} px, flagged {x['flagged']} -> {y['flagged']}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["dump"]:
        dump(sys.argv[2], sys.argv[3], [float(v) for v in sys.argv[4:]])
    else:
        diff(sys.argv[2], sys.argv[3])
