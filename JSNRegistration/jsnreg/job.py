"""One measurement run as a JSON request -> files in a folder: the protocol every face shares.

The viewer calls `run` in a thread; Slicer runs `python -m jsnreg.worker request.json` as a
subprocess. Request (JSON-able):

    {"baseline": path, "followup": path, "spacing_mm": null | mm (for files without spacing),
     "joints": [{"name", "x", "y", optional "followup_x", "followup_y"}],   # baseline px, x = column
     "settings": {"roi_mm": 22.0, "refine": true}, "out_dir": path}

Output in out_dir: result.json ({"results": [JointResult.to_dict()], "spacing_mm", ...}) and
arrays.npz (per joint "<name>/<array>" for ARRAY_NAMES). Both are replaced atomically, and both
carry the same run_id, so a reader never mixes two runs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from . import validate
from .errors import InputError
from .joints import joints_from_entries, joints_to_json
from .results import JointImages, JointResult

RESULT_FILE = "result.json"
ARRAYS_FILE = "arrays.npz"
IMAGE_FIELDS = ("fixed", "moving", "upper_mask", "warped_upper", "warped_lower")
# The derived loss maps are stored too, for readers without our code.
ARRAY_NAMES = IMAGE_FIELDS + ("loss_before", "loss_after")
REQUEST_KEYS = {"baseline", "followup", "spacing_mm", "joints", "settings", "out_dir"}


def _number(value, what: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{what} must be a number, got {value!r}")
    if positive and value <= 0:
        raise InputError(f"{what} must be positive, got {value!r}")
    return float(value)


def _existing_file(request: dict, key: str) -> Path:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise InputError(f"request: '{key}' must be the path of a radiograph")
    path = Path(value)
    if not path.is_file():
        raise InputError(f"{key} radiograph not found: {path}")
    return path


def parse_settings(values):
    """The request's settings as quantify.Settings; unknown keys are refused, not ignored."""
    from .quantify import Settings

    values = {} if values is None else values
    if not isinstance(values, dict):
        raise InputError("request: 'settings' must be an object like {\"roi_mm\": 22.0, \"refine\": true}")
    known = set(Settings().to_dict())
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    settings = Settings(**values)
    settings.roi_mm = validate.roi_mm(_number(settings.roi_mm, "settings.roi_mm (mm)", positive=True),
                                      "settings.roi_mm")
    if not isinstance(settings.refine, bool):
        raise InputError(f"settings.refine must be true or false, got {settings.refine!r}")
    return settings


def parse_request(request) -> dict:
    """Checked request: paths, spacing_mm, JointSpecs and Settings; InputError with the reason."""
    if not isinstance(request, dict):
        raise InputError("the request must be a JSON object")
    unknown = sorted(set(request) - REQUEST_KEYS)
    if unknown:
        raise InputError(f"unknown request key(s) {', '.join(unknown)}; known: {', '.join(sorted(REQUEST_KEYS))}")
    baseline, followup = _existing_file(request, "baseline"), _existing_file(request, "followup")
    spacing = request.get("spacing_mm")
    out_dir = request.get("out_dir")
    if not isinstance(out_dir, str) or not out_dir:
        raise InputError("request: 'out_dir' must be the path of the output folder")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise InputError(f"out_dir {out_dir} exists and is not a folder")
    return {
        "baseline": baseline,
        "followup": followup,
        "spacing_mm": None if spacing is None else validate.spacing_mm(_number(spacing, "spacing_mm"), "spacing_mm"),
        "joints": joints_from_entries(request.get("joints")),
        "settings": parse_settings(request.get("settings")),
        "out_dir": Path(out_dir),
    }


def run(request: dict, on_progress: Callable[[int, int, str], None] | None = None,
        should_cancel: Callable[[], bool] | None = None, workers: int = 1) -> dict:
    """Measure the request's joints and write result.json + arrays.npz; returns result.json's content.

    workers > 1 measures the joints in forked processes (quantify's `workers`): for a process of
    its own, as `python -m jsnreg.worker`, never for a GUI's thread.

    Raises InputError for a bad request or image, quantify.Cancelled when should_cancel() turns true
    (checked between joints; nothing is written then).
    """
    from . import __version__
    from .images import read_radiograph
    from .network import model_info
    from .quantify import quantify

    req = parse_request(request)
    baseline = read_radiograph(req["baseline"], spacing_mm=req["spacing_mm"])
    followup = read_radiograph(req["followup"], spacing_mm=req["spacing_mm"])
    results = quantify(baseline, followup, req["joints"], req["settings"],
                       on_progress=on_progress, should_cancel=should_cancel, workers=workers)
    summary = {
        "run_id": uuid.uuid4().hex,
        "results": [r.to_dict() for r in results],
        "spacing_mm": baseline.spacing_mm,
        "spacing_mm_given": req["spacing_mm"],
        "baseline": str(req["baseline"]),
        "followup": str(req["followup"]),
        "joints": joints_to_json(req["joints"])["joints"],
        "settings": req["settings"].to_dict(),
        "model": model_info(),
        "version": __version__,
    }
    write_result(req["out_dir"], summary, results)
    return summary


def _atomic_write(path: Path, write: Callable) -> None:
    """Write through a temporary file in the same folder, then rename over `path`."""
    from .outputs import file_mode

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, file_mode())  # the temporary file is owner-only; the result follows the umask
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def joint_arrays(result: JointResult) -> dict[str, np.ndarray]:
    """A result's images as "<joint>/<array>" -> array."""
    images = result.images
    if images is None:
        raise ValueError(f"result {result.name} carries no images")
    arrays = {name: getattr(images, name) for name in IMAGE_FIELDS}
    arrays["loss_before"] = images.loss_before()
    arrays["loss_after"] = images.loss_after()
    return {f"{result.name}/{k}": np.asarray(v) for k, v in arrays.items()}


def write_result(out_dir: Path, summary: dict, results: list[JointResult]) -> None:
    """arrays.npz first, result.json last: result.json present = a complete run."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = {"run_id": np.array(summary["run_id"])}
    for r in results:
        arrays.update(joint_arrays(r))
    _atomic_write(out_dir / ARRAYS_FILE, lambda f: np.savez_compressed(f, **arrays))
    text = json.dumps(summary, indent=1, allow_nan=True).encode("utf-8")
    _atomic_write(out_dir / RESULT_FILE, lambda f: f.write(text))


def read_summary(out_dir) -> dict:
    """result.json of a finished run (InputError when there is none)."""
    path = Path(out_dir) / RESULT_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no finished run in {out_dir} ({RESULT_FILE} missing)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None


def load_result(out_dir) -> list[JointResult]:
    """The run's JointResults, each with its images (JointImages) back from arrays.npz."""
    summary = read_summary(out_dir)
    path = Path(out_dir) / ARRAYS_FILE
    try:
        with np.load(path) as npz:
            if str(npz["run_id"]) != summary["run_id"]:
                raise InputError(f"{path} belongs to another run than {RESULT_FILE}: run again")
            results = []
            for d in summary["results"]:
                r = JointResult.from_dict(d)
                fields = {k: npz[f"{r.name}/{k}"] for k in IMAGE_FIELDS}
                fields["upper_mask"] = fields["upper_mask"].astype(bool)
                r.images = JointImages(**fields)
                results.append(r)
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    return results


def session_from_run(out_dir):
    """The finished run as a jsnreg.session.Session (radiographs read again), e.g. for a report."""
    from .images import read_radiograph
    from .session import Session

    summary = read_summary(out_dir)
    results = load_result(out_dir)
    given = summary.get("spacing_mm_given")
    baseline = read_radiograph(summary["baseline"], spacing_mm=given)
    followup = read_radiograph(summary["followup"], spacing_mm=given)
    return Session.from_run(summary["baseline"], summary["followup"], baseline, followup,
                            joints_from_entries(summary["joints"]), summary["settings"], results,
                            model=summary["model"])
