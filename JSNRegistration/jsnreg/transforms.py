"""Per-bone similarity transform, FIXED -> MOVING, about the joint centre.

Coordinates are (x, y) = (column, row) in pixels of the ROI, rows growing downwards.
A fixed-image point p maps to the moving-image point

    q = c + scale * R(dtheta) @ (p - c) + (dx, dy),     R(t) = [[cos t, -sin t], [sin t, cos t]]

with c the ROI centre ((W - 1) / 2, (H - 1) / 2), the joint centre. So (dx, dy) is exactly the
displacement of the joint centre (dy > 0: the bone appears lower in the follow-up) and scale or
rotation cannot leak into it. With y pointing down, a positive dtheta turns clockwise on screen.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class BoneMotion:
    """One bone's rigid motion plus isotropic scale (dx_px, dy_px in pixels of the ROI)."""

    scale: float = 1.0
    dtheta_rad: float = 0.0
    dx_px: float = 0.0
    dy_px: float = 0.0

    def to_dict(self) -> dict:
        """JSON form with the CLI's short keys: dx, dy (px), dtheta (rad), scale."""
        return {"dx": self.dx_px, "dy": self.dy_px, "dtheta": self.dtheta_rad, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict) -> "BoneMotion":
        return cls(scale=float(d["scale"]), dtheta_rad=float(d["dtheta"]),
                   dx_px=float(d["dx"]), dy_px=float(d["dy"]))

    def as_tuple(self) -> tuple[float, float, float, float]:
        return tuple(asdict(self).values())


IDENTITY = BoneMotion()


def roi_centre(shape: tuple[int, int]) -> tuple[float, float]:
    """Joint centre (x, y) in pixels of an ROI of the given (rows, cols) shape."""
    rows, cols = shape[:2]
    return (cols - 1) / 2.0, (rows - 1) / 2.0


def matrix(motion: BoneMotion, centre_xy: tuple[float, float]) -> np.ndarray:
    """3x3 homogeneous matrix acting on (x, y, 1): fixed point -> moving point."""
    c, s = np.cos(motion.dtheta_rad), np.sin(motion.dtheta_rad)
    a = motion.scale * np.array([[c, -s], [s, c]])
    centre = np.asarray(centre_xy, dtype=float)
    m = np.eye(3)
    m[:2, :2] = a
    m[:2, 2] = centre - a @ centre + (motion.dx_px, motion.dy_px)
    return m


def from_matrix(m: np.ndarray, centre_xy: tuple[float, float]) -> BoneMotion:
    """Inverse of `matrix` for a similarity matrix (the rotation-scale part is projected)."""
    a = m[:2, :2]
    scale = float(np.sqrt(abs(np.linalg.det(a))))
    dtheta = float(np.arctan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1]))
    centre = np.asarray(centre_xy, dtype=float)
    shift = a @ centre + m[:2, 2] - centre
    return BoneMotion(scale, dtheta, float(shift[0]), float(shift[1]))


def inverse(motion: BoneMotion, shape: tuple[int, int]) -> BoneMotion:
    """The moving -> fixed motion of a fixed -> moving one (both about the ROI centre)."""
    c = roi_centre(shape)
    return from_matrix(np.linalg.inv(matrix(motion, c)), c)


def compose(first: BoneMotion, then: BoneMotion) -> BoneMotion:
    """A -> C from A -> B (`first`) and B -> C (`then`), all about the same centre (which one does
    not matter): scales multiply, rotations add, and `then` turns and scales `first`'s shift. In
    closed form, a twentieth of the time of the matrix product (the network composes 16 a joint)."""
    c, s, k = math.cos(then.dtheta_rad), math.sin(then.dtheta_rad), then.scale
    return BoneMotion(first.scale * k, math.remainder(first.dtheta_rad + then.dtheta_rad, 2 * math.pi),
                      k * (c * first.dx_px - s * first.dy_px) + then.dx_px,
                      k * (s * first.dx_px + c * first.dy_px) + then.dy_px)


def map_points(motion: BoneMotion, xy: np.ndarray, centre_xy: tuple[float, float]) -> np.ndarray:
    """Map fixed-image points (N, 2) in (x, y) to the moving image."""
    m = matrix(motion, centre_xy)
    xy = np.asarray(xy, dtype=float)
    return xy @ m[:2, :2].T + m[:2, 2]


def linear_reader(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]):
    """Bilinear reads at (x, y) px of any image of `shape`, edge values beyond it (as
    map_coordinates order 1, mode "nearest"): the weights are made once for the several images
    read at the same points (refinement: each iteration), at a third of the time."""
    rows, cols = shape
    x, y = np.clip(x, 0, cols - 1), np.clip(y, 0, rows - 1)
    x0, y0 = np.minimum(x.astype(np.intp), cols - 2), np.minimum(y.astype(np.intp), rows - 2)
    fx, fy = x - x0, y - y0
    gx, gy = 1 - fx, 1 - fy
    i = y0 * cols + x0
    corners = (i, i + 1, i + cols, i + cols + 1)  # flat indices, made once for all the reads
    w = (gx * gy, fx * gy, gx * fy, fx * fy)

    def read(image: np.ndarray) -> np.ndarray:
        f = image.ravel()  # take: the same values as f[i], a fifth faster
        return (w[0] * f.take(corners[0]) + w[1] * f.take(corners[1]) + w[2] * f.take(corners[2])
                + w[3] * f.take(corners[3]))
    return read


def sample(image: np.ndarray, x: np.ndarray, y: np.ndarray, order: int = 3,
           cval: float = np.nan) -> np.ndarray:
    """Interpolate `image` at (x, y) pixel positions; cubic B-spline by default.

    Positions outside the image (beyond its first and last pixel centres) get `cval`; the
    interpolation itself mirrors at the border so no fill value leaks into inside samples.
    """
    image = np.asarray(image, dtype=np.float64)
    out = ndimage.map_coordinates(image, [y, x], order=order, mode="mirror")
    rows, cols = image.shape
    outside = (x < 0) | (x > cols - 1) | (y < 0) | (y > rows - 1)
    out[outside] = cval
    return out


def _resample(image: np.ndarray, m: np.ndarray, order: int, cval: float, where: np.ndarray | None) -> np.ndarray:
    """out(p) = image(m p) on the image's own grid (m a 3x3 matrix acting on (x, y, 1)); `cval`
    where m p falls outside, and where `where` (a boolean mask of the grid, if given) is False."""
    rows, cols = image.shape
    y, x = np.nonzero(np.ones((rows, cols), bool) if where is None else where)
    q = np.stack([x, y], axis=1).astype(np.float64) @ m[:2, :2].T + m[:2, 2]
    out = np.full((rows, cols), cval, dtype=np.float64)
    out[y, x] = sample(image, q[:, 0], q[:, 1], order=order, cval=cval)
    return out


def warp_to_fixed(moving: np.ndarray, motion: BoneMotion, order: int = 3,
                  cval: float = np.nan, where: np.ndarray | None = None) -> np.ndarray:
    """Resample `moving` onto the fixed grid: out(p) = moving(T(p)); `cval` where T(p) falls
    outside, and where `where` (a boolean mask of the fixed grid, if given) is False."""
    return _resample(moving, matrix(motion, roi_centre(moving.shape)), order, cval, where)


def warp_to_moving(fixed: np.ndarray, motion: BoneMotion, order: int = 3,
                   cval: float = np.nan, where: np.ndarray | None = None) -> np.ndarray:
    """Render what a fixed-frame image looks like after the motion: out(q) = fixed(T^-1(q));
    `cval` where T^-1(q) falls outside, and where `where` (a boolean mask of the moving grid, if
    given) is False."""
    return _resample(fixed, np.linalg.inv(matrix(motion, roi_centre(fixed.shape))), order, cval, where)
