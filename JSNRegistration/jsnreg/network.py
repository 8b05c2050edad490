"""The registration network: both bones' motions from a joint ROI pair, in one CPU-fast pass.

Input: the fixed ROI, the moving ROI and the fixed upper-region mask, resampled onto a
NET_PX x NET_PX grid centred on the joint centre that spans the ROI's longer side (isotropic step,
so a non-square ROI is not distorted), each image normalised to zero mean and unit SD over the
ROI's own pixels (exposure-independent); the grid beyond a non-square ROI is 0 in every channel.
Output: 8 numbers, per bone (upper, lower): log scale, rotation (rad), dx, dy; translations in
units of the grid's half-width, so (dx_px, dy_px) = output * (NET_PX / 2) * grid step.
The network is trained on real and generated pairs with known motions (see train.py); its estimate is the
starting point of the per-bone refinement (refine.py), never the last word.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from .transforms import BoneMotion, roi_centre

NET_PX = 64
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "jsnnet.pt"
# Output scaling: the network's raw outputs are kept near unit size during training.
OUT_SCALE = np.array([0.05, 0.1, 0.1, 0.1] * 2, dtype=np.float32)


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class JSNNet(nn.Module):
    """A small plain CNN (about 0.5 M weights): 64 px in, 4 x 4 features, one hidden layer out."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            _block(3, 16, 1), _block(16, 32, 2),      # 32 px
            _block(32, 32, 1), _block(32, 64, 2),     # 16 px
            _block(64, 64, 1), _block(64, 96, 2),     # 8 px
            _block(96, 128, 2),                       # 4 px
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(128 * 16, 128), nn.ReLU(inplace=True),
                                  nn.Linear(128, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def grid_step_px(shape: tuple[int, int]) -> float:
    """ROI pixels per network-grid pixel: the grid covers the ROI's longer side."""
    return max(shape[:2]) / NET_PX


def _grid_points(shape: tuple[int, int], step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, x) ROI positions of the network grid and where they fall inside the ROI."""
    cx, cy = roi_centre(shape)
    offsets = (np.arange(NET_PX) - (NET_PX - 1) / 2.0) * step
    y, x = np.meshgrid(cy + offsets, cx + offsets, indexing="ij")
    inside = (y >= -0.5) & (y <= shape[0] - 0.5) & (x >= -0.5) & (x <= shape[1] - 0.5)
    return y, x, inside


def _resample(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    # Linear is enough here (the grid is coarser than the ROI).
    return ndimage.map_coordinates(np.asarray(image, np.float32), [y, x], order=1, mode="nearest")


def _normalise(image: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Zero mean, unit SD over the ROI's own pixels; 0 (the mean) on the grid beyond the ROI."""
    values = image[inside]
    return np.where(inside, (image - values.mean()) / (values.std() + 1e-6), 0.0)


def network_input(fixed: np.ndarray, moving: np.ndarray, upper_mask: np.ndarray, padded: bool = True) -> np.ndarray:
    """(3, NET_PX, NET_PX) float32 input for one ROI pair: fixed, moving, mask as +1 upper / -1
    lower. A non-square ROI is not stretched: the grid spans its longer side and the grid beyond
    its shorter side is padded with 0 in all three channels (mask 0 = no ROI there), so the
    ROI's own pixels look the same to the network whatever its aspect ratio. padded=False: the
    encoding the first weights were trained with (edge values repeated beyond the ROI); the same
    for a square ROI."""
    y, x, inside = _grid_points(fixed.shape, grid_step_px(fixed.shape))
    if not padded:
        inside = np.ones_like(inside)
    f = _normalise(_resample(fixed, y, x), inside)
    m = _normalise(_resample(moving, y, x), inside)
    k = np.where(inside, _resample(upper_mask.astype(np.float32), y, x) * 2.0 - 1.0, 0.0)
    return np.stack([f, m, k]).astype(np.float32)


def params_to_motions(out: np.ndarray, shape: tuple[int, int]) -> tuple[BoneMotion, BoneMotion]:
    """Network output (8,) -> (upper, lower) motions in pixels of an ROI of `shape`."""
    v = np.asarray(out, dtype=np.float64) * OUT_SCALE
    half_px = NET_PX / 2.0 * grid_step_px(shape)
    bones = []
    for k in (0, 4):
        log_s, th, tx, ty = v[k:k + 4]
        bones.append(BoneMotion(float(np.exp(log_s)), float(th), float(tx * half_px), float(ty * half_px)))
    return bones[0], bones[1]


def motions_to_params(upper: BoneMotion, lower: BoneMotion, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of params_to_motions: training targets (8,) float32."""
    half_px = NET_PX / 2.0 * grid_step_px(shape)
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


def model_info(weights_path: Path | None = None) -> dict:
    """Identity of the weights in use: file name, SHA-256, and how they were trained."""
    path = Path(weights_path or DEFAULT_WEIGHTS)
    card = path.with_suffix(".json")
    info = {"file": path.name, "sha256": file_sha256(path) if path.exists() else ""}
    if card.exists():
        info.update({k: v for k, v in json.loads(card.read_text()).items() if k in ("version", "command", "seed")})
    return info


class Network:
    """The trained network, loaded once, predicting on one or many ROI pairs."""

    def __init__(self, model: JSNNet, padded: bool = True):
        self.model = model.eval()
        self.padded = padded  # the input encoding the weights were trained with (their card's "input")
        # One 64 px input: handing work to a second thread costs more than it saves (10x here).
        torch.set_num_threads(1)

    @classmethod
    def load(cls, weights_path: Path | None = None) -> "Network":
        path = Path(weights_path or DEFAULT_WEIGHTS)
        if not path.exists():
            from .errors import InputError
            raise InputError(f"network weights not found at {path}; train them with `jsnreg train`")
        model = JSNNet()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        card = path.with_suffix(".json")
        padded = card.is_file() and json.loads(card.read_text()).get("input") == "padded"
        return cls(model, padded)

    def predict(self, fixed: np.ndarray, moving: np.ndarray, upper_mask: np.ndarray
                ) -> tuple[BoneMotion, BoneMotion]:
        """(upper, lower) motions, fixed -> moving, in pixels of this ROI pair."""
        x = torch.from_numpy(network_input(fixed, moving, upper_mask, self.padded)[None])
        with torch.inference_mode():
            out = self.model(x)[0].numpy()
        return params_to_motions(out, fixed.shape)


@lru_cache(maxsize=2)
def default_network(weights_path: str | None = None) -> Network:
    """The shipped network, loaded once per process."""
    return Network.load(Path(weights_path) if weights_path else None)
