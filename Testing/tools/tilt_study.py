"""Study: does the engine hold when the joint line is not horizontal in the ROI (an ROI drawn
axis-aligned around a tilted finger, or an axis estimate a few degrees off)? The real pairs of one
split (val to choose; never test) are made from each joint's neighbourhood turned by TILT degrees
about its centre (the split turned with it), so the joint line crosses the ROI at that angle; the
truth stays each bone's motion in the ROI's own frame (JSN = dy upper - dy lower, as the method
defines it). Per tilt: the whole method's JSN error SD, beyond 0.5 px, unflagged beyond 0.5 px and
good results flagged, automatic split, realistic and hard motions, square and wide ROIs.
Needs ../shared/data/real-hands.

    PYTHONPATH=JSNRegistration python Testing/tools/tilt_study.py SPLIT TILT_DEG [TILT_DEG ...]
"""
import dataclasses
import sys

import numpy as np
from scipy import ndimage

from jsnreg.real_pairs import HOOD_PX, joints_of_split, make_real_pairs
from jsnreg.register import Engine
from study_pairs import automatic_split_errors


def tilted(joint, degrees: float):
    """The joint with its neighbourhood and split turned by `degrees` (counter-clockwise on screen)."""
    if degrees == 0:
        return joint
    hood = ndimage.rotate(joint.hood, degrees, reshape=False, order=3, mode="nearest")
    c = (HOOD_PX - 1) / 2.0
    t = np.radians(degrees)
    x = np.arange(HOOD_PX) - c
    y = joint.boundary_rows - 0.5 - c  # the boundary's row-edge coordinate -> pixel-centre frame
    # ndimage.rotate turns the array's content counter-clockwise on screen (y down): a point (x, y) goes to
    xr, yr = np.cos(t) * x + np.sin(t) * y, -np.sin(t) * x + np.cos(t) * y
    order = np.argsort(xr)
    rows = np.interp(x, xr[order], yr[order]) + c + 0.5
    return dataclasses.replace(joint, hood=np.clip(hood, 0.0, 1.0).astype(np.float32), boundary_rows=rows)


if __name__ == "__main__":
    split, tilts = sys.argv[1], [float(v) for v in sys.argv[2:]]
    engine = Engine.load()
    joints = joints_of_split(split)
    for deg in tilts:
        turned = [tilted(j, deg) for j in joints]
        cells = [automatic_split_errors(engine, make_real_pairs(split, set_name, shape, 60, 2026, joints=turned))
                 for set_name in ("realistic", "hard") for shape in ("square", "wide")]
        err, flagged = (np.concatenate(part) for part in zip(*cells))
        bad = np.abs(err) > 0.5
        print(f"tilt {deg:+5.1f} deg: n {len(err)}, SD {err.std():.3f} px (within 0.5 px: {err[~bad].std():.3f}), "
              f"beyond 0.5 px {bad.sum()}, unflagged beyond {(bad & ~flagged).sum()}, "
              f"good flagged {(~bad & flagged).mean():.1%}", flush=True)
