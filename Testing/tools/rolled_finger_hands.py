"""Study: whole real hands with one finger rolled between the visits, measured by quantify with and without its
second pass (the hand's magnification held along each joint's ROI).

Each annotated real hand of SPLIT: before the film is repositioned (repositioned_hands.follow_up), finger DIGIT
of the follow-up is squeezed across its axis by FACTOR (its bones and soft tissue narrower or wider, as a
finger turned about its long axis projects them; the axis from MCP to DIP, the band tapering to the untouched
film between 1.1 and 1.5 half widths from the axis, before the MCP and beyond the tip). No joint moves: every true JSN is 0. Per split:
JSN error RMS, mean, SD and max (px) of the rolled finger's joints and of the others, their flags, one pass and two.

    PYTHONPATH=JSNRegistration python Testing/tools/rolled_finger_hands.py SPLIT FACTOR [--digit 3] [--seed 0]
"""
import argparse

import numpy as np
from scipy import ndimage

from jsnreg import quantify as q
from jsnreg.register import Engine
from repositioned_hands import hands, measured


def _taper(t: np.ndarray, inner: float, outer: float) -> np.ndarray:
    """1 within inner, 0 beyond outer, a cosine between (of |t|)."""
    u = np.clip((np.abs(t) - inner) / (outer - inner), 0, 1)
    return 0.5 * (1 + np.cos(np.pi * u))


def rolled(pixels: np.ndarray, joints: dict, digit: int, factor: float) -> np.ndarray:
    """The film with finger `digit` squeezed across its axis by `factor` (widths x factor), smoothly."""
    mcp, dip = (np.asarray(joints[f"{k}{digit}"], float) for k in ("MCP", "DIP"))
    length = float(np.linalg.norm(dip - mcp))
    t = (dip - mcp) / length
    n = np.array([-t[1], t[0]])
    width = 0.14 * length  # a finger's half width, about a seventh of MCP-to-DIP
    y, x = np.mgrid[0:pixels.shape[0], 0:pixels.shape[1]].astype(np.float64)
    along = (x - mcp[0]) * t[0] + (y - mcp[1]) * t[1]
    across = (x - mcp[0]) * n[0] + (y - mcp[1]) * n[1]
    # the band: the finger from before its MCP to beyond its tip, its width, tapering before its neighbours
    weight = _taper(across, 1.1 * width, 1.5 * width) * _taper(along - 0.6 * length, 0.9 * length, 1.2 * length)
    source_across = across * (1 + weight * (1 / factor - 1))  # out(p) = in(p with across / factor)
    sx = mcp[0] + along * t[0] + source_across * n[0]
    sy = mcp[1] + along * t[1] + source_across * n[1]
    return ndimage.map_coordinates(pixels.astype(np.float64), [sy, sx], order=3, mode="nearest").astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("split", choices=("train", "val", "test"))
    p.add_argument("factor", type=float)
    p.add_argument("--digit", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    engine = Engine.load()
    finger = {f"MCP{args.digit}", f"PIP{args.digit}", f"DIP{args.digit}"}
    rows = {label: [] for label in ("one pass", "two passes")}
    # a hand without the finger's three joints annotated keeps its film (and is not counted)
    film = lambda pixels, entry: (rolled(pixels, entry["joints"], args.digit, args.factor)  # noqa: E731
                                  if finger <= set(entry["joints"]) else pixels)
    for _, entry, base, follow, joints in hands(args.split, args.seed, film):
        if not finger <= set(entry["joints"]):
            continue
        for label, settings in (("one pass", q.Settings(hand_magnification=False)), ("two passes", q.Settings())):
            rows[label] += [(r.name in finger, r.jsn_mm / base.spacing_mm, r.flagged)
                            for r in measured(base, follow, joints, engine, [], settings)]
    for label, got in rows.items():
        cells = []
        for name, mine in (("rolled finger", True), ("other joints", False)):
            e = np.array([err for f, err, _ in got if f == mine])
            fl = np.array([flag for f, _, flag in got if f == mine])
            cells.append(f"{name} n {len(e)}: RMS {np.sqrt(np.mean(e ** 2)):.3f} px (mean {e.mean():+.3f}, SD "
                         f"{e.std(ddof=1):.3f}), max {np.abs(e).max():.2f}, beyond 0.5 px "
                         f"{(np.abs(e) > 0.5).sum()} ({(~fl & (np.abs(e) > 0.5)).sum()} unflagged), flagged {fl.mean():.0%}")
        print(f"{args.split} factor {args.factor:g} digit {args.digit} {label:10s}: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
