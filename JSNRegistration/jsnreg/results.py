"""The measurement of one joint: the numbers every face shows and the images behind them.

Conventions (docs in the README): jsn_px = dy_upper - dy_lower, positive = the joint space is
narrower at follow-up; lateral shift = dx_upper - dx_lower (px); relative rotation =
dtheta_upper - dtheta_lower (rad); MSE on intensities scaled to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .joints import placed_text
from .transforms import BoneMotion

BONES = ("upper", "lower")


@dataclass
class JointImages:
    """ROI images of one joint, all on the fixed ROI grid, intensities in [0, 1].

    warped_upper / warped_lower: the moving ROI resampled by that bone's transform over that bone's
    region (NaN elsewhere, and where the transform maps outside the moving ROI).
    """

    fixed: np.ndarray
    moving: np.ndarray
    upper_mask: np.ndarray  # bool, True = upper bone region
    warped_upper: np.ndarray
    warped_lower: np.ndarray

    def warped(self) -> np.ndarray:
        """Moving ROI registered per bone: each region taken from its own bone's warp."""
        return np.where(self.upper_mask, self.warped_upper, self.warped_lower)

    def loss_before(self) -> np.ndarray:
        """Per-pixel squared difference fixed vs moving before registration."""
        return (self.moving - self.fixed) ** 2

    def loss_after(self) -> np.ndarray:
        """Per-pixel squared difference fixed vs registered moving (NaN outside the moving ROI)."""
        return (self.warped() - self.fixed) ** 2

    def bone_mask(self, bone: str) -> np.ndarray:
        return self.upper_mask if bone == "upper" else ~self.upper_mask

    def loss_map(self, bone: str, after: bool) -> np.ndarray:
        """One bone's squared-difference map (NaN outside that bone's region)."""
        loss = self.loss_after() if after else self.loss_before()
        return np.where(self.bone_mask(bone), loss, np.nan)

    def checkerboard(self, tile_px: int = 16) -> np.ndarray:
        """Fixed and registered moving in alternating square tiles."""
        rows, cols = self.fixed.shape
        y, x = np.mgrid[0:rows, 0:cols]
        tiles = ((y // tile_px) + (x // tile_px)) % 2 == 1
        warped = np.nan_to_num(self.warped(), nan=0.0)
        return np.where(tiles, warped, self.fixed)


class BonePairMeasures:
    """The joint's numbers from its two bones' motions (fields upper, lower, spacing_mm)."""

    upper: BoneMotion
    lower: BoneMotion
    spacing_mm: float

    @property
    def jsn_px(self) -> float:
        return self.upper.dy_px - self.lower.dy_px

    @property
    def jsn_mm(self) -> float:
        return self.jsn_px * self.spacing_mm

    @property
    def lateral_shift_px(self) -> float:
        return self.upper.dx_px - self.lower.dx_px

    @property
    def lateral_shift_mm(self) -> float:
        return self.lateral_shift_px * self.spacing_mm

    @property
    def relative_rotation_rad(self) -> float:
        return self.upper.dtheta_rad - self.lower.dtheta_rad


@dataclass
class JointResult(BonePairMeasures):
    """Registration result of one joint (pixel quantities in pixels of the fixed ROI)."""

    name: str
    spacing_mm: float
    upper: BoneMotion
    lower: BoneMotion
    mse_before: float
    mse_after: float
    confidence: float
    flagged: bool
    flag_reason: str = ""
    # Where the ROI was cut (whole-radiograph runs): centre (x, y) px and angle in each image.
    position: dict = field(default_factory=dict)
    # Diagnostics of the estimate: network-alone motions, predicted SD, etc. (JSON-able).
    details: dict = field(default_factory=dict)
    images: JointImages | None = None
    # register.FirstPass of the measurement (kept in memory only, for measuring the joint again: quantify's
    # second pass with the hand's magnification); never written out.
    first_pass: object | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """JSON form (no images): the CLI's `roi --json` keys plus the joint's extras."""
        return {
            "name": self.name,
            "jsn_mm": self.jsn_mm,
            "jsn_px": self.jsn_px,
            "spacing_mm": self.spacing_mm,
            "upper": self.upper.to_dict(),
            "lower": self.lower.to_dict(),
            "lateral_shift_px": self.lateral_shift_px,
            "lateral_shift_mm": self.lateral_shift_mm,
            "relative_rotation_rad": self.relative_rotation_rad,
            "mse_before": self.mse_before,
            "mse_after": self.mse_after,
            "confidence": self.confidence,
            "flagged": self.flagged,
            "flag_reason": self.flag_reason,
            "position": self.position,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "JointResult":
        return cls(
            name=d.get("name", ""),
            spacing_mm=float(d["spacing_mm"]),
            upper=BoneMotion.from_dict(d["upper"]),
            lower=BoneMotion.from_dict(d["lower"]),
            mse_before=float(d["mse_before"]),
            mse_after=float(d["mse_after"]),
            confidence=float(d["confidence"]),
            flagged=bool(d["flagged"]),
            flag_reason=d.get("flag_reason", ""),
            position=d.get("position", {}),
            details=d.get("details", {}),
        )

    def table_row(self) -> dict:
        """The per-joint table every face shows (units in the keys)."""
        return {
            "joint": self.name,
            "jsn_mm": self.jsn_mm,
            "lateral_shift_mm": self.lateral_shift_mm,
            "relative_rotation_deg": float(np.degrees(self.relative_rotation_rad)),
            "mse_before": self.mse_before,
            "mse_after": self.mse_after,
            "confidence": self.confidence,
            "flagged": self.flagged,
            "flag_reason": self.flag_reason,
            "placed": self.placed(),
        }

    def placed(self) -> str:
        """How the joint was placed (joints.placed_text; results without that record: manual)."""
        p = self.position
        return placed_text(p.get("source", "manual"), bool(p.get("moved")), p.get("detect_confidence"))
