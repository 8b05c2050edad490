"""`jsnreg bench --detect`: joint detection against annotated real hands, and on variants made
from them at run time (rotated, mirrored, two hands on one film, a finger removed, the thumb or the
fingers cut by the film's edge, the film inside a collimator's bright margin, its shutter over the thumb,
and, on the adult hands too, the film's tone curve changed, blurred or noisier, as another site's processing
and detector would leave it).

Scoring per image, at the image's nominal spacing (TOLERANCE_MM = 2 mm):
- found: a detection within 2 mm of the annotated joint of the same name;
- misnamed: a detection within 2 mm of an annotated joint of another name;
- misplaced: a detection whose name is annotated but farther than 2 mm from it (and not misnamed);
- invented: a detection of a joint the annotation marks absent (a joint that is not there);
- missed: an annotated joint no detection of its name or position accounts for.
Each detection's confidence is set against whether it was found (right) or misplaced, misnamed or
invented (wrong), per source: AUC, Brier score and the share right per confidence bin.
Rows "<source>, independent" leave out the points the annotations' blind re-check took from the
detector itself (each image's "from_detector" list): only they measure the detector independently.
The real images stay in the shared data folder; nothing made from them is written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import detect_confidence as dc
from . import detect_refine
from .detect import DetectedJoint, detect_joints
from .errors import InputError
from .real_hands import adult_splits, annotation_path, is_adult, real_hands_dir
from .real_hands import annotated_images as load_annotations  # {image: entry} of the annotated hands there

TOLERANCE_MM = 2.0
OUTCOMES = ("found", "misplaced", "misnamed", "invented", "missed")
TYPES = ("IP1", "MCP1", "MCP2-5", "PIP2-5", "DIP2-5")
def joint_type(name: str) -> str:
    """The table's row of a joint: IP1, MCP1, MCP2-5, PIP2-5 or DIP2-5."""
    kind = detect_refine.joint_type(name)
    return kind if kind in ("IP1", "MCP1") else f"{kind}2-5"


def scored(entry: dict) -> tuple[dict, set]:
    """The annotated joints {name: (x, y)} and the names marked absent (not there or not visible)."""
    return {k: np.asarray(v, float) for k, v in entry["joints"].items()}, set(entry.get("absent", []))


def score(detected: list[DetectedJoint], truth: dict, absent: set, tol_px: float) -> list[tuple[str, str]]:
    """(joint name, outcome) for every annotated joint and every detection (see the module doc)."""
    out = [o for o in (outcome(d.name, np.array([d.x, d.y]), truth, absent, tol_px) for d in detected) if o]
    accounted = {n for n, o in out}
    out += [(n, "missed") for n in truth if n not in accounted]
    return out


def judged(detected: list[DetectedJoint], truth: dict, absent: set, tol_px: float) -> list[tuple[float, bool]]:
    """(confidence, right) of every scored detection: right when found (within tol_px, named right)."""
    out = []
    for d in detected:
        o = outcome(d.name, np.array([d.x, d.y]), truth, absent, tol_px)
        if o is not None:
            out.append((d.confidence, o[1] == "found"))
    return out


def outcome(name: str, xy: np.ndarray, truth: dict, absent: set, tol_px: float) -> tuple[str, str] | None:
    """(annotated joint name, outcome) of one detection; None for a detection of a joint the annotation
    neither places nor calls absent (not scored)."""
    near = {n: float(np.hypot(*(xy - p))) for n, p in truth.items()}
    close = [n for n, r in near.items() if r <= tol_px]
    if name in close:
        return name, "found"
    if close:
        return min(close, key=near.get), "misnamed"
    if name in truth:
        return name, "misplaced"
    if name.split("-")[-1] in absent or name in absent:
        return name, "invented"
    return None


def mirrored(pixels: np.ndarray, truth: dict) -> tuple[np.ndarray, dict]:
    """The image flipped left-right: a left hand becomes a right one (names stay)."""
    w = pixels.shape[1]
    return pixels[:, ::-1].copy(), {n: np.array([w - 1 - p[0], p[1]]) for n, p in truth.items()}


def rotated(pixels: np.ndarray, truth: dict, degrees: float) -> tuple[np.ndarray, dict]:
    """The image turned by `degrees` (clockwise on screen) about its centre, on a canvas grown to
    its diagonal so that no finger is cut off; the bottom rows (the forearm) are carried on to the
    canvas edge, as on a film where the arm leaves the image."""
    from scipy import ndimage

    h, w = pixels.shape
    side = int(np.ceil(np.hypot(h, w)))
    pad_y, pad_x = (side - h) // 2, (side - w) // 2
    bg = float(np.percentile(pixels, 1))
    canvas = np.full((side, side), bg, dtype=np.float64)
    canvas[pad_y:pad_y + h, pad_x:pad_x + w] = pixels
    canvas[pad_y + h:, pad_x:pad_x + w] = pixels[-1]
    c = np.array([(side - 1) / 2, (side - 1) / 2])
    t = np.radians(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])  # (x, y), y down: clockwise
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    back = rot.T @ np.stack([xx.ravel() - c[0], yy.ravel() - c[1]])
    out = ndimage.map_coordinates(canvas, [back[1] + c[1], back[0] + c[0]], order=1, mode="nearest")
    shift = np.array([pad_x, pad_y])
    return out.reshape(side, side), {n: rot @ (p + shift - c) + c for n, p in truth.items()}


def two_hands(pixels: np.ndarray, truth: dict, side: str) -> tuple[np.ndarray, dict]:
    """The hand (its `side`, "L" or "R") and its mirror image, the other hand, side by side on one
    film as a PA film shows them: the right hand on the left half."""
    flipped, mtruth = mirrored(pixels, truth)
    hands = {side: (pixels, truth), ("L" if side == "R" else "R"): (flipped, mtruth)}
    w = pixels.shape[1]
    film = np.hstack([hands["R"][0], hands["L"][0]])
    named = {f"R-{n}": p for n, p in hands["R"][1].items()}
    named.update({f"L-{n}": p + np.array([w, 0]) for n, p in hands["L"][1].items()})
    return film, named


def without_finger(pixels: np.ndarray, truth: dict, digit: int) -> tuple[np.ndarray, dict, set]:
    """The finger `digit` (2-5) removed distal to its MCP (set to the background): its PIP and
    DIP must not be reported, the MCP may be."""
    names = [f"PIP{digit}", f"DIP{digit}"]
    mcp = np.asarray(truth[f"MCP{digit}"], float)
    tip_dir = np.asarray(truth[f"PIP{digit}"], float) - mcp
    length = float(np.linalg.norm(tip_dir))
    tip_dir /= length
    h, w = pixels.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    along = (xx - mcp[0]) * tip_dir[0] + (yy - mcp[1]) * tip_dir[1]
    across = -(xx - mcp[0]) * tip_dir[1] + (yy - mcp[1]) * tip_dir[0]
    cut = (along > 0.3 * length) & (np.abs(across) < 0.45 * length)
    out = pixels.copy()
    out[cut] = float(np.percentile(pixels, 1))
    return out, {n: p for n, p in truth.items() if n not in names}, set(names)


def thumb_cut(pixels: np.ndarray, truth: dict, fraction: float = 0.5) -> tuple[np.ndarray, dict, set]:
    """The image cropped beside the thumb, as a film whose edge cuts the thumb: the columns beyond
    fraction of the way from MCP1 to IP1 (across the image) are removed. The joints beyond the
    edge (IP1 at least) must not be reported; the others keep their names."""
    mcp, ip = np.asarray(truth["MCP1"], float), np.asarray(truth["IP1"], float)
    edge = int(round(mcp[0] + fraction * (ip[0] - mcp[0])))
    start = edge if ip[0] < mcp[0] else 0
    out = np.ascontiguousarray(pixels[:, start:] if start else pixels[:, :edge])
    moved = {n: np.asarray(p, float) - np.array([start, 0.0]) for n, p in truth.items()}
    inside = {n: p for n, p in moved.items() if 0 <= p[0] < out.shape[1]}
    return out, inside, set(truth) - set(inside)


def fingers_cut(pixels: np.ndarray, truth: dict, fraction: float = 0.5) -> tuple[np.ndarray, dict, set]:
    """The image cropped above the fingers (fingers up), as a film whose top edge cuts them: the
    rows above fraction of the way from DIP3 to PIP3 are removed. The joints beyond the edge (DIP3
    at least) must not be reported; the others keep their names."""
    edge = int(round(truth["DIP3"][1] + fraction * (truth["PIP3"][1] - truth["DIP3"][1])))
    moved = {n: np.asarray(p, float) - np.array([0.0, edge]) for n, p in truth.items()}
    inside = {n: p for n, p in moved.items() if p[1] >= 0}
    return np.ascontiguousarray(pixels[edge:]), inside, set(truth) - set(inside)


def shuttered(pixels: np.ndarray, truth: dict, spacing_mm: float, margin_mm: float = 12.0,
              thumb_fraction: float | None = None) -> tuple[np.ndarray, dict, set]:
    """The film inside the margin a collimator's shutters leave: no X-rays reached it, so it is flat
    at the film's brightest level (a little noise, a 1 mm penumbra), margin_mm wide on every side.
    With thumb_fraction, a shutter also covers the columns thumb_cut(fraction) removes: the joints
    beyond its edge must not be reported, the others keep their names."""
    pad = int(round(margin_mm / spacing_mm))
    h, w = pixels.shape
    field = np.zeros((h + 2 * pad, w + 2 * pad), bool)
    field[pad:pad + h, pad:pad + w] = True
    moved = {n: np.asarray(p, float) + pad for n, p in truth.items()}
    if thumb_fraction is not None:
        mcp, ip = moved["MCP1"], moved["IP1"]
        edge = int(round(mcp[0] + thumb_fraction * (ip[0] - mcp[0])))
        field[:, edge:] = field[:, edge:] & (ip[0] < mcp[0])
        field[:, :edge] = field[:, :edge] & (ip[0] > mcp[0])
    lo, hi = float(np.min(pixels)), float(np.max(pixels))
    shutter = ndimage.gaussian_filter((~field).astype(np.float64), 0.5 / spacing_mm)
    noise = np.random.default_rng(0).normal(0.0, 0.01 * (hi - lo), field.shape)
    film = np.pad(np.asarray(pixels, np.float64), pad, constant_values=hi)
    out = film * (1 - shutter) + (hi + noise) * shutter
    inside = {n: p for n, p in moved.items() if field[int(round(p[1])), int(round(p[0]))]}
    return np.clip(out, lo, hi).astype(np.float32), inside, set(truth) - set(inside)


# Tone curves of the "tone" variants: the film (bone bright) raised to these powers, darker above 1.
TONE_GAMMAS = (0.8, 1.25, 1.6)
BLUR_MM = 0.3  # the "blurred" variant: Gaussian SD (a softer detector or a larger focal spot)
NOISE_SHARE = 0.02  # the "noisier" variant: white noise SD as a share of the film's range (a lower dose)


def toned(pixels: np.ndarray, gamma: float) -> np.ndarray:
    """The film with its tone curve raised to the power gamma (its range kept): a darker (gamma > 1) or
    lighter processing of the same exposure; the joints stay where they are."""
    top = float(np.max(pixels))
    return (top * (np.clip(pixels, 0, None) / top) ** gamma).astype(np.float32) if top > 0 else pixels


def blurred(pixels: np.ndarray, spacing_mm: float, sd_mm: float = BLUR_MM) -> np.ndarray:
    return ndimage.gaussian_filter(np.asarray(pixels, np.float32), sd_mm / spacing_mm)


def noisier(pixels: np.ndarray, share: float = NOISE_SHARE, seed: int = 0) -> np.ndarray:
    """The film with white noise of SD share x its range added, clipped to its range (seeded)."""
    lo, hi = float(np.min(pixels)), float(np.max(pixels))
    noise = np.random.default_rng(seed).normal(0.0, share * (hi - lo), np.shape(pixels))
    return np.clip(pixels + noise, lo, hi).astype(np.float32)


def detection_splits(annotations: dict) -> dict:
    """{image: split} for detection: RSNA hands by their annotation, adult ones by patient
    (jsnreg.real_hands.adult_splits); a film with its folder's own points is test (nothing was chosen on it)."""
    adult = adult_splits([rel for rel, entry in annotations.items() if is_adult(rel) and not entry.get("from_folder")])
    return {rel: adult.get(rel, entry["split"]) for rel, entry in annotations.items()}


def _images(folder: Path, annotations: dict, splits):
    from .images import read_radiograph

    for rel, split in detection_splits(annotations).items():
        entry = annotations[rel]
        path = folder / rel
        if split not in splits or not path.is_file():
            continue
        source = f"{'adult' if is_adult(rel) else 'rsna'} {split}"
        image = read_radiograph(path, spacing_mm=float(entry["spacing_mm_nominal"]))
        yield rel, source, image.pixels, image.spacing_mm, entry


def run(annotations_path=None, splits=("test", "val"), variants: bool = True, out=None,
        tolerance_mm: float = TOLERANCE_MM) -> dict:
    """Score every annotated image of the given splits (train hands are left out unless asked);
    prints the table, returns {source: {type: {outcome: n}}, "ms_per_hand": ...}."""
    folder = real_hands_dir()
    if folder is None:
        raise InputError("the real-hands folder is not there (set JSNREG_REAL_HANDS or place ../shared/data)")
    annotations = load_annotations(annotations_path)
    counts, times, rows, confidence = {}, [], [], {}

    def add(source, outcomes):
        table = counts.setdefault(source, {t: dict.fromkeys(OUTCOMES, 0) for t in TYPES})
        for name, outcome in outcomes:
            table[joint_type(name)][outcome] += 1

    for rel, source, pixels, spacing, entry in _images(folder, annotations, splits):
        truth, absent = scored(entry)
        tol = tolerance_mm / spacing
        t0 = time.perf_counter()
        try:
            detected, refused = detect_joints(pixels, spacing), ""
        except InputError as exc:
            detected, refused = [], f"refused: {exc}"
        times.append(time.perf_counter() - t0)
        outcomes = score(detected, truth, absent, tol)
        add(source, outcomes)
        confidence.setdefault(source, []).extend(judged(detected, truth, absent, tol))
        taken = set(entry.get("from_detector", []))
        if taken:  # points the blind re-check took from the detector say nothing about it
            add(f"{source}, independent", score(detected, {n: p for n, p in truth.items() if n not in taken},
                                               absent, tol))
        elif not source.startswith("adult"):
            add(f"{source}, independent", outcomes)
        rows.append({"image": rel, "source": source, "variant": "",
                     "wrong": [refused] * bool(refused) + [f"{n}:{o}" for n, o in outcomes if o != "found"]})
        if not variants:
            continue
        kind = source.split()[0]
        made = [(f"tone ^{g:g}, {kind}", toned(pixels, g), truth, set()) for g in TONE_GAMMAS]
        made += [(f"blurred {BLUR_MM:g} mm, {kind}", blurred(pixels, spacing), truth, set()),
                 (f"noisier {100 * NOISE_SHARE:g} %, {kind}", noisier(pixels), truth, set())]
        if kind != "adult":  # the geometric variants on the children's hands, as before
            made += [("mirrored", *mirrored(pixels, truth), set()),
                     ("rotated +30", *rotated(pixels, truth, 30.0), set()),
                     ("rotated -30", *rotated(pixels, truth, -30.0), set())]
            if entry.get("side"):  # the other hand is this one mirrored: which is which needs the side
                made.append(("two hands", *two_hands(pixels, truth, entry["side"]), set()))
            if "MCP3" in truth and "PIP3" in truth:
                made.append(("no finger 3", *without_finger(pixels, truth, 3)))
            made.append(("shuttered", *shuttered(pixels, truth, spacing)))
            if "MCP1" in truth and "IP1" in truth:
                made.append(("thumb cut", *thumb_cut(pixels, truth)))
                made.append(("thumb shuttered", *shuttered(pixels, truth, spacing, thumb_fraction=0.5)))
            if "DIP3" in truth and "PIP3" in truth:
                made.append(("fingers cut", *fingers_cut(pixels, truth)))
        for label, img, vtruth, removed in made:
            try:
                detected, refused = detect_joints(img, spacing), ""
            except InputError as exc:
                detected, refused = [], f"refused: {exc}"
            outcomes = score(detected, vtruth, absent | removed, tol)
            add(f"variants: {label}", outcomes)
            confidence.setdefault(f"variants: {label}", []).extend(judged(detected, vtruth, absent | removed, tol))
            rows.append({"image": rel, "source": "variants", "variant": label,
                         "wrong": [refused] * bool(refused) + [f"{n}:{o}" for n, o in outcomes if o != "found"]})
    if not times:
        raise InputError(f"no annotated hand of the split(s) {', '.join(splits)} in {folder} (annotations: "
                         f"{annotations_path or annotation_path()} and {folder}/adult-annotated/joints.json)")
    ms = 1000 * float(np.median(times))
    print(f"tolerance {tolerance_mm:g} mm at each image's nominal spacing")
    print(format_table(counts))
    print(f"detection time: median {ms:.0f} ms per hand, max {1000 * max(times):.0f} ms "
          f"({len(times)} original images; variants not timed)")
    reliability = {}
    for source, pairs in confidence.items():
        p, y = np.array([c for c, _ in pairs]), np.array([r for _, r in pairs], float)
        print(dc.format_reliability(f"confidence, {source}", p, y))
        reliability[source] = {"joints": len(p), "right": int(y.sum()), "auc": dc.auc(p, y),
                               "brier": float(np.mean((p - y) ** 2)) if len(p) else float("nan"),
                               "bins": dc.reliability(p, y)}
    for r in rows:
        if r["wrong"]:
            print(f"  {r['image']} {r['variant']}: {', '.join(r['wrong'])}")
    result = {"counts": counts, "tolerance_mm": tolerance_mm, "ms_per_hand_median": ms,
              "confidence": reliability, "images": rows}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "detect_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_table(counts: dict) -> str:
    head = f"{'source':26} {'joint':7} " + " ".join(f"{o:>9}" for o in OUTCOMES) + f" {'correct %':>9}"
    lines = [head]
    for source, table in counts.items():
        total = dict.fromkeys(OUTCOMES, 0)
        for t in TYPES:
            c = table[t]
            for o in OUTCOMES:
                total[o] += c[o]
            if sum(c.values()):
                lines.append(_row(source, t, c))
        lines.append(_row(source, "all", total))
    return "\n".join(lines)


def _row(source, t, c) -> str:
    annotated = c["found"] + c["misplaced"] + c["misnamed"] + c["missed"]
    pct = 100.0 * c["found"] / annotated if annotated else float("nan")
    return f"{source:26} {t:7} " + " ".join(f"{c[o]:9d}" for o in OUTCOMES) + f" {pct:9.1f}"
