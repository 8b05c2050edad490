"""What the Dask workers run: each reads its own images (the client only passes paths).

Every function takes and returns plain JSON-able values, so a task pickles small and a result
can go straight into the store.
"""

from __future__ import annotations

import functools
import os
import socket
import time

from ..errors import InputError
from ..network import file_sha256, model_sha256

NO_DETECTION = "no joints given (detection not available)"


@functools.lru_cache(maxsize=1)
def model_hash() -> str:
    """SHA-256 of the network (both stages) this process loads (once per process)."""
    return model_sha256()


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def scan_image(path: str, spacing_given: float | None) -> dict:
    """Hash the file and check that it reads as a radiograph with a pixel spacing."""
    from ..images import read_radiograph

    out = {"sha256": "", "spacing_mm": None, "status": "ok"}
    if not os.path.isfile(path):
        out["status"] = "missing image: no such file"
        return out
    try:
        out["sha256"] = file_sha256(path)
        image = read_radiograph(path, spacing_mm=spacing_given, require_spacing=False)
    except (InputError, OSError, RuntimeError, ValueError) as exc:
        out["status"] = f"unreadable image: {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}"
        return out
    if image.spacing_mm is None:
        out["status"] = "no pixel spacing (none in the file; give spacing_mm in the manifest)"
    out["spacing_mm"] = image.spacing_mm
    return out


def detect(path: str, spacing_given: float | None) -> dict:
    """Joints found on a baseline without a joints file: {"joints": [...]} or {"error": why}."""
    try:
        from ..detect import detect_joints
    except ImportError:
        return {"error": NO_DETECTION}
    from ..images import read_radiograph

    try:
        image = read_radiograph(path, spacing_mm=spacing_given)
        found = detect_joints(image.pixels, image.spacing_mm)
    except InputError as exc:
        return {"error": f"joint detection: {exc}"}
    if not found:
        return {"error": "joint detection found no joints"}
    return {"joints": [{"name": j.name, "x": float(j.x), "y": float(j.y), "confidence": float(j.confidence)}
                       for j in found]}


def _native_xy(xy, from_spacing_mm: float, to_spacing_mm: float) -> tuple[float, float]:
    """A follow-up position found at the baseline's spacing, in the follow-up file's own pixels
    (images.match_spacing keeps the field of view, pixel centres at (i + 0.5) * step - 0.5)."""
    step = from_spacing_mm / to_spacing_mm
    return tuple((float(c) + 0.5) * step - 0.5 for c in xy)


def _joint_row(result, from_spacing_mm: float, to_spacing_mm: float) -> dict:
    d = result.to_dict()
    d["details"].pop("split_rows", None)  # a column per pixel: rebuilt on demand, not stored
    sd_px = result.details.get("sd_jsn_px")
    sd_mm = sd_px * result.spacing_mm if sd_px is not None and sd_px != float("inf") else None
    to_x, to_y = _native_xy(result.position["followup_xy"], from_spacing_mm, to_spacing_mm)
    return {"joint": result.name, "status": "ok", "jsn_mm": result.jsn_mm, "sd_mm": sd_mm,
            "confidence": result.confidence, "flagged": int(result.flagged), "flag_reason": result.flag_reason,
            "to_x": to_x, "to_y": to_y, "result": d}


def measure_pair(task: dict) -> dict:
    """Register one pair of visits at its joints with the core pipeline (quantify).

    task: from_image, to_image, from_spacing_given, to_spacing_given, joints [{name, x, y}] on the
    from-visit, settings (quantify.Settings fields), from_sha256 / to_sha256 as planned.
    Returns {"rows": [...per joint...], "from_sha256", "to_sha256", "model_hash", "worker"}; a
    joint the pipeline refuses gets status "failed: why", the others are still measured.
    """
    from ..images import read_radiograph
    from ..joints import JointSpec
    from ..quantify import Settings, quantify
    from ..register import Engine

    t0, cpu0 = time.perf_counter(), time.process_time()
    out = {"from_sha256": file_sha256(task["from_image"]), "to_sha256": file_sha256(task["to_image"]),
           "model_hash": model_hash(), "worker": _worker(), "rows": []}
    if (out["from_sha256"], out["to_sha256"]) != (task["from_sha256"], task["to_sha256"]):
        out["changed"] = True  # an image changed since it was scanned: nothing measured, the next run rescans
        return out
    settings = Settings(**task["settings"])
    engine = Engine.load()  # loaded once per worker process (default_network is cached)
    try:
        base = read_radiograph(task["from_image"], spacing_mm=task["from_spacing_given"])
        follow = read_radiograph(task["to_image"], spacing_mm=task["to_spacing_given"])
    except InputError as exc:
        out["rows"] = [{"joint": j["name"], "status": f"failed: {exc}"} for j in task["joints"]]
        return out
    # Detected joints carry their detection's confidence; a joints file's are manual.
    specs = [JointSpec(j["name"], j["x"], j["y"], source="detected" if "confidence" in j else "manual",
                       detect_confidence=j.get("confidence")) for j in task["joints"]]
    left_out = []  # joints whose ROIs cannot be cut: failed, the others measured in the same call
    try:
        results = quantify(base, follow, specs, settings, engine=engine, left_out=left_out)
    except InputError:
        results = None  # refused otherwise (or every joint): measure each alone to tell which
    if results is not None:
        rows = {r.name: _joint_row(r, base.spacing_mm, follow.spacing_mm) for r in results}
        why = {item["joint"]: item["reason"] for item in left_out}
        out["rows"] = [rows.get(s.name) or {"joint": s.name, "status": f"failed: {why[s.name]}"} for s in specs]
    else:
        for spec in specs:
            try:
                (r,) = quantify(base, follow, [spec], settings, engine=engine)
                out["rows"].append(_joint_row(r, base.spacing_mm, follow.spacing_mm))
            except InputError as exc:
                out["rows"].append({"joint": spec.name, "status": f"failed: {exc}"})
    # Per joint: wall time, and the process's CPU time (what a core of its own would take).
    seconds = (time.perf_counter() - t0) / max(len(specs), 1)
    cpu = (time.process_time() - cpu0) / max(len(specs), 1)
    for row in out["rows"]:
        row["seconds"], row["cpu_seconds"] = seconds, cpu
    return out


def noop(k: int) -> int:
    """An empty task: the benchmark's measure of the scheduler's overhead per task."""
    return k
