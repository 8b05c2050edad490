"""What the studies here share: the whole method (automatic split) on real pairs, against their truth."""
import numpy as np


def automatic_split_errors(engine, pairs) -> tuple[np.ndarray, np.ndarray]:
    """(JSN error px, flagged) of each pair measured as `jsnreg roi` measures it (no mask given)."""
    return variant_errors(engine, pairs, as_made, as_made)


def as_made(image: np.ndarray) -> np.ndarray:
    """The image unchanged: a study's look for the pair as made."""
    return image


def cell_pairs(doc: str):
    """(args, engine, pairs) of a study run as `NAME.py SPLIT [SET SHAPE] [--pairs N]`: that cell's real pairs
    (seed 2026, as `jsnreg bench --real`)."""
    import argparse

    from jsnreg.real_pairs import make_real_pairs
    from jsnreg.register import Engine

    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("split")
    ap.add_argument("set", nargs="?", default="realistic")
    ap.add_argument("shape", nargs="?", default="square")
    ap.add_argument("--pairs", type=int, default=60)
    args = ap.parse_args()
    return args, Engine.load(), make_real_pairs(args.split, args.set, args.shape, args.pairs, 2026)


def variant_errors(engine, pairs, fixed_look, moving_look, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(JSN error px of the pairs as made, flagged) with the images changed by the looks, automatic split; k:
    how many times finer the looks made the pixels."""
    err, flagged = [], []
    for p in pairs:
        r = engine.register_roi(fixed_look(p.fixed), moving_look(p.moving), p.spacing_mm / k, images=False)
        err.append(r.jsn_px / k - p.jsn_px)
        flagged.append(r.flagged)
    return np.array(err), np.array(flagged)


def summary(err: np.ndarray, flagged: np.ndarray) -> str:
    bad = np.abs(err) > 0.5
    return (f"SD {err.std():.3f} px, max {np.abs(err).max():.2f}, > 0.5 px {bad.sum()}, "
            f"unflagged {(bad & ~flagged).sum()}, good flagged {(flagged & ~bad).sum()} of {(~bad).sum()}")
