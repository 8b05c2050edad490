"""Names of the hand joints and the joint positions a user gives."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from . import validate
from .errors import InputError

# Every joint a user may pick, thumb first, in the order a reader scans a hand.
STANDARD_JOINTS = (
    "IP1", "MCP1", "MCP2", "MCP3", "MCP4", "MCP5",
    "PIP2", "PIP3", "PIP4", "PIP5",
    "DIP2", "DIP3", "DIP4", "DIP5",
)
# The ten joints of the published work: the default set (DIPs stay available).
DEFAULT_JOINTS = STANDARD_JOINTS[:10]
JOINT_SOURCES = ("manual", "detected")
# A detected joint less likely than not within 2 mm of its joint (jsnreg.detect_confidence): its
# measurement is flagged until a user looks at its place (an ROI off the joint may take a physis).
DOUBTFUL_DETECTION = 0.5


@dataclass
class JointSpec:
    """A joint to measure: its name and centre (x = column, y = row, px) on the baseline.

    followup_xy, when given, overrides the automatic search for the joint in the follow-up.
    source: "detected" (placed by jsnreg.detect) or "manual" (placed by a user);
    moved: a detected joint the user then moved;
    detect_confidence: a detected joint's P(within 2 mm and named right), None when not detected.
    """

    name: str
    x: float
    y: float
    followup_xy: tuple[float, float] | None = None
    source: str = "manual"
    moved: bool = False
    detect_confidence: float | None = None

    def placed(self) -> str:
        """How the joint was placed, as the reports and tables say it (placed_text)."""
        return placed_text(self.source, self.moved, self.detect_confidence)

    def placement_doubt(self) -> str:
        """Why to look at where the joint is before trusting its measurement ("" when there is no doubt):
        a detected joint left where the detector put it with a confidence below DOUBTFUL_DETECTION."""
        if self.source != "detected" or self.moved or self.detect_confidence is None:
            return ""
        if self.detect_confidence >= DOUBTFUL_DETECTION:
            return ""
        return (f"placement: detected with confidence {self.detect_confidence:.2f}, "
                f"below {DOUBTFUL_DETECTION:.2f}: check the joint's place")


def detected_joints(found) -> list[JointSpec]:
    """JointSpecs of joints jsnreg.detect found (DetectedJoint: name, x, y, confidence): source
    "detected", each with its detection's confidence."""
    return [JointSpec(d.name, float(d.x), float(d.y), source="detected", detect_confidence=float(d.confidence))
            for d in found]


def placed_text(source: str, moved: bool, detect_confidence: float | None = None) -> str:
    """How a joint was placed, as tables and reports say it: "manual", "detected, moved" (the user
    corrected it) or "detected 0.87" (where the detector put it, with its detection's confidence)."""
    if moved:
        return f"{source}, moved"
    if source == "detected" and detect_confidence is not None:
        return f"detected {detect_confidence:.2f}"
    return source


def next_joint_name(taken: list[str] | tuple[str, ...]) -> str:
    """The first standard joint not yet placed (default set first), for a click's default label."""
    for name in DEFAULT_JOINTS + STANDARD_JOINTS[10:]:
        if name not in taken:
            return name
    return f"J{len(taken) + 1}"


def parse_joint_arg(text: str) -> JointSpec:
    """Parse the CLI's NAME=X,Y (baseline pixels); InputError with the reason."""
    name, sep, xy = text.partition("=")
    parts = xy.split(",")
    if not sep or not name.strip() or len(parts) != 2:
        raise InputError(f"joint {validate.one_line(repr(text))[:60]} is not NAME=X,Y (e.g. PIP2=512,380)")
    x = validate.number(parts[0].strip() or None, f"joint {name.strip()[:40]!r}: X (px)")
    y = validate.number(parts[1].strip() or None, f"joint {name.strip()[:40]!r}: Y (px)")
    return JointSpec(validate.file_name_part(name.strip()), x, y)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{what} must be a number, got {validate.one_line(repr(value))[:60]}")
    return float(value)


def joints_from_entries(entries) -> list[JointSpec]:
    """JointSpecs from JSON entries [{name, x, y, optional followup_x, followup_y, source, moved,
    detect_confidence}];
    InputError names the bad entry."""
    if not isinstance(entries, list) or not entries:
        raise InputError("'joints' must be a non-empty list of {name, x, y}")
    specs = []
    for k, e in enumerate(entries):
        if not isinstance(e, dict):
            raise InputError(f"joint #{k + 1} must be an object with name, x, y")
        name = e.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"joint #{k + 1}: name must be a non-empty text, got "
                             f"{validate.one_line(repr(name))[:60]}")
        name = validate.file_name_part(name.strip(), f"joint #{k + 1}: name")
        x = _number(e.get("x"), f"joint {name}: x (px)")
        y = _number(e.get("y"), f"joint {name}: y (px)")
        if ("followup_x" in e) != ("followup_y" in e):
            raise InputError(f"joint {name}: give both followup_x and followup_y, or neither")
        follow = None
        if "followup_x" in e:
            follow = (_number(e["followup_x"], f"joint {name}: followup_x (px)"),
                      _number(e["followup_y"], f"joint {name}: followup_y (px)"))
        source = e.get("source", "manual")
        if source not in JOINT_SOURCES:
            raise InputError(f"joint {name}: source must be one of {', '.join(JOINT_SOURCES)}, got {source!r}")
        moved = e.get("moved", False)
        if not isinstance(moved, bool):
            raise InputError(f"joint {name}: moved must be true or false, got {moved!r}")
        confidence = e.get("detect_confidence")
        if confidence is not None:
            confidence = validate.number(confidence, f"joint {name}: detect_confidence", 0.0, 1.0)
        specs.append(JointSpec(name.strip(), x, y, follow, source, moved, confidence))
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"joint names must be unique: {', '.join(repeated)} given more than once")
    return specs


def load_joints_json(path) -> list[JointSpec]:
    """Read a joints file: {"joints": [{"name", "x", "y", optional "followup_x", "followup_y"}]}."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"cannot read joints file {path}: {validate.one_line(exc)}") from None
    if not isinstance(data, dict):
        raise InputError(f"joints file {path} must hold {{\"joints\": [...]}}")
    return joints_from_entries(data.get("joints"))


def joints_to_json(specs: list[JointSpec]) -> dict:
    """The JSON form `load_joints_json` reads."""
    out = []
    for s in specs:
        e = {"name": s.name, "x": s.x, "y": s.y, "source": s.source, "moved": s.moved}
        if s.detect_confidence is not None:
            e["detect_confidence"] = s.detect_confidence
        if s.followup_xy is not None:
            e["followup_x"], e["followup_y"] = s.followup_xy
        out.append(e)
    return {"joints": out}
