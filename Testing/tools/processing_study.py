"""Study: does the engine hold when the pair was stored or processed otherwise? The real pairs of one split
(val to choose; test only to report) measured as made, both images stored 8-bit, as 12-bit data in a 16-bit
range, JPEG-compressed (quality 90, 75), and the follow-up alone processed otherwise than the baseline:
unsharp masking (its detail below 1, 3 or 8 mm raised by half, 0.7 or 1.0 times) or range compression (its
level above 10 mm pulled half-way to the mean), as another site's or another software version's processing
would leave it. Per variant: the JSN error SD (px), max, beyond 0.5 px, unflagged beyond 0.5 px and good
results flagged, automatic split. Needs ../shared/data/real-hands.

    PYTHONPATH=JSNRegistration python Testing/tools/processing_study.py SPLIT [SET SHAPE] [--pairs N]
"""
import io

import numpy as np
from scipy import ndimage

from jsnreg.real_pairs import ROI_SPACING_MM
from study_pairs import as_made, cell_pairs, summary, variant_errors


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer), float) / 255


def unsharp(image: np.ndarray, radius_mm: float, amount: float) -> np.ndarray:
    detail = image - ndimage.gaussian_filter(image, radius_mm / ROI_SPACING_MM, mode="nearest")
    return np.clip(image + amount * detail, 0, 1)


def compressed(image: np.ndarray, radius_mm: float, amount: float) -> np.ndarray:
    level = ndimage.gaussian_filter(image, radius_mm / ROI_SPACING_MM, mode="nearest")
    return np.clip(image - amount * (level - level.mean()), 0, 1)


def eight_bit(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255) / 255


def twelve_in_sixteen(image: np.ndarray) -> np.ndarray:
    return np.round(image * 4095) / 65535


# name: (what the baseline becomes, what the follow-up becomes)
VARIANTS = {
    "as made": (as_made, as_made),
    "8 bit": (eight_bit, eight_bit),
    "12 bit in 16": (twelve_in_sixteen, twelve_in_sixteen),
    "JPEG 90": (lambda a: jpeg(a, 90), lambda a: jpeg(a, 90)),
    "JPEG 75": (lambda a: jpeg(a, 75), lambda a: jpeg(a, 75)),
    "follow-up unsharp 1 mm x0.5": (as_made, lambda a: unsharp(a, 1, 0.5)),
    "follow-up unsharp 3 mm x0.7": (as_made, lambda a: unsharp(a, 3, 0.7)),
    "follow-up unsharp 8 mm x1.0": (as_made, lambda a: unsharp(a, 8, 1.0)),
    "follow-up range compressed 10 mm x0.5": (as_made, lambda a: compressed(a, 10, 0.5)),
}


def main():
    args, engine, pairs = cell_pairs(__doc__)
    print(f"{args.split} {args.set} {args.shape}: {len(pairs)} pairs")
    for name, (base, follow) in VARIANTS.items():
        print(f"  {name:40s} {summary(*variant_errors(engine, pairs, base, follow))}", flush=True)


if __name__ == "__main__":
    main()
