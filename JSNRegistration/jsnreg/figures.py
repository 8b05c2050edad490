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


# matplotlib's "viridis" (256 colours, 8-bit RGB): the per-joint PNGs need only this table, and
# loading matplotlib for it cost half a second of a whole-hand run. A test compares it with matplotlib's.
VIRIDIS_RGB8 = np.frombuffer(bytes.fromhex(
    "44015444025645045745055946075a46085c460a5d460b5e470d60470e61471063471164471365481467481668481769"
    "48186a481a6c481b6d481c6e481d6f481f70482071482173482374482475482576482677482878482979472a7a472c7a"
    "472d7b472e7c472f7d46307e46327e46337f463480453581453781453882443983443a83443b84433d84433e85423f85"
    "4240864241864142874144874045884046883f47883f48893e49893e4a893e4c8a3d4d8a3d4e8a3c4f8a3c508b3b518b"
    "3b528b3a538b3a548c39558c39568c38588c38598c375a8c375b8d365c8d365d8d355e8d355f8d34608d34618d33628d"
    "33638d32648e32658e31668e31678e31688e30698e306a8e2f6b8e2f6c8e2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e"
    "2c728e2c738e2b748e2b758e2a768e2a778e2a788e29798e297a8e297b8e287c8e287d8e277e8e277f8e27808e26818e"
    "26828e26828e25838e25848e25858e24868e24878e23888e23898e238a8d228b8d228c8d228d8d218e8d218f8d21908d"
    "21918c20928c20928c20938c1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a1e9c891e9d891f9e891f9f88"
    "1fa0881fa1881fa1871fa28720a38620a48621a58521a68522a78522a88423a98324aa8325ab8225ac8226ad8127ad81"
    "28ae8029af7f2ab07f2cb17e2db27d2eb37c2fb47c31b57b32b67a34b67935b77937b87838b9773aba763bbb753dbc74"
    "3fbc7340bd7242be7144bf7046c06f48c16e4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8645cc863"
    "5ec96260ca6063cb5f65cb5e67cc5c69cd5b6ccd5a6ece5870cf5773d05675d05477d1537ad1517cd2507fd34e81d34d"
    "84d44b86d54989d5488bd6468ed64590d74393d74195d84098d83e9bd93c9dd93ba0da39a2da37a5db36a8db34aadc32"
    "addc30b0dd2fb2dd2db5de2bb8de29bade28bddf26c0df25c2df23c5e021c8e020cae11fcde11dd0e11cd2e21bd5e21a"
    "d8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51befe51cf1e51df4e61ef6e620f8e621fbe723fde725"
), dtype=np.uint8).reshape(256, 3)


def heat_rgb(loss: np.ndarray, vmax: float) -> np.ndarray:
    """Squared-difference map -> uint8 RGB in viridis on the scale [0, vmax] (NaN shown black);
    colours picked as matplotlib's colormap picks them (entry floor(256 v), the last for v = 1)."""
    v = np.clip(np.nan_to_num(loss, nan=0.0) / vmax, 0, 1)
    rgb = VIRIDIS_RGB8[np.minimum((v * 256).astype(np.int64), 255)]
    rgb[~np.isfinite(loss)] = 0
    return rgb


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
        # Grey panels as grey PNGs: a third of the bytes to compress (a hand's 84 PNGs: 0.85 -> 0.59 s).
        write_png(path, rgb[..., 0] if panel in GREY_PANELS else rgb)
        paths.append(path)
    return paths


GREY_PANELS = ("fixed", "moving", "warped", "checkerboard")


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
