"""What the studies here share: the whole method (automatic split) on real pairs, against their truth."""
import numpy as np


def automatic_split_errors(engine, pairs) -> tuple[np.ndarray, np.ndarray]:
    """(JSN error px, flagged) of each pair measured as `jsnreg roi` measures it (no mask given)."""
    err, flagged = [], []
    for p in pairs:
        r = engine.register_roi(p.fixed, p.moving, p.spacing_mm, images=False)
        err.append(r.jsn_px - (p.upper.dy_px - p.lower.dy_px))
        flagged.append(r.flagged)
    return np.array(err), np.array(flagged)
