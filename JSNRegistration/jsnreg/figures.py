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


def save_detection_png(pixels: np.ndarray, joints, path, title: str = "") -> None:
    """The radiograph with each detected joint as a named marker (colour by joint row: MCP red,
    PIP/IP green, DIP blue; a ring's thickness grows with its confidence)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = pixels.shape
    scale = 9.0 / max(rows, cols)
    fig = Figure(figsize=(cols * scale, rows * scale + 0.3), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, rows * scale / (rows * scale + 0.3)))
    ax.imshow(pixels, cmap="gray", vmin=float(np.percentile(pixels, 0.5)), vmax=float(np.percentile(pixels, 99.5)),
              interpolation="antialiased")
    ax.set_axis_off()
    colours = {"MCP": "#ff3b30", "PIP": "#34c759", "IP1": "#34c759", "DIP": "#0a84ff"}
    for j in joints:
        base = j.name.split("-")[-1]
        colour = colours.get(base[:3], colours.get(base, "#ffcc00"))
        ax.plot([j.x], [j.y], "o", ms=9, mfc="none", mec=colour, mew=0.8 + 1.7 * j.confidence)
        ax.annotate(j.name, (j.x, j.y), xytext=(7, 4), textcoords="offset points", color=colour, fontsize=7,
                    fontweight="bold")
    fig.text(0.01, 1 - 0.2 / (rows * scale + 0.3), title or f"{len(joints)} joints detected", fontsize=9)
    fig.savefig(path, facecolor="white")
