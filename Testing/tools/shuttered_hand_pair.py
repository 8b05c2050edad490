"""Study: quantify on the generated hand pair as made and with collimator shutters that differ between the
visits (a bright, flat margin at the top, left and right of each film). Prints each case's largest JSN error
(mm) and flag count.

    PYTHONPATH=JSNRegistration python Testing/tools/shuttered_hand_pair.py
"""
import numpy as np
from scipy import ndimage

from jsnreg.images import Radiograph
from jsnreg.joints import JointSpec
from jsnreg.quantify import quantify
from jsnreg.synthetic import make_hand_pair


def shutter(image: np.ndarray, spacing_mm: float, top_mm: float, left_mm: float, right_mm: float,
            seed: int) -> np.ndarray:
    """The film with shutters: unexposed (1.0, 1 % noise) beyond a 0.5 mm penumbra."""
    h, w = image.shape
    m = np.zeros((h, w))
    m[:int(top_mm / spacing_mm)] = 1
    m[:, :int(left_mm / spacing_mm)] = 1
    m[:, w - int(right_mm / spacing_mm):] = 1
    m = ndimage.gaussian_filter(m, 0.5 / spacing_mm)
    noise = np.random.default_rng(seed).normal(0, 0.01, image.shape)
    return np.clip(image * (1 - m) + (1.0 + noise) * m, 0, 1).astype(np.float32)


def main() -> None:
    pair = make_hand_pair(0)
    s = pair.spacing_mm
    joints = [JointSpec(n, float(x), float(y)) for n, (x, y) in pair.joints.items()]
    cases = {"as made": (pair.baseline, pair.followup),
             "shutters": (shutter(pair.baseline, s, 8, 10, 6, 1), shutter(pair.followup, s, 3, 4, 14, 2))}
    for label, (baseline, followup) in cases.items():
        results = quantify(Radiograph(baseline, s), Radiograph(followup, s), joints)
        errors = [r.jsn_mm - pair.truth_jsn_mm[r.name] for r in results]
        print(f"{label}: {len(errors)} joints, max |JSN error| {np.max(np.abs(errors)):.4f} mm, "
              f"{sum(r.flagged for r in results)} flagged")


if __name__ == "__main__":
    main()
