"""Generated radiograph pairs with KNOWN truth: joint ROIs for training, tests and the benchmark,
and a whole hand for the demo.

Bones are analytic shapes in millimetres, so each visit is rendered exactly: a pixel q of the
follow-up shows bone b at the fixed-frame point T_b^-1(q), with T_b the bone's BoneMotion
(transforms.matrix). Each bone is its own X-ray attenuation layer (projected chord through a
cortical shell plus trabecular bone modulated by a band-pass texture that is fixed to the bone, so
two visits differ only by the motions, blur, exposure and noise); layers and soft tissue add, then
a monotone curve maps attenuation to intensity in [0, 1] (bone bright).

Bone model (local frame, mm): u lateral, s along the bone axis from the base (proximal articular
surface, concave, flared) to the head (distal articular surface, convex), both surfaces bent as
s = -(c u^2 + notch(u)); half-width hw(s) flares from the shaft to the base and the head.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy import ndimage

from .results import BonePairMeasures
from .transforms import BoneMotion, from_matrix, matrix, roi_centre

KINDS = ("MCP", "PIP", "DIP")
SUPERSAMPLE = 2  # geometry is evaluated on a 2x finer grid and area-averaged (anti-aliasing)
MIN_GAP_LEFT_MM = 0.3  # follow-up joint space never thinner than this at the joint centre


@dataclass(frozen=True)
class Bone:
    """One long bone (mm): length between the articular apices, half-widths, surface shapes."""

    length: float
    half_base: float
    half_shaft: float
    half_head: float
    curv_base: float  # c of the base surface s = -(c u^2 + notch): 1 / (2 radius), 1/mm
    curv_head: float
    notch_base: float  # depth (mm) of the median ridge / intercondylar groove
    notch_head: float
    cortex_end: float  # cortical thickness at the articular ends and along the shaft (mm)
    cortex_shaft: float
    # A growth plate (physis): a lucent band across the bone at s = physis_s (mm from the base;
    # negative: from the head), physis_w wide (mm), removing physis_depth of the attenuation.
    physis_s: float = 0.0
    physis_w: float = 0.0
    physis_depth: float = 0.0


def _bump(t: np.ndarray) -> np.ndarray:
    """1 at t <= 0 falling smoothly to 0 for t >> 1 (flares and cortex thinning near the ends)."""
    return np.exp(-np.square(np.maximum(t, 0.0)))


def _softmin3(a: np.ndarray, b: np.ndarray, c: np.ndarray, r: float) -> np.ndarray:
    """Smooth minimum (radius r mm): rounds the corners where the articular surfaces meet the sides."""
    m = np.minimum(np.minimum(a, b), c)
    return m - r * np.log(np.exp((m - a) / r) + np.exp((m - b) / r) + np.exp((m - c) / r))


def _chord(depth: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """X-ray path length (mm) through a cylinder of `radius` at `depth` inside its projected edge."""
    d = np.clip(depth, 0.0, radius)
    return 2.0 * np.sqrt(d * (2.0 * radius - d))


def _surface(u: np.ndarray, curv: float, notch: float) -> np.ndarray:
    """Articular surface offset along the axis (mm, <= 0): parabola plus a ~3 mm wide median notch."""
    return -(curv * u * u + notch * np.exp(-np.square(u / 1.5)))


def bone_chords(bone: Bone, u: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cortical and trabecular path lengths (mm) at bone-local points (u lateral, s axial, mm)."""
    flare_base = 0.8 * bone.half_base
    flare_head = 0.5 * bone.half_head
    # The head is widest a little below its apex, then narrows into the neck.
    hw = (bone.half_shaft + (bone.half_base - bone.half_shaft) * _bump(s / flare_base)
          + (bone.half_head - bone.half_shaft) * _bump((bone.length - s - 0.35 * bone.half_head) / flare_head))
    inside_base = s - _surface(u, bone.curv_base, bone.notch_base)
    inside_head = bone.length + _surface(u, bone.curv_head, bone.notch_head) - s
    depth = _softmin3(inside_base, inside_head, hw - np.abs(u), 0.8)
    ends = np.maximum(_bump(s / (1.5 * flare_base)), _bump((bone.length - s) / (1.5 * flare_head)))
    cortex = bone.cortex_shaft - (bone.cortex_shaft - bone.cortex_end) * ends
    outer = _chord(depth, hw)
    inner = _chord(depth - cortex, hw - cortex)
    if bone.physis_w > 0:  # the plate follows the nearer articular surface's curve
        at = bone.physis_s if bone.physis_s >= 0 else bone.length + bone.physis_s
        line = at + (_surface(u, bone.curv_base, 0.0) if bone.physis_s >= 0 else -_surface(u, bone.curv_head, 0.0))
        keep = 1.0 - bone.physis_depth * np.exp(-np.square((s - line) / bone.physis_w))
        return (outer - inner) * keep, inner * keep
    return outer - inner, inner


def band_pass_texture(rng: np.random.Generator, shape: tuple[int, int], spacing_mm: float) -> np.ndarray:
    """Trabecular-like texture (zero mean, unit SD): band-pass noise, features ~0.4-1 mm, a little
    elongated along the rows (the bone axis), on a grid of the given pixel spacing."""
    white = rng.standard_normal(shape).astype(np.float32)
    fine = 0.1 / spacing_mm
    coarse = 0.4 / spacing_mm
    field = (ndimage.gaussian_filter(white, (1.4 * fine, fine))
             - ndimage.gaussian_filter(white, (1.4 * coarse, coarse)))
    field = np.tanh(1.5 * field / field.std())  # sharper, plate-like trabeculae
    return (field - field.mean()) / field.std()


# Per kind, ranges (mm) of: proximal bone head half-width, its shaft half-width, distal bone base
# and shaft half-widths, head radius, notch depth, shaft cortex, fixed joint space width, finger
# soft-tissue half-width. MCP: metacarpal / proximal phalanx; PIP: proximal / middle phalanx;
# DIP: middle / distal phalanx.
ANATOMY = {
    "MCP": dict(head=(6.5, 7.8), shaft_p=(4.0, 4.8), base=(5.6, 6.6), shaft_d=(4.4, 5.0), radius=(7.0, 10.0),
                notch=(0.05, 0.2), cortex=(1.1, 1.7), gap=(1.2, 2.2), finger=(12.0, 17.0)),
    "PIP": dict(head=(4.8, 5.8), shaft_p=(3.4, 4.0), base=(4.6, 5.4), shaft_d=(3.3, 3.9), radius=(8.0, 12.0),
                notch=(0.15, 0.35), cortex=(0.9, 1.3), gap=(0.9, 1.7), finger=(8.0, 10.0)),
    "DIP": dict(head=(3.6, 4.4), shaft_p=(2.6, 3.2), base=(3.6, 4.3), shaft_d=(2.4, 2.9), radius=(6.0, 9.0),
                notch=(0.05, 0.2), cortex=(0.7, 1.0), gap=(0.8, 1.4), finger=(6.5, 8.0)),
}
LONG_BONE_MM = 60.0  # bones whose far end lies well outside the ROI


def joint_bones(rng: np.random.Generator, kind: str, varied: bool = False) -> tuple[Bone, Bone]:
    """Random (proximal, distal) bones of a joint of the given kind; the surfaces facing the joint
    share curvature and notch so the joint space has a uniform width along the axis.

    varied: wider anatomy for training (a child's or a large hand: sizes x 0.7-1.3; head radius
    4-25 mm; the base's curvature 0.4-1.6 times the head's, so the gap is not uniform; thin or
    thick cortical rims; a growth plate in one bone in a third of the joints, as in children).
    """
    a = ANATOMY[kind]
    size = float(rng.uniform(0.7, 1.3)) if varied else 1.0
    u = lambda key: size * float(rng.uniform(*a[key]))  # noqa: E731
    radius = size * float(rng.uniform(4.0, 25.0)) if varied else u("radius")
    curv, notch, cortex, shaft = 1.0 / (2.0 * radius), u("notch"), u("cortex"), u("shaft_p")
    cortex_end = float(rng.uniform(0.2, 1.0) if varied else rng.uniform(0.4, 0.7))
    curv_base = curv * float(rng.uniform(0.4, 1.6)) if varied else curv
    proximal = Bone(LONG_BONE_MM, shaft + 1.0, shaft, u("head"), 0.05, curv, 0.0, notch, cortex_end, cortex)
    # The distal phalanx ends in a tuft, often inside a DIP ROI.
    length, half_head = (rng.uniform(15.0, 20.0), rng.uniform(2.3, 3.0)) if kind == "DIP" else (LONG_BONE_MM, 4.0)
    distal = Bone(float(length), u("base"), u("shaft_d"), float(half_head), curv_base, 0.25, notch, 0.0,
                  cortex_end, 0.85 * cortex)
    if varied and rng.random() < 0.35:
        # Metacarpals 2-5 grow at their heads, phalanges at their bases.
        plate = dict(physis_w=size * float(rng.uniform(0.2, 0.6)), physis_depth=float(rng.uniform(0.4, 0.95)))
        if kind == "MCP" and rng.random() < 0.7:
            proximal = replace(proximal, physis_s=-size * float(rng.uniform(2.0, 5.0)), **plate)
        else:
            distal = replace(distal, physis_s=size * float(rng.uniform(1.5, 4.0)), **plate)
    return proximal, distal


@dataclass(frozen=True)
class Look:
    """X-ray constants of one radiograph pair: attenuation per mm of soft tissue, cortical and
    trabecular bone, texture contrast, intensity of the unattenuated beam."""

    k_soft: float
    k_cortex: float
    k_trabecular: float
    texture_amp: float
    background: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Look":
        return cls(float(rng.uniform(0.02, 0.03)), float(rng.uniform(0.25, 0.35)),
                   float(rng.uniform(0.035, 0.055)), float(rng.uniform(0.4, 0.7)),
                   float(rng.uniform(0.03, 0.15)))

    def intensity(self, mu: np.ndarray) -> np.ndarray:
        """Monotone display curve of the summed attenuation, bone bright, in [background, 1)."""
        return self.background + (1.0 - self.background) * (1.0 - np.exp(-mu))


@dataclass(frozen=True)
class Texture:
    """Bone texture in the baseline frame: cubic-spline coefficients on the pixel grid + margin."""

    coef: np.ndarray
    margin_px: int

    @classmethod
    def random(cls, rng: np.random.Generator, shape: tuple[int, int], margin_px: int,
               spacing_mm: float) -> "Texture":
        field = band_pass_texture(rng, (shape[0] + 2 * margin_px, shape[1] + 2 * margin_px), spacing_mm)
        return cls(ndimage.spline_filter(field, order=3), margin_px)

    def at(self, xy: np.ndarray) -> np.ndarray:
        """Texture at baseline points (2, N) px."""
        m = self.margin_px
        return ndimage.map_coordinates(self.coef, [xy[1] + m, xy[0] + m], order=3, prefilter=False,
                                       mode="nearest")


@lru_cache(maxsize=8)
def _grid(shape: tuple[int, int], factor: int) -> np.ndarray:
    """Homogeneous (3, N) float32 pixel centres (x, y) of a grid `factor` times finer than `shape`."""
    rows, cols = shape
    ys = (np.arange(rows * factor) + 0.5) / factor - 0.5
    xs = (np.arange(cols * factor) + 0.5) / factor - 0.5
    y, x = np.meshgrid(ys, xs, indexing="ij")
    grid = np.stack([x.ravel(), y.ravel(), np.ones(x.size)]).astype(np.float32)
    grid.flags.writeable = False
    return grid


def _area_down(values: np.ndarray, shape: tuple[int, int], factor: int) -> np.ndarray:
    """Mean over factor x factor blocks of a flat fine-grid array."""
    fine = values.reshape(shape[0] * factor, shape[1] * factor)
    return sum(fine[i::factor, j::factor] for i in range(factor) for j in range(factor)) / factor ** 2


def bone_layer(bone: Bone, to_bone: np.ndarray, inverse: np.ndarray, shape: tuple[int, int],
               texture: Texture, look: Look) -> np.ndarray:
    """Attenuation of one bone on a (rows, cols) pixel block.

    to_bone: 3x3, baseline px -> bone-local (u, s) mm; inverse: 3x3, block px -> baseline px (the
    inverse of the bone's motion, times the block's offset).
    """
    u, s = ((to_bone @ inverse)[:2].astype(np.float32) @ _grid(shape, SUPERSAMPLE))
    # Shapes are evaluated only where this bone can be (speed).
    near = np.abs(u) < max(bone.half_base, bone.half_shaft, bone.half_head) + 0.5
    near &= (s < bone.length + 0.5) & (s > -bone.curv_base * u * u - bone.notch_base - 0.5)
    idx = np.flatnonzero(near)
    cortex, trab = np.zeros((2, u.size), np.float32)
    cortex[idx], trab[idx] = bone_chords(bone, u[idx], s[idx])
    cortex = _area_down(cortex, shape, SUPERSAMPLE)
    trab = _area_down(trab, shape, SUPERSAMPLE)
    # The texture is a function of the baseline position, so it moves with the bone (sampled where
    # there is trabecular bone only, for speed).
    inside = np.flatnonzero(trab)
    tex = np.zeros(trab.size, np.float32)
    tex[inside] = texture.at(inverse[:2].astype(np.float32) @ _grid(shape, 1)[:, inside])
    return look.k_cortex * cortex + look.k_trabecular * trab * (1.0 + look.texture_amp * tex.reshape(shape))


def _shifted(to_local: np.ndarray, du_mm: float, ds_mm: float) -> np.ndarray:
    """Local frame moved to the origin (du, ds): a bone's frame from the joint's."""
    m = to_local.copy()
    m[:2, 2] -= (du_mm, ds_mm)
    return m


@dataclass(frozen=True)
class _Joint:
    """Baseline joint ROI: local frame, bones (each with the name of its motion), soft tissue."""

    to_local: np.ndarray  # 3x3: fixed px (x, y, 1) -> (u, v, 1) mm; v along the finger, distal > 0
    bones: tuple[tuple[Bone, np.ndarray, str], ...]  # (bone, fixed px -> bone frame, "proximal"|"distal")
    finger_half_mm: float
    neighbour: tuple[float, float] | None  # (centre u, half-width) mm of an adjacent finger


def _soft_layer(joint: _Joint, inverse: np.ndarray, shape: tuple[int, int], look: Look) -> np.ndarray:
    """Soft-tissue attenuation (finger ~0.9 times as deep as wide, a little swollen at the joint)."""
    local = joint.to_local @ inverse @ _grid(shape, 1)
    u, v = local[0], local[1]
    half = joint.finger_half_mm * (1.0 + 0.08 * np.exp(-np.square(v / 6.0)))
    thick = _chord(half - np.abs(u), half)
    if joint.neighbour is not None:
        nu, nh = joint.neighbour
        thick = thick + _chord(nh - np.abs(u - nu), np.full_like(u, nh))
    return (look.k_soft * 0.9 * thick).reshape(shape)


def _render_joint(joint: _Joint, shape: tuple[int, int], inverses: dict[str, np.ndarray],
                  texture: Texture, look: Look) -> np.ndarray:
    """Noise-free, unblurred intensity of one visit; inverses: image px -> fixed px per motion."""
    mu = _soft_layer(joint, inverses["soft"], shape, look)
    for bone, to_bone, motion in joint.bones:
        mu = mu + bone_layer(bone, to_bone, inverses[motion], shape, texture, look)
    return look.intensity(mu)


@dataclass
class JointPair(BonePairMeasures):
    """A generated joint ROI pair and its truth (pixel quantities in px of this ROI).

    jsn_px = upper.dy_px - lower.dy_px is exactly the narrowing that was applied, measured like
    the convention says: in follow-up pixels, along the image rows, at the ROI centre. The follow-up
    is magnified by m (both bones' scale) and the narrowing is applied after it, so in baseline
    millimetres the bones came jsn_mm / m closer (m within 1 +- max_magnification); and it is
    applied along the finger axis, tilted by psi from the columns, so the gap narrowed along that
    axis by jsn / cos(psi) (psi < ~12 deg: < 2 %) with a lateral part jsn * tan(psi) in dx.
    """

    fixed: np.ndarray
    moving: np.ndarray
    upper_mask: np.ndarray
    upper: BoneMotion
    lower: BoneMotion
    spacing_mm: float
    kind: str
    noise_sigma: float


def _rotation_about(theta_rad: float, point_xy: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """3x3 similarity (rotation and scale) about a point, px."""
    return matrix(BoneMotion(scale, theta_rad, 0.0, 0.0), tuple(point_xy))


def _translation(d_xy: np.ndarray) -> np.ndarray:
    m = np.eye(3)
    m[:2, 2] = d_xy
    return m


def _local_frame(centre_xy: np.ndarray, tilt_rad: float, spacing_mm: float) -> np.ndarray:
    """3x3 fixed px -> (u, v) mm; v along axis (sin t, -cos t) (up on screen at t = 0), u across."""
    c, s = np.cos(tilt_rad), np.sin(tilt_rad)
    rot = np.array([[c, s], [s, -c]]) * spacing_mm
    m = np.eye(3)
    m[:2, :2] = rot
    m[:2, 2] = -rot @ centre_xy
    return m


def upper_mask_from_curve(shape: tuple[int, int], to_local: np.ndarray, middle) -> np.ndarray:
    """True above the joint-space middle curve v = middle(u) (local frame), one boundary per column."""
    rows, cols = shape
    u = np.linspace(-40.0, 40.0, 801)
    to_px = np.linalg.inv(to_local)
    xy = to_px @ np.stack([u, middle(u), np.ones_like(u)])
    order = np.argsort(xy[0])
    boundary = np.interp(np.arange(cols), xy[0][order], xy[1][order])
    return np.arange(rows)[:, None] < boundary[None, :]


def _detector(rng: np.random.Generator, image: np.ndarray, blur_px: float, noise_sigma: float,
              reprocess: bool = False) -> np.ndarray:
    """Detector blur, another processing curve when `reprocess` (a digital radiograph's look-up
    curve acts on the acquired, blurred image), then slightly signal-dependent Gaussian noise
    (noise_sigma at intensity 0.5)."""
    blurred = ndimage.gaussian_filter(image, blur_px)
    if reprocess:
        blurred = _exposure(rng, blurred)
    sigma = noise_sigma * (0.75 + 0.5 * blurred)
    return blurred + sigma * rng.standard_normal(image.shape)


def _exposure(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Another exposure and processing curve: gain, offset, gamma."""
    gamma = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
    return rng.uniform(0.85, 1.15) * np.clip(image, 0.0, 1.0) ** gamma + rng.uniform(-0.05, 0.05)


def _processing(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A digital radiograph's processing, for the training generator: edge enhancement (unsharp
    mask) in half the visits, and in a third a tone curve that clips the air or the brightest bone."""
    out = np.clip(image, 0.0, 1.0)
    if rng.random() < 0.5:
        out = out + rng.uniform(0.2, 1.5) * (out - ndimage.gaussian_filter(out, rng.uniform(2.0, 8.0)))
    if rng.random() < 0.33:
        out = rng.uniform(1.0, 1.35) * out + rng.uniform(-0.15, 0.0)
    return out


def make_joint_pair(rng: np.random.Generator, kind: str | None = None, size_px: int = 128,
                    spacing_mm: float | None = None, noise_sigma: float | None = None,
                    jsn_mm: float | None = None, max_rotation_deg: float = 5.0,
                    max_translation_px: float = 6.0, max_magnification: float = 0.04,
                    exposure_change: bool = True, blur_change: bool = True,
                    proximal_on_top: bool | None = None, varied: bool = False) -> JointPair:
    """A baseline (fixed) / follow-up (moving) joint ROI pair with exact per-bone truth.

    None = drawn at random: kind uniform over MCP/PIP/DIP, spacing 0.1-0.2 mm/px, noise SD
    0.005-0.04 (log-uniform), jsn -0.5..+1.0 mm, proximal_on_top with probability 1/2 (fingers
    pointing up put the distal bone on top; ROIs cut from images with the fingers pointing down, like
    the published clinical sample, have the proximal head on top). The follow-up is the common
    motion of the finger (rotation, magnification, translation) followed by
    each bone's own small rotation about the moved joint centre and shift (the narrowing along the
    finger axis, and up to ~1 px lateral); see JointPair for what jsn means exactly.

    varied: the training generator's wider world: joint_bones(varied=True) anatomy, gaps up to
    1.8 times wider, each bone's own rotation up to 4 deg and lateral shift up to 3 px, and each
    visit its own processing (edge enhancement, a tone curve that may clip air or bone).
    """
    kind = kind or str(rng.choice(KINDS))
    if kind not in ANATOMY:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    spacing_mm = float(spacing_mm if spacing_mm is not None else rng.uniform(0.1, 0.2))
    noise_sigma = float(noise_sigma if noise_sigma is not None
                        else np.exp(rng.uniform(np.log(0.005), np.log(0.04))))
    jsn_mm = float(jsn_mm if jsn_mm is not None else rng.uniform(-0.5, 1.0))
    if proximal_on_top is None:
        proximal_on_top = bool(rng.random() < 0.5)
    shape = (size_px, size_px)
    centre = np.array(roi_centre(shape))

    proximal, distal = joint_bones(rng, kind, varied)
    gap_mm = float(rng.uniform(*ANATOMY[kind]["gap"])) * (float(rng.uniform(0.8, 1.8)) if varied else 1.0)
    gap_mm = max(gap_mm, jsn_mm + MIN_GAP_LEFT_MM)
    tilt = np.radians(rng.uniform(-6.0, 6.0)) + (np.pi if proximal_on_top else 0.0)
    joint_xy = centre + rng.uniform(-0.6, 0.6, 2) / spacing_mm  # a hand-placed centre is never exact
    to_local = _local_frame(joint_xy, tilt, spacing_mm)
    finger = float(rng.uniform(*ANATOMY[kind]["finger"]))
    neighbour = None
    if rng.random() < 0.4:
        half = finger * rng.uniform(0.8, 1.0)
        neighbour = (float(rng.choice([-1, 1]) * (finger + half + rng.uniform(0.3, 3.0))), float(half))
    bones = [(proximal, _shifted(to_local, 0.0, -gap_mm / 2 - proximal.length), "proximal"),
             (distal, _shifted(to_local, 0.0, gap_mm / 2), "distal")]
    if kind == "MCP" and rng.random() < 0.25:  # a faint sesamoid over the metacarpal head
        r = float(rng.uniform(1.2, 2.0))
        nodule = Bone(2 * r, 0.8 * r, r, 0.8 * r, 0.5 / r, 0.5 / r, 0.0, 0.0, 0.3, 0.3)
        bones.append((nodule, _shifted(to_local, rng.choice([-1, 1]) * rng.uniform(0.2, 0.5) * proximal.half_head,
                                       -gap_mm / 2 - rng.uniform(3.0, 6.0)), "proximal"))
    joint = _Joint(to_local, tuple(bones), finger, neighbour)
    margin = int(np.ceil(2 * max_translation_px + size_px * (np.radians(max_rotation_deg + 2) + max_magnification))) + 8
    texture = Texture.random(rng, shape, margin, spacing_mm)
    look = Look.random(rng)

    # Follow-up: common finger motion C, then per bone D_b = shift_b . rotation_b about C(centre).
    # (A magnification about any other point is this one plus a shift, drawn with the translation.)
    common = (_translation(rng.uniform(-max_translation_px, max_translation_px, 2))
              @ _rotation_about(np.radians(rng.uniform(-max_rotation_deg, max_rotation_deg)), centre,
                                1.0 + rng.uniform(-max_magnification, max_magnification)))
    moved_centre = common[:2, :2] @ centre + common[:2, 2]
    axis = common[:2, :2] @ np.array([np.sin(tilt), -np.cos(tilt)])  # towards the distal bone
    narrowing = -axis * (jsn_mm / spacing_mm) / abs(axis[1])  # distal bone toward proximal, |dy| = jsn
    motions = {}
    own_lateral_px, own_rotation_deg = (3.0, 4.0) if varied else (0.5, 1.0)
    for bone, extra in (("proximal", 0.0), ("distal", narrowing)):
        shift = np.array([rng.uniform(-own_lateral_px, own_lateral_px), 0.0]) + extra
        own = _translation(shift) @ _rotation_about(np.radians(rng.uniform(-own_rotation_deg, own_rotation_deg)),
                                                    moved_centre)
        motions[bone] = own @ common

    truth = {b: from_matrix(m, tuple(centre)) for b, m in motions.items()}
    upper, lower = ("proximal", "distal") if proximal_on_top else ("distal", "proximal")
    fixed = _render_joint(joint, shape, dict.fromkeys(("proximal", "distal", "soft"), np.eye(3)), texture, look)
    moving = _render_joint(joint, shape, {"proximal": np.linalg.inv(motions["proximal"]),
                                          "distal": np.linalg.inv(motions["distal"]),
                                          "soft": np.linalg.inv(common)}, texture, look)

    blur = rng.uniform(0.4, 1.2)
    blur_moving = rng.uniform(0.4, 1.2) if blur_change else blur
    fixed = _detector(rng, fixed, blur, noise_sigma)
    moving = _detector(rng, moving, blur_moving, noise_sigma, reprocess=exposure_change)
    if varied:
        fixed, moving = _processing(rng, fixed), _processing(rng, moving)

    curv, notch = proximal.curv_head, proximal.notch_head
    reach = max(proximal.half_head, distal.half_base) + 1.0  # the split runs flat beyond the bones
    mask = upper_mask_from_curve(shape, to_local,
                                 lambda u: _surface(np.clip(u, -reach, reach), curv, notch))
    return JointPair(np.clip(fixed, 0, 1).astype(np.float32), np.clip(moving, 0, 1).astype(np.float32),
                     mask, truth[upper], truth[lower], spacing_mm, kind, noise_sigma)


# A right hand, PA view, fingers up (thumb on the image's left), mm: metacarpal base apex (x, y)
# from the wrist centre (y up), metacarpal axis angle from vertical (deg, + = toward the little
# finger), turn of the phalanges at the MCP, bone lengths and shaft half-widths proximal to distal,
# joints and their baseline joint-space widths.
DIGITS = (
    dict(base=(-21.0, 18.0), angle=-40.0, turn=14.0, lengths=(44.0, 31.0, 23.0), halves=(4.3, 4.2, 3.4),
         joints=("MCP1", "IP1"), gaps=(1.5, 1.2)),
    dict(base=(-11.0, 42.0), angle=-7.0, turn=-3.0, lengths=(66.0, 40.0, 23.0, 17.0), halves=(3.9, 4.0, 3.3, 2.6),
         joints=("MCP2", "PIP2", "DIP2"), gaps=(1.8, 1.3, 1.0)),
    dict(base=(0.0, 44.0), angle=0.0, turn=0.0, lengths=(63.0, 45.0, 27.0, 19.0), halves=(4.1, 4.2, 3.5, 2.7),
         joints=("MCP3", "PIP3", "DIP3"), gaps=(1.9, 1.3, 1.0)),
    dict(base=(11.0, 41.0), angle=7.0, turn=3.0, lengths=(56.0, 42.0, 26.0, 19.0), halves=(3.7, 3.9, 3.3, 2.6),
         joints=("MCP4", "PIP4", "DIP4"), gaps=(1.8, 1.3, 1.0)),
    dict(base=(20.0, 36.0), angle=15.0, turn=6.0, lengths=(51.0, 33.0, 19.0, 17.0), halves=(3.4, 3.4, 2.9, 2.4),
         joints=("MCP5", "PIP5", "DIP5"), gaps=(1.7, 1.2, 0.9)),
)
DEFAULT_NARROWING_MM = {
    "IP1": 0.15, "MCP1": 0.05, "MCP2": 0.40, "MCP3": 0.60, "MCP4": 0.25, "MCP5": 0.0,
    "PIP2": 0.30, "PIP3": 0.50, "PIP4": -0.10, "PIP5": 0.20,
    "DIP2": 0.10, "DIP3": 0.35, "DIP4": 0.02, "DIP5": 0.15,
}
HAND_SHAPE_PX = (1200, 960)  # at 0.2 mm/px: 240 x 192 mm, the same field at any spacing


def hand_shape_px(spacing_mm: float) -> tuple[int, int]:
    """(rows, cols) of a generated hand radiograph at this spacing (2400 x 1920 at 0.1 mm/px)."""
    return tuple(int(round(n * 0.2 / spacing_mm)) for n in HAND_SHAPE_PX)


@dataclass
class HandPair:
    """Whole-hand baseline / follow-up radiographs (float32 in [0, 1]) with joint truth.

    joints / followup_joints: joint centres (x, y) px in each image; truth_jsn_mm: narrowing of each
    joint along its finger axis in baseline millimetres (positive = narrower at follow-up). The
    follow-up is also magnified (meta_followup["magnification"]), so a joint's narrowing in
    follow-up pixels times the spacing is truth * magnification.
    """

    baseline: np.ndarray
    followup: np.ndarray
    spacing_mm: float
    joints: dict[str, tuple[float, float]]
    followup_joints: dict[str, tuple[float, float]]
    truth_jsn_mm: dict[str, float]
    meta_baseline: dict
    meta_followup: dict


def _hand_bones(spacing_mm: float, origin_px: np.ndarray):
    """Baseline bones of the hand: (bone, baseline px -> bone frame, digit, index in the digit),
    joints {name: (centre px, distal axis unit vector, digit, index of the distal bone)}."""
    bones, joints = [], {}
    for d, digit in enumerate(DIGITS):
        base_mm = np.array(digit["base"])
        n = len(digit["lengths"])
        for k, (length, half) in enumerate(zip(digit["lengths"], digit["halves"])):
            angle = np.radians(digit["angle"] + (digit["turn"] if k > 0 else 0.0))
            axis = np.array([np.sin(angle), np.cos(angle)])  # mm, y up
            head = 1.0 / (2.0 * (2.2 * half))  # articular curvature, radius ~ 2.2 shaft half-widths
            bone = Bone(length, (1.2 if k else 1.6) * half, half, 1.6 * half if k < n - 1 else 0.9 * half,
                        head if k else 0.15, head if k < n - 1 else 0.35, 0.1 if k else 0.0,
                        0.15 if k < n - 1 else 0.0, 0.5, 0.3 * half)
            # baseline px -> (u, s) mm: image y grows down, mm y up.
            to_bone = np.eye(3)
            rot = np.array([[axis[1], axis[0]], [axis[0], -axis[1]]]) * spacing_mm  # u = across, s = along
            to_bone[:2, :2] = rot
            start_px = origin_px + np.array([base_mm[0], -base_mm[1]]) / spacing_mm
            to_bone[:2, 2] = -rot @ start_px
            bones.append((bone, to_bone, d, k))
            if k < n - 1:
                nxt = np.radians(digit["angle"] + digit["turn"])
                nxt_axis = np.array([np.sin(nxt), np.cos(nxt)])
                gap = digit["gaps"][k]
                apex = base_mm + axis * length
                centre = apex + nxt_axis * gap / 2
                joints[digit["joints"][k]] = (origin_px + np.array([centre[0], -centre[1]]) / spacing_mm,
                                              np.array([nxt_axis[0], -nxt_axis[1]]), d, k + 1)
                base_mm = apex + nxt_axis * gap
    return bones, joints


def _capsule_mm(x_mm, y_mm, start, end, radius: float, depth: float) -> np.ndarray:
    """Thickness (mm) of a rounded slab around a segment: depth * sqrt(1 - (distance / radius)^2)."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    axis = (end - start) / np.linalg.norm(end - start)
    t = np.clip((x_mm - start[0]) * axis[0] + (y_mm - start[1]) * axis[1], 0.0, np.linalg.norm(end - start))
    dist = np.hypot(x_mm - start[0] - t * axis[0], y_mm - start[1] - t * axis[1])
    return depth * np.sqrt(np.clip(1.0 - np.square(dist / radius), 0.0, None))


def _hand_soft_mm(x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
    """Soft-tissue thickness (mm) of the hand at points (mm, wrist centre origin, y up)."""
    thick = np.maximum(_capsule_mm(x_mm, y_mm, (0.0, -300.0), (0.0, 10.0), 29.0, 40.0),  # forearm, wrist
                       _capsule_mm(x_mm, y_mm, (3.0, 45.0), (3.0, 80.0), 40.0, 28.0))  # palm
    for digit in DIGITS:
        a0, a1 = np.radians(digit["angle"]), np.radians(digit["angle"] + digit["turn"])
        mcp = np.array(digit["base"]) + np.array([np.sin(a0), np.cos(a0)]) * digit["lengths"][0]
        tip = mcp + np.array([np.sin(a1), np.cos(a1)]) * (sum(digit["lengths"][1:]) + 3.0)
        half = 2.3 * digit["halves"][1]
        thick = np.maximum(thick, _capsule_mm(x_mm, y_mm, mcp - (tip - mcp) * 0.2, tip, half, 1.8 * half))
    thumb = DIGITS[0]
    a0 = np.radians(thumb["angle"])
    mcp1 = np.array(thumb["base"]) + np.array([np.sin(a0), np.cos(a0)]) * thumb["lengths"][0]
    return np.maximum(thick, _capsule_mm(x_mm, y_mm, (0.0, 30.0), mcp1, 16.0, 30.0))  # thenar


def _render_hand(bones, motions: list[np.ndarray], carpals, glob: np.ndarray, origin_px: np.ndarray,
                 spacing_mm: float, texture: Texture, look: Look) -> np.ndarray:
    """Noise-free intensity of one visit: each bone by its motion (baseline px -> image px)."""
    shape = hand_shape_px(spacing_mm)
    inv_glob = np.linalg.inv(glob)
    xy = inv_glob @ _grid(shape, 1)
    soft = _hand_soft_mm((xy[0] - origin_px[0]) * spacing_mm, (origin_px[1] - xy[1]) * spacing_mm)
    mu = look.k_soft * soft.reshape(shape)
    carpal_mu = np.zeros(shape)
    for (bone, to_bone, *_), motion in list(zip(bones, motions)) + [(c, glob) for c in carpals]:
        # The bone's bounding box in this image, then the bone rendered on that block only.
        half = max(bone.half_base, bone.half_shaft, bone.half_head) + 1.0
        corners = np.array([[-half, -half, half, half], [-2.0, bone.length + 1, -2.0, bone.length + 1], [1, 1, 1, 1]])
        px = (motion @ np.linalg.inv(to_bone) @ corners)[:2]
        x0, y0 = np.maximum(np.floor(px.min(axis=1)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(px.max(axis=1)).astype(int) + 1, (shape[1], shape[0]))
        if x1 <= x0 or y1 <= y0:
            continue
        block = bone_layer(bone, to_bone, np.linalg.inv(motion) @ _translation(np.array([x0, y0])),
                           (y1 - y0, x1 - x0), texture, look)
        target = carpal_mu if motion is glob else mu
        target[y0:y1, x0:x1] += block
    # The carpus overlaps itself in a PA view: a blurred bright mass.
    return look.intensity(mu + ndimage.gaussian_filter(carpal_mu, 1.2 / spacing_mm))


def _carpals(rng: np.random.Generator, spacing_mm: float, origin_px: np.ndarray) -> list:
    """Carpal bones and the distal radius and ulna as (bone, baseline px -> bone frame)."""
    out = []
    parts = [((-14.0, -57.0), 0.05, 63.0, 10.0, 12.5), ((16.0, -60.0), -0.05, 62.0, 6.0, 7.0)]  # radius, ulna
    # Proximal row (scaphoid .. pisiform), then distal row (trapezium .. hamate), jittered.
    for x, y in ((-17, 13), (-5, 14), (7, 13), (15, 18), (-20, 30), (-10, 33), (1, 32), (12, 31)):
        parts.append(((x + rng.normal(0, 1), y + rng.normal(0, 1)), rng.uniform(-0.5, 0.5),
                      rng.uniform(10, 13), rng.uniform(4.5, 6.0), rng.uniform(4.5, 6.0)))
    for (x, y), angle, length, half, head in parts:
        bone = Bone(length, half, half, head, 0.5 / head, 0.5 / head, 0.0, 0.0, 0.4, 0.4 if length < 20 else 1.5)
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, s], [s, -c]]) * spacing_mm
        m = np.eye(3)
        m[:2, :2] = rot
        m[:2, 2] = -rot @ (origin_px + np.array([x, -y]) / spacing_mm)
        out.append((bone, m))
    return out


def make_hand_pair(seed: int = 0, spacing_mm: float = 0.2, narrowing_mm: dict | None = None) -> HandPair:
    """A PA right-hand baseline / follow-up pair: each joint narrowed by its truth (mm along the
    finger axis: every bone distal to it moves toward the wrist), then the whole hand moved
    (rotation ~2 deg, shift ~10 px, magnification 1.015), detector blur, another processing curve
    (acting on the blurred image, as for joint pairs), noise."""
    rng = np.random.default_rng(seed)
    truth = dict.fromkeys(DEFAULT_NARROWING_MM, 0.0) if narrowing_mm is not None else dict(DEFAULT_NARROWING_MM)
    unknown = set(narrowing_mm or {}) - set(truth)
    if unknown:
        raise ValueError(f"unknown joints {sorted(unknown)}; known: {sorted(truth)}")
    truth.update({k: float(v) for k, v in (narrowing_mm or {}).items()})
    scale = 0.2 / spacing_mm
    shape = hand_shape_px(spacing_mm)
    origin = np.array([0.5 * shape[1] + 10 * scale, shape[0] - 110 * scale])  # wrist centre, px
    bones, joints = _hand_bones(spacing_mm, origin)
    gaps = {name: g for digit in DIGITS for name, g in zip(digit["joints"], digit["gaps"])}
    for name, n in truth.items():
        if n > gaps[name] - MIN_GAP_LEFT_MM:
            raise ValueError(f"{name}: narrowing {n} mm leaves less than {MIN_GAP_LEFT_MM} mm of its {gaps[name]} mm gap")

    # Follow-up: each bone moves by the narrowing of every joint proximal to it in its digit.
    shifts = [np.zeros(2) for _ in bones]
    for name, (centre, axis, digit, first) in joints.items():
        for i, (_, _, d, k) in enumerate(bones):
            if d == digit and k >= first:
                shifts[i] = shifts[i] - axis * truth[name] / spacing_mm
    centre_px = np.array([(shape[1] - 1) / 2, (shape[0] - 1) / 2])
    magnification = 1.015
    glob = (_translation(rng.normal(0, 7, 2) * scale)
            @ _rotation_about(np.radians(rng.choice([-1, 1]) * rng.uniform(1.5, 2.5)), centre_px, magnification))
    follow = [glob @ _translation(s) for s in shifts]

    texture = Texture.random(rng, shape, 16, spacing_mm)
    look = Look(0.022, 0.3, 0.045, 0.5, 0.06)
    carpals = _carpals(rng, spacing_mm, origin)
    baseline = _render_hand(bones, [np.eye(3)] * len(bones), carpals, np.eye(3), origin, spacing_mm, texture, look)
    followup = _render_hand(bones, follow, carpals, glob, origin, spacing_mm, texture, look)
    baseline = _detector(rng, baseline, 0.7, 0.01)
    followup = _detector(rng, followup, 0.9, 0.01, reprocess=True)

    def moved(name):
        centre, axis, digit, first = joints[name]
        prox = next(shifts[i] for i, (_, _, d, k) in enumerate(bones) if d == digit and k == first - 1)
        p = centre + prox - axis * truth[name] / spacing_mm / 2
        return tuple(float(v) for v in glob[:2, :2] @ p + glob[:2, 2])

    meta = dict(patient_id="DEMO-0001", patient_name="Demo^Hand", laterality="R")
    return HandPair(np.clip(baseline, 0, 1).astype(np.float32), np.clip(followup, 0, 1).astype(np.float32),
                    spacing_mm, {n: (float(j[0][0]), float(j[0][1])) for n, j in joints.items()},
                    {n: moved(n) for n in joints}, truth,
                    dict(meta, study_date="20250110"), dict(meta, study_date="20251015", magnification=magnification))


def write_demo_case(out_dir, seed: int = 0) -> dict:
    """Write the demo hand pair: baseline.dcm (MONOCHROME2, PixelSpacing), followup.dcm
    (MONOCHROME1, ImagerPixelSpacing with a magnification factor), joints.json (the default joints
    on the baseline) and truth.json; returns their paths {"baseline", "followup", "joints", "truth"}."""
    import json
    from pathlib import Path

    from .images import write_dicom
    from .joints import DEFAULT_JOINTS, JointSpec, joints_to_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hand = make_hand_pair(seed)
    paths = {k: out / f"{k}.{ext}" for k, ext in
             (("baseline", "dcm"), ("followup", "dcm"), ("joints", "json"), ("truth", "json"))}
    meta_follow = {k: v for k, v in hand.meta_followup.items() if k != "magnification"}
    write_dicom(paths["baseline"], hand.baseline, hand.spacing_mm, meta=hand.meta_baseline,
                photometric="MONOCHROME2", bits_stored=12, modality="DX", spacing_tag="PixelSpacing")
    write_dicom(paths["followup"], hand.followup, hand.spacing_mm, meta=meta_follow,
                photometric="MONOCHROME1", bits_stored=12, modality="DX", spacing_tag="ImagerPixelSpacing",
                magnification=1.1)  # detector-plane spacing 10 % larger than at the patient
    specs = [JointSpec(name, *hand.joints[name]) for name in DEFAULT_JOINTS]
    paths["joints"].write_text(json.dumps(joints_to_json(specs), indent=1))
    paths["truth"].write_text(json.dumps({"spacing_mm": hand.spacing_mm, "truth_jsn_mm": hand.truth_jsn_mm},
                                         indent=1))
    return {k: str(v) for k, v in paths.items()}
