"""`python -m jsnreg.detect_train`: the correlation filters of jsnreg.detect_refine, made from the
annotated TRAIN hands only (RSNA train split; val, test and the adult hands stay unseen).

Per joint type, over every traced joint that is annotated: the region around the traced point
(the inference's input) and, as the wanted response, a Gaussian (SIGMA_STEPS) at the annotated
joint; the filter is the closed-form ridge solution in the Fourier domain (MOSSE). The second
pass's filters are learned the same way on the regions where the first pass's filters leave the
training joints (in the direction their finger's moved joints give). Deterministic:
no sampling, no seed. Needs the real hands (../shared/data/real-hands). `--cv`: the 2-fold
cross-validated share on the train hands instead (nothing written)."""

from __future__ import annotations

import json
import sys

import numpy as np

from .detect import _hands, to_work_px
from .detect_bench import load_annotations, scored
from .detect_refine import FILTERS, HALF, R_STEPS, SEARCH, joint_type, one_pass, region, thumbward
from .errors import InputError
from .images import read_radiograph
from .real_hands import ANNOTATIONS, real_hands_dir

SIGMA_STEPS = 1.5  # width of the wanted response peak
RIDGE = 0.1  # regularisation, as a fraction of the mean training power
GENERATED_WEIGHT = 3.0  # the generated hand counts as three real ones (real hands: 2-fold CV 0.77 -> 0.77)
PASSES = 2  # the second in the direction the first pass's joints give (real hands: 2-fold CV 0.77 -> 0.78)


def training_hands(splits=("train",)):
    """(file, work image, hand, truth in work px) of each annotated single-hand image of the splits
    on which the tracing found a hand."""
    folder = real_hands_dir()
    if folder is None:
        raise InputError("the real-hands folder is not there (set JSNREG_REAL_HANDS or place ../shared/data)")
    for rel, entry in load_annotations(ANNOTATIONS).items():
        if entry["split"] not in splits or not (folder / rel).is_file():
            continue
        spacing = float(entry["spacing_mm_nominal"])
        try:
            fine, _, factor, offset, hands = _hands(read_radiograph(folder / rel, spacing_mm=spacing).pixels, spacing)
        except InputError:
            continue
        truth, _ = scored(entry)
        yield rel, fine, hands[0], {n: to_work_px(p, factor, offset) for n, p in truth.items()}


def generated_hands():
    """The follow-up of the generated hand (seed 1; the tests use seed 0) in the same form, so the
    filters also keep the joints of the tests' generated hands in place."""
    from .synthetic import make_hand_pair

    pair = make_hand_pair(1)
    fine, _, factor, offset, hands = _hands(pair.followup, pair.spacing_mm)
    truth = {n: to_work_px(p, factor, offset) for n, p in pair.followup_joints.items()}
    yield "generated", fine, hands[0], truth


def stage(items) -> tuple[dict, dict]:
    """{joint type: spatial filter} and {joint type: number of training joints} from items
    (work image, hand, joints [(name, (x, y), distal)], truth, weight)."""
    num, den, counts = {}, {}, {}
    rows, cols = np.mgrid[-HALF[0]:HALF[0] + 1, -HALF[1]:HALF[1] + 1]
    for fine, hand, joints, truth, weight in items:
        step = hand.radius / R_STEPS
        for name, centre, distal in joints:
            if name not in truth:
                continue
            offset = (truth[name] - centre) / step
            a, c = offset @ distal, offset @ thumbward(distal, hand.side)
            wanted = np.exp(-0.5 * ((rows - a) ** 2 + (cols - c) ** 2) / SIGMA_STEPS ** 2)
            f, g = np.fft.fft2(region(fine, centre, distal, hand.side, step)), np.fft.fft2(wanted)
            t = joint_type(name)
            num[t] = num.get(t, 0) + weight * g * np.conj(f)
            den[t] = den.get(t, 0) + weight * (f * np.conj(f)).real
            counts[t] = counts.get(t, 0) + 1
    return {t: np.fft.ifft2(num[t] / (den[t] + RIDGE * den[t].mean())).real for t in num}, counts


def filters(hands, weights=None) -> tuple[list, dict]:
    """Per pass, {joint type: spatial filter}, each pass's learned where the previous passes leave
    the training joints; and {joint type: number of training joints}. weights: per hand (default 1)."""
    hands = list(hands)
    weights = [1.0] * len(hands) if weights is None else weights
    joints = [[(n, np.asarray(c, float), d) for n, c, d, _ in hand.joints] for _, _, hand, _ in hands]
    made = []
    for _ in range(PASSES):
        spatial, counts = stage([(fine, hand, j, truth, w) for (_, fine, hand, truth), j, w in zip(hands, joints, weights)])
        made.append(spatial)
        spectra = {t: np.fft.fft2(f) for t, f in spatial.items()}
        joints = [one_pass(fine, hand, j, spectra)[2] for (_, fine, hand, _), j in zip(hands, joints)]
    return made, counts


def cross_validated(hands, generated, folds: int = 2) -> tuple[int, int]:
    """(within TOLERANCE_MM and named right, annotated) over the hands, each hand's joints refined by
    filters learned without it: hands sorted by file, fold k = every folds-th from the k-th. Hands the
    tracing refused are not among them (training_hands leaves them out)."""
    from .detect_bench import TOLERANCE_MM
    from .detect_refine import refine

    hands = sorted(hands, key=lambda h: h[0])
    good = total = 0
    for k in range(folds):
        kept = [h for i, h in enumerate(hands) if i % folds != k] + list(generated)
        made, _ = filters(kept, [1.0] * (len(kept) - len(generated)) + [GENERATED_WEIGHT] * len(generated))
        passes = [{t: np.fft.fft2(f) for t, f in p.items()} for p in made]
        for _, fine, hand, truth in hands[k::folds]:
            at = {n: xy for n, xy, _ in refine(fine, hand, passes)}
            total += len(truth)
            good += sum(n in at and np.hypot(*(at[n] - p)) * hand.mm <= TOLERANCE_MM for n, p in truth.items())
    return good, total


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--cv" in argv:  # measure only: the shipped filters are not rewritten
        good, total = cross_validated(training_hands(), list(generated_hands()))
        print(f"RSNA train, 2-fold cross-validation: {good} of {total} joints within 2 mm, named right "
              f"({100.0 * good / total:.1f} %)")
        return 0
    real = list(training_hands())
    made, counts = filters(real + list(generated_hands()), [1.0] * len(real) + [GENERATED_WEIGHT])
    FILTERS.write_text(json.dumps({
        "made_by": "python -m jsnreg.detect_train (RSNA train split of real_hands_joints.json)",
        "r_steps": R_STEPS, "half": list(HALF), "search": list(SEARCH), "sigma_steps": SIGMA_STEPS,
        "ridge": RIDGE, "generated_weight": GENERATED_WEIGHT, "joints": counts,
        "filters": [{k: [[float(f"{x:.4g}") for x in row] for row in v] for k, v in sorted(pass_filters.items())}
                    for pass_filters in made]}) + "\n")
    print(f"wrote {FILTERS}: " + ", ".join(f"{k} from {n} joints" for k, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
