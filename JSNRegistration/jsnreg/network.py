"""The registration network: both bones' motions from a joint ROI pair, in one CPU-fast pass.

Input: the fixed ROI, the moving ROI and the fixed upper-region mask, resampled onto a
NET_PX x NET_PX grid centred on the joint centre that spans the ROI's longer side (isotropic step,
so a non-square ROI is not distorted), each image normalised to zero mean and unit SD over the
ROI's own pixels (exposure-independent); the grid beyond a non-square ROI is 0 in every channel.
Output: 8 numbers, per bone (upper, lower): log scale, rotation (rad), dx, dy; translations in
units of the grid's half-width, so (dx_px, dy_px) = output * (NET_PX / 2) * grid step.
The network is trained on real and generated pairs with known motions (see train.py); its estimate is the
starting point of the per-bone refinement (refine.py), never the last word.
Two stages when the fine weights are present: the coarse network's estimate E per bone, then the fine
network on the moving ROI sampled at E(p) (each grid point by its own bone's estimate) predicts what
is left, R, and the estimate becomes E after R (FINE_PASSES times). The fine network is trained on such residual pairs
only (small R), so it sees nearly aligned images, as a second pass of an iterative registration.
A third, precise stage when its weights are present: the same on a grid of half the step (spanning half
the ROI's longer side about the joint centre, so the same anatomy whatever the ROI's size), trained on
smaller residuals: sub-pixel detail the fine stage's 2-2.5 px grid step cannot resolve.
Inference runs in numpy from the saved torch weights (torch is needed only to train: torchnet.py).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import InputError
from .transforms import BoneMotion, compose, linear_reader, matrix, roi_centre

NET_PX = 64
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "jsnnet.pt"
FINE_SUFFIX = "-fine"  # the fine stage's weights beside the coarse ones: jsnnet-fine.pt
PRECISE_SUFFIX = "-precise"  # and the precise stage's: jsnnet-precise.pt
PRECISE_ZOOM = 2  # the precise stage's grid step is the others' / this
# Passes of each later stage: each pass removes only part of what is left (a regression network
# shrinks its answer where it is unsure), so more passes keep helping. On real val pairs (60 per set
# and shape; realistic square, wide; hard square, wide) the network-alone JSN error SD was, fine x
# precise passes: 2 x 2 0.238 / 0.263 / 0.306 / 0.379 px (max 1.50), 4 x 4 0.185 / 0.244 / 0.235 /
# 0.329 (max 0.98), 6 x 4 0.168 / 0.264 / 0.223 / 0.333 (max 1.25), 6 x 6 0.163 / 0.278 / 0.217 / 0.316
# (max 1.51): past 4 x 4 the wide ROIs got worse. A pass costs about 2-3 ms. With the cascade-trained
# fine stage, 3 x 4 did as well as 4 x 4 (60 pairs, seed 2026: 0.144 / 0.165 / 0.207 / 0.420 px against
# 0.140 / 0.167 / 0.208 / 0.439; 200 pairs: 0.109 / 0.176 / 0.178 / 0.319 against 0.117 / 0.176 / 0.180 /
# 0.312), and 3 x 3 nearly (200 pairs: 0.111 / 0.179 / 0.178 / 0.331, hard wide max 1.48 against 1.30 px).
# With the cascade-trained precise stage as well (trained beside 4 fine passes), 60 pairs: 3 x 4 0.132 /
# 0.110 / 0.143 / 0.333 px, 4 x 4 0.129 / 0.112 / 0.143 / 0.339.
FINE_PASSES = 3
PRECISE_PASSES = 4
# Output scaling: the network's raw outputs are kept near unit size during training.
OUT_SCALE = np.array([0.05, 0.1, 0.1, 0.1] * 2, dtype=np.float32)
# (in channels, out channels, stride) of each 3x3 convolution + batch norm + ReLU block:
# 64 -> 64 -> 32 -> 32 -> 16 -> 16 -> 8 -> 4 px; then 128 * 4 * 4 -> 128 -> 8.
CONV_LAYERS = ((3, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 96, 2), (96, 128, 2))
BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default


def grid_step_px(shape: tuple[int, int], zoom: int = 1) -> float:
    """ROI pixels per network-grid pixel: the grid covers the ROI's longer side (/ zoom)."""
    return max(shape[:2]) / NET_PX / zoom


def _grid_points(shape: tuple[int, int], step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, x) ROI positions of the network grid and where they fall inside the ROI."""
    cx, cy = roi_centre(shape)
    offsets = (np.arange(NET_PX) - (NET_PX - 1) / 2.0) * step
    y, x = np.meshgrid(cy + offsets, cx + offsets, indexing="ij")
    inside = (y >= -0.5) & (y <= shape[0] - 0.5) & (x >= -0.5) & (x <= shape[1] - 0.5)
    return y, x, inside


def _resample(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    # Linear is enough here (the grid is coarser than the ROI); read as map_coordinates would, at a
    # quarter of its time (float32 in and out, as before).
    read = linear_reader(x.ravel(), y.ravel(), image.shape)
    return read(np.asarray(image, np.float32)).astype(np.float32).reshape(y.shape)


def _normalise(image: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Zero mean, unit SD over the ROI's own pixels; 0 (the mean) on the grid beyond the ROI."""
    values = image[inside]
    return np.where(inside, (image - values.mean()) / (values.std() + 1e-6), 0.0)


class _GridView:
    """The fixed side of the network input on one grid: the grid's ROI positions, the fixed channel
    and the mask. It does not change between the passes of a stage, so it is resampled once."""

    def __init__(self, fixed: np.ndarray, upper_mask: np.ndarray, padded: bool = True, zoom: int = 1):
        self.y, self.x, inside = _grid_points(fixed.shape, grid_step_px(fixed.shape, zoom))
        self.inside = inside if padded else np.ones_like(inside)
        self.upper = _resample(upper_mask.astype(np.float32), self.y, self.x)
        self.centre = roi_centre(fixed.shape)
        self.fixed = _normalise(_resample(fixed, self.y, self.x), self.inside)
        self.mask = np.where(self.inside, self.upper * 2.0 - 1.0, 0.0)
        self.on_upper = self.upper > 0.5  # which bone's estimate moves a grid point

    def input(self, moving: np.ndarray, motions: tuple[BoneMotion, BoneMotion] | None = None) -> np.ndarray:
        my, mx = self.y, self.x
        if motions is not None:
            mx, my = self.mapped(motions)
        out = np.empty((3, *self.x.shape), np.float32)
        out[0], out[2] = self.fixed, self.mask
        out[1] = _normalise(_resample(moving, my, mx), self.inside)
        return out

    def mapped(self, motions: tuple[BoneMotion, BoneMotion]) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of each grid point under its own bone's motion, elementwise: a third of the time
        of an (N, 2) x (2, 2) product per bone (the same numbers to rounding)."""
        upper, lower = (matrix(m, self.centre) for m in motions)
        x, y = self.x, self.y
        mx = np.where(self.on_upper, upper[0, 0] * x + upper[0, 1] * y + upper[0, 2],
                      lower[0, 0] * x + lower[0, 1] * y + lower[0, 2])
        my = np.where(self.on_upper, upper[1, 0] * x + upper[1, 1] * y + upper[1, 2],
                      lower[1, 0] * x + lower[1, 1] * y + lower[1, 2])
        return mx, my


def network_input(fixed: np.ndarray, moving: np.ndarray, upper_mask: np.ndarray, padded: bool = True,
                  motions: tuple[BoneMotion, BoneMotion] | None = None, zoom: int = 1) -> np.ndarray:
    """(3, NET_PX, NET_PX) float32 input for one ROI pair: fixed, moving, mask as +1 upper / -1
    lower. A non-square ROI is not stretched: the grid spans its longer side and the grid beyond
    its shorter side is padded with 0 in all three channels (mask 0 = no ROI there), so the
    ROI's own pixels look the same to the network whatever its aspect ratio. padded=False: the
    encoding the first weights were trained with (edge values repeated beyond the ROI); the same
    for a square ROI. motions: (upper, lower) estimates fixed -> moving; the moving channel is then
    the moving ROI at each grid point's image under its own bone's estimate (the fine stage's input).
    zoom: the grid's step divided by this (the precise stage's input: the ROI's middle, finer)."""
    return _GridView(fixed, upper_mask, padded, zoom).input(moving, motions)


def params_to_motions(out: np.ndarray, shape: tuple[int, int], zoom: int = 1) -> tuple[BoneMotion, BoneMotion]:
    """Network output (8,) -> (upper, lower) motions in pixels of an ROI of `shape` (grid of `zoom`)."""
    v = np.asarray(out, dtype=np.float64) * OUT_SCALE
    half_px = NET_PX / 2.0 * grid_step_px(shape, zoom)
    bones = []
    for k in (0, 4):
        log_s, th, tx, ty = v[k:k + 4]
        bones.append(BoneMotion(float(np.exp(log_s)), float(th), float(tx * half_px), float(ty * half_px)))
    return bones[0], bones[1]


def motions_to_params(upper: BoneMotion, lower: BoneMotion, shape: tuple[int, int], zoom: int = 1) -> np.ndarray:
    """Inverse of params_to_motions: training targets (8,) float32."""
    half_px = NET_PX / 2.0 * grid_step_px(shape, zoom)
    v = []
    for b in (upper, lower):
        v += [np.log(b.scale), b.dtheta_rad, b.dx_px / half_px, b.dy_px / half_px]
    return (np.array(v) / OUT_SCALE).astype(np.float32)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fine_weights_path(weights_path: Path | None = None, suffix: str = FINE_SUFFIX) -> Path:
    """Where the fine (or, with PRECISE_SUFFIX, precise) stage of the coarse weights at
    `weights_path` lies (it may not exist)."""
    path = Path(weights_path or DEFAULT_WEIGHTS)
    return path.with_name(path.stem + suffix + path.suffix)


def model_sha256(weights_path: Path | None = None) -> str:
    """The network's identity: SHA-256 of its coarse weights, and of its later stages present with
    the passes they run (another pass count is another estimate: a cohort's cached results and a
    calibration belong to one)."""
    path = Path(weights_path or DEFAULT_WEIGHTS)
    stages = [s for s in (fine_weights_path(path), fine_weights_path(path, PRECISE_SUFFIX)) if s.exists()]
    if not stages:
        return file_sha256(path)
    passes = f"passes {FINE_PASSES} {PRECISE_PASSES}"
    return hashlib.sha256(("".join(file_sha256(s) for s in [path, *stages]) + passes).encode()).hexdigest()


def model_info(weights_path: Path | None = None) -> dict:
    """Identity of the weights in use: file name, SHA-256 (both stages), and how they were trained."""
    path = Path(weights_path or DEFAULT_WEIGHTS)
    card = path.with_suffix(".json")
    info = {"file": path.name, "sha256": model_sha256(path) if path.exists() else "",
            "fine": fine_weights_path(path).exists(), "precise": fine_weights_path(path, PRECISE_SUFFIX).exists(),
            "passes": {"fine": FINE_PASSES, "precise": PRECISE_PASSES}}
    if card.exists():
        info.update({k: v for k, v in json.loads(card.read_text()).items() if k in ("version", "command", "seed")})
    return info


_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


def _rebuild_tensor(storage, offset, size, stride, *_):
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], tuple(size), tuple(s * item for s in stride))
    return np.array(view)


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a `torch.save(model.state_dict())` file as numpy arrays, without torch.

    The file is a zip of a pickle that names each tensor's storage, dtype, offset, size and
    strides, and one raw little-endian file per storage; only those few names are let through.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
            root = pkl[:-len("data.pkl")]
            if zf.read(root + "byteorder").decode().strip() != "little":
                raise InputError(f"network weights {path}: only little-endian files can be read")

            class _Reader(pickle.Unpickler):
                def find_class(self, module, name):
                    if (module, name) == ("collections", "OrderedDict"):
                        return OrderedDict
                    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                        return _rebuild_tensor
                    if module == "torch" and name in _STORAGE_DTYPES:
                        return _STORAGE_DTYPES[name]
                    raise pickle.UnpicklingError(f"unexpected {module}.{name} in a weights file")

                def persistent_load(self, pid):
                    _, dtype, key, _, numel = pid
                    return np.frombuffer(zf.read(f"{root}data/{key}"), dtype=dtype, count=numel)

            with zf.open(pkl) as f:
                return dict(_Reader(f).load())
    except (OSError, KeyError, StopIteration, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise InputError(f"network weights {path} cannot be read: {exc}") from None


def _conv3x3_relu(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """ReLU of the 3x3 convolution, zero padding 1, of x (C, H, W) with weight (O, C * 9) ordered
    (C, row, col) as torch's (O, C, 3, 3) flattened, plus bias (O,): one matrix product over the
    nine shifts, gathered by a single copy of a strided view of the padded input (a fifth faster
    than nine slice copies; the same product, so the same numbers). The view is made by
    np.ndarray, not as_strided: 2 instead of 12 us, 63 times a joint."""
    c, rows, cols = x.shape
    if stride == 1:
        # The padded input flattened per channel (one spare row): tap (i, j) of output (r, q) is
        # element (r + i) * width + q + j, so the taps of an output grid `width` wide are one view;
        # its two extra columns per row are dropped.
        width = cols + 2
        padded = np.zeros((c, rows + 3, width), np.float32)
        padded[:, 1:rows + 1, 1:cols + 1] = x
        sc, _, s1 = padded.strides
        out_r, out_c = rows, width
        taps = np.ndarray((c, 3, 3, rows * width), np.float32, padded, 0, (sc, width * s1, s1, s1))
    else:
        out_r, out_c = (rows - 1) // stride + 1, (cols - 1) // stride + 1
        padded = np.zeros((c, rows + 2, cols + 2), np.float32)
        padded[:, 1:-1, 1:-1] = x
        sc, sr, s1 = padded.strides
        taps = np.ndarray((c, 3, 3, out_r, out_c), np.float32, padded, 0, (sc, sr, s1, stride * sr, stride * s1))
    out = weight @ taps.reshape(c * 9, out_r * out_c)
    out += bias[:, None]
    np.maximum(out, 0.0, out=out)
    return out.reshape(-1, out_r, out_c)[:, :, :cols if stride == 1 else out_c]


class NumpyNet:
    """JSNNet's forward pass in numpy (float32), each batch norm folded into its convolution."""

    def __init__(self, state: dict[str, np.ndarray]):
        self.convs = []
        for k, (c_in, c_out, stride) in enumerate(CONV_LAYERS):
            w = state[f"features.{k}.0.weight"].astype(np.float32)
            if w.shape != (c_out, c_in, 3, 3):
                raise InputError(f"network weights: layer {k} is {w.shape}, expected {(c_out, c_in, 3, 3)}")
            gain = state[f"features.{k}.1.weight"] / np.sqrt(state[f"features.{k}.1.running_var"] + BN_EPS)
            bias = state[f"features.{k}.1.bias"] - state[f"features.{k}.1.running_mean"] * gain
            self.convs.append(((w * gain[:, None, None, None]).reshape(c_out, -1).astype(np.float32),
                               bias.astype(np.float32),
                               stride))
        self.head = [(state[f"head.{k}.weight"].astype(np.float32), state[f"head.{k}.bias"].astype(np.float32))
                     for k in (1, 3)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(3, NET_PX, NET_PX) input -> (8,) raw outputs."""
        h = np.asarray(x, dtype=np.float32)
        for w, b, stride in self.convs:
            h = _conv3x3_relu(h, w, b, stride)
        (w1, b1), (w2, b2) = self.head
        return w2 @ np.maximum(w1 @ h.ravel() + b1, 0.0) + b2


class Network:
    """The trained network (coarse stage, and fine and precise stages when present), loaded once, predicting on
    one ROI pair at a time."""

    def __init__(self, net: NumpyNet, padded: bool = True, fine: NumpyNet | None = None,
                 precise: NumpyNet | None = None):
        self.net = net
        self.padded = padded  # the input encoding the weights were trained with (their card's "input")
        self.fine = fine  # always trained with the padded encoding
        self.precise = precise  # runs after the fine stage only

    @classmethod
    def load(cls, weights_path: Path | None = None, fine: bool = True) -> "Network":
        """The weights at `weights_path` (default: shipped) with their fine and precise stages if present
        and `fine`."""
        path = Path(weights_path or DEFAULT_WEIGHTS)
        if not path.exists():
            raise InputError(f"network weights not found at {path}; train them with `jsnreg train`")
        card = path.with_suffix(".json")
        padded = card.is_file() and json.loads(card.read_text()).get("input") == "padded"
        fine_path = fine_weights_path(path)
        fine_net = NumpyNet(read_state_dict(fine_path)) if fine and fine_path.exists() else None
        precise_path = fine_weights_path(path, PRECISE_SUFFIX)
        precise_net = NumpyNet(read_state_dict(precise_path)) if fine_net and precise_path.exists() else None
        return cls(NumpyNet(read_state_dict(path)), padded, fine_net, precise_net)

    def predict(self, fixed: np.ndarray, moving: np.ndarray, upper_mask: np.ndarray
                ) -> tuple[BoneMotion, BoneMotion]:
        """(upper, lower) motions, fixed -> moving, in pixels of this ROI pair."""
        moving = np.asarray(moving, np.float32)  # as each pass reads it (_resample), converted once
        coarse = _GridView(fixed, upper_mask, self.padded)
        upper, lower = params_to_motions(self.net(coarse.input(moving)), fixed.shape)
        stages = [(self.fine, 1, FINE_PASSES), (self.precise, PRECISE_ZOOM, PRECISE_PASSES)]
        for net, zoom, passes in stages:
            if net is None:
                break
            # The fine stage reads the coarse stage's grid (when both use the padded encoding).
            view = coarse if zoom == 1 and self.padded else _GridView(fixed, upper_mask, zoom=zoom)
            for _ in range(passes):
                r_upper, r_lower = params_to_motions(net(view.input(moving, (upper, lower))), fixed.shape, zoom)
                upper, lower = compose(r_upper, upper), compose(r_lower, lower)
        return upper, lower


@lru_cache(maxsize=2)
def default_network(weights_path: str | None = None) -> Network:
    """The shipped network, loaded once per process."""
    return Network.load(Path(weights_path) if weights_path else None)
