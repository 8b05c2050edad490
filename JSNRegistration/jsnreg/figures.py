"""Pictures of one joint's registration as RGB arrays: what the PNGs, the report and faces show."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .results import JointImages, JointResult


def grey_rgb(image: np.ndarray) -> np.ndarray:
    """[0, 1] intensities (NaN = no data, shown black) -> uint8 RGB."""
    g = (np.clip(np.nan_to_num(image, nan=0.0), 0, 1) * 255).round().astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def loss_vmax(images: JointImages) -> float:
    """One colour scale for the before and after maps: the 99th percentile of the larger one."""
    values = np.concatenate([images.loss_before().ravel(), images.loss_after().ravel()])
    values = values[np.isfinite(values)]
    return float(max(np.percentile(values, 99), 1e-6)) if values.size else 1.0


def heat_rgb(loss: np.ndarray, vmax: float, cmap: str = "viridis") -> np.ndarray:
    """Squared-difference map -> uint8 RGB on the scale [0, vmax] (NaN shown black)."""
    from matplotlib import colormaps

    rgb = colormaps[cmap](np.clip(np.nan_to_num(loss, nan=0.0) / vmax, 0, 1))[..., :3]
    rgb[~np.isfinite(loss)] = 0
    return (rgb * 255).round().astype(np.uint8)


def joint_panels(images: JointImages, tile_px: int = 16) -> dict[str, np.ndarray]:
    """The per-joint pictures by name: fixed, moving, warped, checkerboard, loss before/after."""
    vmax = loss_vmax(images)
    return {
        "fixed": grey_rgb(images.fixed),
        "moving": grey_rgb(images.moving),
        "warped": grey_rgb(images.warped()),
        "checkerboard": grey_rgb(images.checkerboard(tile_px)),
        "loss_before": heat_rgb(images.loss_before(), vmax),
        "loss_after": heat_rgb(images.loss_after(), vmax),
    }


def save_joint_pngs(result: JointResult, out_dir: Path) -> list[Path]:
    """Write <joint>_<panel>.png for every panel of a result that carries images."""
    from .images import write_png

    paths = []
    for panel, rgb in joint_panels(result.images).items():
        path = Path(out_dir) / f"{result.name}_{panel}.png"
        write_png(path, rgb)
        paths.append(path)
    return paths
