"""Study: does the engine hold when the ROI pair was resampled before it reached us, as `quantify` cuts
ROIs from a film (cubic splines, turned along the finger) and as another tool may cut them? The real
pairs of one split (val to choose; test only to report) are measured as made, read at a sub-pixel
shift (0.37, 0.21 px) with linear and with cubic splines, and enlarged 2x with cubic splines (a
film of twice the resolution: the engine measures such ROIs on 2 x 2 block means). Per variant: the
JSN error SD (px of the pair as made), max, beyond 0.5 px, unflagged beyond 0.5 px and good results
flagged, automatic split. Most real pairs hold clipped air or bone; a resampled clip rings about its
value, so this measures the clip's detection (jsnreg.refine.clipped) as much as the fit.
Needs ../shared/data/real-hands.

    PYTHONPATH=JSNRegistration python Testing/tools/resampled_study.py SPLIT [SET SHAPE] [--pairs N]
"""
import numpy as np
from scipy import ndimage

from study_pairs import as_made, cell_pairs, summary, variant_errors


def shifted(image: np.ndarray, order: int, dy: float = 0.37, dx: float = 0.21) -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(image.shape[0]) + dy, np.arange(image.shape[1]) + dx, indexing="ij")
    return ndimage.map_coordinates(image, [rows, cols], order=order, mode="nearest")


def enlarged(image: np.ndarray, k: int = 2) -> np.ndarray:
    """k x k pixels per pixel, each block's centre on the pixel's: block means give the image back
    up to the splines' smoothing."""
    rows, cols = ((np.arange(n * k) + 0.5) / k - 0.5 for n in image.shape)
    return ndimage.map_coordinates(image, np.meshgrid(rows, cols, indexing="ij"), order=3, mode="nearest")


VARIANTS = {"as made": (as_made, 1), "shifted, linear": (lambda a: shifted(a, 1), 1),
            "shifted, cubic": (lambda a: shifted(a, 3), 1), "enlarged 2x, cubic": (enlarged, 2)}


def main():
    args, engine, pairs = cell_pairs(__doc__)
    clipped = sum(any(np.mean(a == v) > 0.005 for a in (p.fixed, p.moving) for v in (0.0, 1.0)) for p in pairs)
    print(f"{args.split} {args.set} {args.shape}: {len(pairs)} pairs, {clipped} with a clip")
    for name, (look, k) in VARIANTS.items():
        print(f"  {name:20s} {summary(*variant_errors(engine, pairs, look, look, k))}", flush=True)


if __name__ == "__main__":
    main()
