"""Names of the hand joints and the joint positions a user gives."""

from __future__ import annotations

from dataclasses import dataclass

# Every joint a user may pick, thumb first, in the order a reader scans a hand.
STANDARD_JOINTS = (
    "IP1", "MCP1", "MCP2", "MCP3", "MCP4", "MCP5",
    "PIP2", "PIP3", "PIP4", "PIP5",
    "DIP2", "DIP3", "DIP4", "DIP5",
)
# The ten joints of the published work: the default set (DIPs stay available).
DEFAULT_JOINTS = STANDARD_JOINTS[:10]


@dataclass
class JointSpec:
    """A joint to measure: its name and centre (x = column, y = row, px) on the baseline.

    followup_xy, when given, overrides the automatic search for the joint in the follow-up.
    """

    name: str
    x: float
    y: float
    followup_xy: tuple[float, float] | None = None


def next_joint_name(taken: list[str] | tuple[str, ...]) -> str:
    """The first standard joint not yet placed (default set first), for a click's default label."""
    for name in DEFAULT_JOINTS + STANDARD_JOINTS[10:]:
        if name not in taken:
            return name
    return f"J{len(taken) + 1}"


def parse_joint_arg(text: str) -> JointSpec:
    """Parse the CLI's NAME=X,Y (baseline pixels); raises ValueError with the reason."""
    name, sep, xy = text.partition("=")
    parts = xy.split(",")
    if not sep or not name.strip() or len(parts) != 2:
        raise ValueError(f"joint '{text}' is not NAME=X,Y (e.g. PIP2=512,380)")
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"joint '{text}': X and Y must be numbers (pixels)") from None
    return JointSpec(name.strip(), x, y)


def load_joints_json(path) -> list[JointSpec]:
    """Read a joints file: {"joints": [{"name", "x", "y", optional "followup_x", "followup_y"}]}."""
    import json

    from .errors import InputError

    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)["joints"]
        specs = []
        for e in entries:
            follow = (float(e["followup_x"]), float(e["followup_y"])) if "followup_x" in e else None
            specs.append(JointSpec(str(e["name"]), float(e["x"]), float(e["y"]), follow))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read joints file {path}: {exc}") from None
    return specs


def joints_to_json(specs: list[JointSpec]) -> dict:
    """The JSON form `load_joints_json` reads."""
    out = []
    for s in specs:
        e = {"name": s.name, "x": s.x, "y": s.y}
        if s.followup_xy is not None:
            e["followup_x"], e["followup_y"] = s.followup_xy
        out.append(e)
    return {"joints": out}
