"""Joint ROI pairs with KNOWN truth made from REAL radiographs (benchmark and training data).

Each annotated joint of a real hand radiograph (`../shared/data/real-hands/`, centres from the
annotation file) is cut along its finger's axis (rois.estimate_axis_angle, distal side up) as a
HOOD_PX square "neighbourhood" on a grid of ROI_SPACING_MM (nominal: the files carry no spacing),
and split into its upper and lower bone (split.split_rows on the band the ROI covers).

A follow-up is composed as a projection would be. Intensity I is turned into a pseudo-attenuation
mu = -log(1 - K I); per column the joint-space level g (mu at the split) is the soft tissue under
both bones, so mu = B + U + L with B = min(mu, g) (soft tissue, air) and the bone excess mu - B cut
by the split into the upper (U) and lower (L) bone layers. The follow-up is
mu' = B(C^-1 q) + U(T_u^-1 q) + L(T_l^-1 q): C the finger's common repositioning, T_b = own_b . C
each bone's motion. A bone moving into the gap stays visible and adds over the other bone; a gap
that opens shows g (joint-space intensity), never a ghost. Both visits then get their own exposure
and processing curve, blur and noise, and are clipped to [0, 1] (clipped air and bright bone).
The follow-up ROI is cut from the warped neighbourhood, so its edges carry real content.

Truth per pair, in the conventions of method.md: each bone's BoneMotion (fixed ROI -> moving ROI,
about the ROI centre, which is the annotated joint centre), jsn_px = dy_upper - dy_lower.

ROI shapes (rows x columns): "square" 128 x 128 px (22 mm, as the published sample: 127 px at
0.175 mm/px) and "wide" 80 x 160 px: 2:1 with the long side ACROSS the finger, because the joint
space runs horizontally in an axis-aligned ROI, so the wide side covers the whole joint line and
the soft tissue beside it while 40 px (6.9 mm) of each bone end stay above and below.

Motion sets: "realistic" (as between real visits): common magnification +-3 %, rotation +-4 deg,
shift +-6 px; each bone's own rotation +-2 deg about the moved joint centre, shift +-1.5 px along
the (moved) finger axis and +-1 px across; true JSN within +-3 px. "hard": each bone's own motion
+-4 deg, +-4 px along and across.

Split by patient (the rule in real_hands.py): the annotation file's "split" per image; the adult images are test.
Neighbourhoods are computed once per image and cached under the temp folder (never the repository).

Off-centre ROIs (a click or a detection a little off the joint): `offset_rows` cuts each neighbourhood
about a centre moved that many rows along the finger (+ distal), the joint then below the middle; the
split (and so the truth) is the centred neighbourhood's, moved with it, so an off-centre joint has the
same truth as a centred one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from .real_hands import FINGER_JOINTS as JOINT_NAMES
from .real_hands import adult_patient, annotated_images, is_adult, real_hands_folder
from .synthetic import JointPair
from .transforms import BoneMotion, from_matrix, matrix, roi_centre

ROI_MM = 22.0
SHAPES = {"square": (128, 128), "wide": (80, 160)}  # (rows, cols)
ROI_SPACING_MM = ROI_MM / SHAPES["square"][0]  # 0.171875 mm/px, nominal
HOOD_PX = 224  # covers every ROI point's pre-image under the largest motions (half-diagonal 91 px + 14)
AXIS_RADIUS_MM = 8.0
BAND_ROWS = SHAPES["square"][0]  # the split is found on the rows a square ROI covers
K_ATTEN = 0.95  # I = (1 - exp(-mu)) / K: I = 1 is mu = 3, so overlapping bones can exceed the range
MOTION_SETS = {
    # own motion per bone: rotation (deg), shift along the axis (px), shift across (px)
    "realistic": dict(rot_deg=2.0, along_px=1.5, across_px=1.0),
    "hard": dict(rot_deg=4.0, along_px=4.0, across_px=4.0),
}
COMMON = dict(magnification=0.03, rot_deg=4.0, shift_px=6.0)  # the finger repositioned
CACHE_VERSION = 2
MAX_OFFSET_MM = 4.0  # a wide ROI then keeps 17 of its 80 rows below the joint


def available() -> bool:
    """Real images and some annotation are present."""
    return real_hands_folder().is_dir() and bool(annotated_images())


def offset_rows(offset_mm: float) -> int:
    """Whole neighbourhood rows of an ROI centre moved `offset_mm` along the finger (+ distal), or
    InputError beyond MAX_OFFSET_MM."""
    from .errors import InputError

    if not abs(offset_mm) <= MAX_OFFSET_MM:
        raise InputError(f"ROI offset {offset_mm} mm: it must be within +-{MAX_OFFSET_MM:g} mm of the joint")
    return int(round(offset_mm / ROI_SPACING_MM))


def joints_of_split(split: str, offset_rows: int = 0) -> list:
    """The annotated real joints of one split, or InputError saying what is missing."""
    from .errors import InputError

    if not available():
        raise InputError("no real hand radiographs or annotations found: set JSNREG_REAL_HANDS "
                         "(and JSNREG_REAL_JOINTS) or run from a checkout beside ../shared/data")
    joints = load_joints(split, offset_rows=offset_rows)
    if not joints:
        raise InputError(f"no annotated real joints in split {split!r}")
    return joints


def patient_of(image_key: str) -> str:
    """Patient id: an RSNA file is one child; adult test_imgN_L / _R are one patient."""
    return f"adult-{adult_patient(image_key)}" if is_adult(image_key) else Path(image_key).stem


@dataclass
class RealJoint:
    """One real joint, cut along its finger's axis: the neighbourhood and its split."""

    image: str  # path relative to the real-hands folder
    name: str
    split: str
    hood: np.ndarray  # (HOOD_PX, HOOD_PX) float32 in [0, 1], distal side up, ROI_SPACING_MM grid
    boundary_rows: np.ndarray  # (HOOD_PX,) split row per column: rows above it are the upper bone
    axis_rad: float
    source_spacing_mm: float

    @property
    def kind(self) -> str:
        return self.name.rstrip("0123456789")


def _cut_hood(image: np.ndarray, centre_xy, angle_rad: float, step_px: float) -> np.ndarray:
    """HOOD_PX square along the axis, step_px source pixels per hood pixel, centre on centre_xy."""
    from .rois import _sample_local

    half = (HOOD_PX - 1) / 2.0
    v, u = (np.mgrid[0:HOOD_PX, 0:HOOD_PX].astype(np.float64) - half) * step_px
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    x = centre_xy[0] + c * u - s * v
    y = centre_xy[1] + s * u + c * v
    return np.clip(_sample_local(image, x, y, order=3), 0.0, 1.0).astype(np.float32)


def _hood_split(hood: np.ndarray) -> np.ndarray:
    from .split import split_rows

    top = (HOOD_PX - BAND_ROWS) // 2
    # The pull to the middle per half of the band's height, as the pairs were first built with: the
    # truth of every real pair (and the network's real training data) rests on this split.
    return split_rows(hood[top:top + BAND_ROWS], pull_half_px=BAND_ROWS / 2.0) + top


# Per joint, the annotated joints (proximal, distal) whose line is its finger's axis there.
AXIS_NEIGHBOURS = {"MCP1": ("MCP1", "IP1"), "IP1": ("MCP1", "IP1")}
for _d in "2345":
    AXIS_NEIGHBOURS.update({f"MCP{_d}": (f"MCP{_d}", f"PIP{_d}"), f"PIP{_d}": (f"MCP{_d}", f"PIP{_d}"),
                            f"DIP{_d}": (f"PIP{_d}", f"DIP{_d}")})


def axis_from_neighbours(points: dict, name: str, absent=()) -> float | None:
    """Finger axis angle (as rois.estimate_axis_angle: distal direction (sin t, -cos t)) from the
    line to the neighbouring annotated joint of the same finger; None when it is not annotated.
    (The image-based estimate is unreliable between the metacarpal heads.)"""
    pair = AXIS_NEIGHBOURS.get(name)
    if pair is None or any(p not in points or p in absent for p in pair):
        return None
    (x0, y0), (x1, y1) = (points[p] for p in pair)
    return float(np.arctan2(x1 - x0, -(y1 - y0)))


def _image_joints(key: str, entry: dict, offset_rows: int = 0) -> list[RealJoint]:
    from .images import read_radiograph
    from .rois import estimate_axis_angle

    spacing = float(entry["spacing_mm_nominal"])
    pixels = read_radiograph(real_hands_folder() / key, spacing_mm=spacing).pixels.astype(np.float64)
    step = ROI_SPACING_MM / spacing
    if step > 1:  # anti-aliasing before a coarser grid
        pixels = ndimage.gaussian_filter(pixels, 0.45 * np.sqrt(step ** 2 - 1))
    absent = set(entry.get("absent", []))
    out = []
    for name in JOINT_NAMES:
        if name not in entry["joints"] or name in absent:
            continue
        xy = tuple(float(v) for v in entry["joints"][name])
        angle = axis_from_neighbours(entry["joints"], name, absent)
        if angle is None:
            angle = estimate_axis_angle(pixels, xy, AXIS_RADIUS_MM / spacing)
        hood = _cut_hood(pixels, xy, angle, step)
        rows = _hood_split(hood)
        if offset_rows:  # the centre moved distal (up: (sin, -cos)) on the hood's own grid; the split follows
            d = offset_rows * step
            hood = _cut_hood(pixels, (xy[0] + np.sin(angle) * d, xy[1] - np.cos(angle) * d), angle, step)
            rows = rows + offset_rows
        out.append(RealJoint(key, name, entry["split"], hood, rows, angle, spacing))
    return out


def _cache_file(key: str, entry: dict, offset_rows: int = 0) -> Path:
    path = real_hands_folder() / key
    st = path.stat()
    ident = [CACHE_VERSION, key, st.st_size, int(st.st_mtime), entry, HOOD_PX, ROI_SPACING_MM]
    ident = json.dumps(ident + [offset_rows] if offset_rows else ident, sort_keys=True)
    name = hashlib.sha1(ident.encode()).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / "jsnreg-real-cache" / f"{name}.npz"


def image_joints(key: str, entry: dict, offset_rows: int = 0) -> list[RealJoint]:
    """The joints of one image (ROI centres `offset_rows` distal), from the cache when it holds them."""
    cache = _cache_file(key, entry, offset_rows)
    if cache.is_file():
        d = np.load(cache, allow_pickle=False)
        names = [str(n) for n in d["names"]]
        return [RealJoint(key, n, entry["split"], d["hoods"][i], d["rows"][i], float(d["angles"][i]),
                          float(entry["spacing_mm_nominal"])) for i, n in enumerate(names)]
    joints = _image_joints(key, entry, offset_rows)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, names=np.array([j.name for j in joints]), hoods=np.stack([j.hood for j in joints]),
             rows=np.stack([j.boundary_rows for j in joints]), angles=np.array([j.axis_rad for j in joints]))
    os.replace(tmp, cache)
    return joints


def load_joints(splits=("train", "val", "test"), workers: int = 1, offset_rows: int = 0) -> list[RealJoint]:
    """All annotated real joints of the images in `splits` (sorted by image, then joint), their
    neighbourhoods centred `offset_rows` distal of the joint."""
    if isinstance(splits, str):
        splits = (splits,)
    ann = annotated_images()  # all adult images are test here
    keys = sorted(k for k, e in ann.items() if e["split"] in splits and (real_hands_folder() / k).is_file())
    if workers > 1 and len(keys) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(image_joints, keys, [ann[k] for k in keys], [offset_rows] * len(keys)))
    else:
        parts = [image_joints(k, ann[k], offset_rows) for k in keys]
    return [j for part in parts for j in part]


@dataclass
class RealJointPair(JointPair):
    """A pair made from a real joint: JointPair's fields (fixed, moving, upper_mask = the split the
    layers were cut by, upper, lower truth, spacing_mm nominal, kind, noise_sigma added to the
    fixed) plus where it came from."""

    image: str = ""
    joint: str = ""
    split: str = ""
    motion_set: str = ""
    shape_name: str = ""


@dataclass(frozen=True)
class Layers:
    """Spline coefficients of the soft-tissue, upper-bone and lower-bone attenuation layers."""

    soft: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    upper_mask: np.ndarray  # hood grid, bool


def _attenuation(intensity: np.ndarray) -> np.ndarray:
    return -np.log1p(-K_ATTEN * np.clip(intensity, 0.0, 1.0))


def _intensity(mu: np.ndarray) -> np.ndarray:
    return -np.expm1(-mu) / K_ATTEN


def layers(hood: np.ndarray, boundary_rows: np.ndarray) -> Layers:
    """Decompose a neighbourhood into soft tissue + upper bone + lower bone attenuation."""
    mu = _attenuation(hood.astype(np.float64))
    rows = np.arange(hood.shape[0])[:, None]
    upper = rows < boundary_rows[None, :]
    # Joint-space level per column: the lowest attenuation within 3 px of the split, smoothed
    # across columns (the soft tissue under both bones varies slowly across the finger).
    near = np.abs(rows + 0.5 - boundary_rows[None, :]) <= 3.0
    gap = np.where(near, mu, np.inf).min(axis=0)
    gap = ndimage.gaussian_filter1d(ndimage.median_filter(gap, 9, mode="nearest"), 3.0, mode="nearest")
    soft = np.minimum(mu, gap[None, :])
    excess = mu - soft
    coef = lambda a: ndimage.spline_filter(a, order=3)  # noqa: E731
    return Layers(coef(soft), coef(np.where(upper, excess, 0.0)), coef(np.where(upper, 0.0, excess)), upper)


def _translation(d_xy) -> np.ndarray:
    m = np.eye(3)
    m[:2, 2] = d_xy
    return m


def _rotation_about(theta_rad: float, point_xy, scale: float = 1.0) -> np.ndarray:
    return matrix(BoneMotion(scale, theta_rad, 0.0, 0.0), tuple(point_xy))


def draw_motions(rng: np.random.Generator, shape: tuple[int, int], motion_set: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(common, upper, lower) 3x3 matrices, fixed ROI px -> moving ROI px."""
    own = MOTION_SETS[motion_set]
    centre = np.array(roi_centre(shape))
    common = (_translation(rng.uniform(-COMMON["shift_px"], COMMON["shift_px"], 2))
              @ _rotation_about(np.radians(rng.uniform(-COMMON["rot_deg"], COMMON["rot_deg"])), centre,
                                1.0 + rng.uniform(-COMMON["magnification"], COMMON["magnification"])))
    moved_centre = common[:2, :2] @ centre + common[:2, 2]
    along = common[:2, :2] @ np.array([0.0, -1.0])
    along /= np.linalg.norm(along)
    across = np.array([-along[1], along[0]])
    bones = []
    for _ in range(2):
        shift = (along * rng.uniform(-own["along_px"], own["along_px"])
                 + across * rng.uniform(-own["across_px"], own["across_px"]))
        bones.append(_translation(shift) @ _rotation_about(np.radians(rng.uniform(-own["rot_deg"], own["rot_deg"])),
                                                           moved_centre) @ common)
    return common, bones[0], bones[1]


def compose(lay: Layers, shape: tuple[int, int], common: np.ndarray, upper: np.ndarray,
            lower: np.ndarray) -> np.ndarray:
    """Follow-up intensity on an ROI of `shape` (unclipped, no look change): each layer sampled at
    the pre-image of the ROI pixel under its own motion (matrices: fixed ROI px -> moving ROI px)."""
    rows, cols = shape
    offset = (np.array([HOOD_PX, HOOD_PX]) - np.array([cols, rows])) / 2.0  # ROI px -> hood px (x, y)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    q = np.stack([x.ravel(), y.ravel(), np.ones(x.size)])
    mu = np.zeros(x.size)
    for coef, m in ((lay.soft, common), (lay.upper, upper), (lay.lower, lower)):
        p = np.linalg.inv(m) @ q
        mu += ndimage.map_coordinates(coef, [p[1] + offset[1], p[0] + offset[0]], order=3,
                                      prefilter=False, mode="nearest")
    return _intensity(mu).reshape(shape)


def crop(hood_like: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The ROI of `shape` at the neighbourhood's centre (whole pixels: both sizes are even)."""
    r0, c0 = (HOOD_PX - shape[0]) // 2, (HOOD_PX - shape[1]) // 2
    return hood_like[r0:r0 + shape[0], c0:c0 + shape[1]]


def look(rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, float]:
    """One visit's exposure and processing: blur, tone curve (gain, gamma, offset; now and then
    strong enough to clip air or bright bone), signal-dependent noise, clipped to [0, 1].
    Returns the image and the noise SD at intensity 0.5."""
    out = ndimage.gaussian_filter(image, rng.uniform(0.0, 0.8))
    gamma = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
    gain, offset = rng.uniform(0.85, 1.15), rng.uniform(-0.05, 0.04)
    if rng.random() < 0.3:
        gain, offset = (rng.uniform(1.15, 1.35), rng.uniform(-0.05, 0.0)) if rng.random() < 0.5 \
            else (gain, rng.uniform(-0.15, -0.05))
    out = gain * np.clip(out, 0.0, 1.0) ** gamma + offset
    sigma = float(np.exp(rng.uniform(np.log(0.003), np.log(0.02))))
    out = out + sigma * (0.75 + 0.5 * np.clip(out, 0, 1)) * rng.standard_normal(out.shape)
    return np.clip(out, 0.0, 1.0), sigma


def make_pairs(joint: RealJoint, rng: np.random.Generator, n: int, motion_set: str = "realistic",
               shape_name="square", look_change: bool = True, flips: bool = True) -> list[RealJointPair]:
    """n pairs from one real joint (each its own motions, look and orientation).

    shape_name: "square", "wide" or (rows, cols), both even, half-diagonal at most 92 px.

    flips: mirror the neighbourhood left-right and/or top-bottom at random (a left hand, fingers
    pointing down as in the published sample); the split and the truth follow exactly.
    """
    if motion_set not in MOTION_SETS:
        raise ValueError(f"motion set must be one of {sorted(MOTION_SETS)}, got {motion_set!r}")
    if isinstance(shape_name, tuple):
        shape = tuple(int(v) for v in shape_name)
        if any(v % 2 for v in shape) or np.hypot(*shape) > 2 * 92:
            raise ValueError(f"ROI shape must be even and within the neighbourhood's margin, got {shape}")
        shape_name = f"{shape[0]}x{shape[1]}"
    elif shape_name in SHAPES:
        shape = SHAPES[shape_name]
    else:
        raise ValueError(f"ROI shape must be one of {sorted(SHAPES)}, got {shape_name!r}")
    variants = {}
    out = []
    for _ in range(n):
        lr, ud = (bool(rng.random() < 0.5), bool(rng.random() < 0.5)) if flips else (False, False)
        if (lr, ud) not in variants:
            hood, rows = joint.hood, joint.boundary_rows
            if lr:
                hood, rows = hood[:, ::-1], rows[::-1]
            if ud:  # the lower bone becomes the upper: the boundary seen from the other side
                hood, rows = hood[::-1], np.floor(HOOD_PX - 1 - rows) + 1
            variants[(lr, ud)] = (np.ascontiguousarray(hood), layers(hood, rows))
        hood, lay = variants[(lr, ud)]
        common, upper, lower = draw_motions(rng, shape, motion_set)
        fixed = crop(hood, shape).astype(np.float64)
        moving = compose(lay, shape, common, upper, lower)
        sigma = 0.0
        if look_change:
            fixed, sigma = look(rng, fixed)
            moving, _ = look(rng, moving)
        else:
            moving = np.clip(moving, 0.0, 1.0)
        centre = roi_centre(shape)
        out.append(RealJointPair(fixed.astype(np.float32), moving.astype(np.float32),
                                 crop(lay.upper_mask, shape).copy(), from_matrix(upper, centre),
                                 from_matrix(lower, centre), ROI_SPACING_MM, joint.kind, sigma,
                                 joint.image, joint.name, joint.split, motion_set, shape_name))
    return out


def make_real_pairs(split: str = "test", motion_set: str = "realistic", shape_name: str = "square",
                    n: int = 200, seed: int = 0, joints: list[RealJoint] | None = None,
                    look_change: bool = True) -> list[RealJointPair]:
    """n pairs from the real joints of one split, spread evenly over the joints (seeded: the same
    arguments give the same pairs)."""
    if joints is None:
        joints = load_joints(split)
    joints = [j for j in joints if j.split == split]
    if not joints:
        raise ValueError(f"no annotated real joints in split {split!r} under {real_hands_folder()}")
    tag = int(hashlib.sha1(f"{split}/{motion_set}/{shape_name}".encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng([seed, tag])
    order = rng.permutation(len(joints))
    counts = np.bincount(np.arange(n) % len(joints), minlength=len(joints))
    pairs = []
    for k, idx in enumerate(order):
        if counts[k]:
            pairs += make_pairs(joints[idx], rng, int(counts[k]), motion_set, shape_name, look_change)
    return pairs
