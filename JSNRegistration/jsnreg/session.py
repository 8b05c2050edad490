"""Sessions: one JSON file holding everything to reopen and audit a measurement.

A session records both radiographs (path relative to the session file where possible, SHA-256,
the DICOM meta the report header shows, spacing), the joints with the user's edits, the settings,
the software and model versions, and every joint's result. Reopening gives the same numbers
without registering again. An image that changed on disk or is missing is reported in
`Session.warnings` and marks the results stale: they are shown as recorded, never mixed with the
changed image.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .errors import InputError
from .images import _atomic_write
from .joints import JointSpec
from .network import file_sha256
from .results import JointImages, JointResult
from .split import rows_from_upper_mask, upper_mask_from_rows

SCHEMA = "jsnreg-session"
VERSION = 1
# DICOM meta the report header needs; the identifying ones are dropped by de-identification.
META_KEYS = ("patient_id", "patient_name", "patient_birth_date", "study_date", "laterality", "modality")
IDENTIFYING_META = ("patient_id", "patient_name", "patient_birth_date", "study_date")
VISITS = ("baseline", "followup")


def utc_now() -> str:
    """ISO 8601 UTC timestamp to the second, e.g. 2024-05-01T12:00:00Z."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_study_date(text: str) -> datetime.date | None:
    """A DICOM DA (YYYYMMDD) or ISO (YYYY-MM-DD) date; None when empty or unreadable."""
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return datetime.datetime.strptime(str(text).strip(), fmt).date()
        except ValueError:
            continue
    return None


@dataclass
class ImageRecord:
    """One radiograph as the session knows it.

    path: absolute in memory ("" when not recorded, e.g. a de-identified session); written
    relative to the session file where possible. spacing_mm: the spacing used (from the file, or
    given by the user when spacing_from_user).
    interval_days: set only by de-identification (days since the baseline study) so the
    interval between visits survives without the dates.
    """

    path: str
    sha256: str
    spacing_mm: float | None
    meta: dict = field(default_factory=dict)
    interval_days: int | None = None
    spacing_from_user: bool = False

    @classmethod
    def from_file(cls, path, spacing_mm: float | None, meta: dict) -> "ImageRecord":
        path = Path(path).resolve()
        if not path.is_file():
            raise InputError(f"image {path} not found: a session records existing files only")
        return cls(str(path), file_sha256(path), spacing_mm, {k: str(meta.get(k) or "") for k in META_KEYS},
                   spacing_from_user=meta.get("spacing_source") == "user")

    def read(self):
        """The radiograph as it was read for the measurement."""
        from .images import read_radiograph

        return read_radiograph(self.path, spacing_mm=self.spacing_mm if self.spacing_from_user else None)


@dataclass
class JointRecord:
    """A joint as placed: baseline and follow-up centres (x, y) px and which ones the user set.

    upper_mask: the user's upper-region mask on the baseline ROI (bool array), None = automatic split.
    source: "detected" (jsnreg.detect placed it) or "manual"; moved: a detected joint the user moved
    (sessions written before these fields load as manual, not moved).
    """

    name: str
    baseline_xy: tuple[float, float]
    followup_xy: tuple[float, float] | None = None
    baseline_set_by_user: bool = True
    followup_set_by_user: bool = False
    upper_mask: np.ndarray | None = None
    source: str = "manual"
    moved: bool = False

    def spec(self) -> JointSpec:
        """The joint to measure again: the follow-up position kept only when the user set it."""
        follow = self.followup_xy if self.followup_set_by_user else None
        return JointSpec(self.name, self.baseline_xy[0], self.baseline_xy[1], follow, self.source, self.moved)


@dataclass
class Session:
    """A measurement of two radiographs; see the module docstring.

    Not saved: warnings and stale (found on loading), path (the file it was loaded from or saved
    to), radiographs (the in-memory images of a run, so a report needs no re-reading).
    """

    baseline: ImageRecord
    followup: ImageRecord
    spacing_mm: float
    joints: list[JointRecord]
    settings: dict
    results: list[JointResult]
    software_version: str = __version__
    model: dict = field(default_factory=dict)
    created: str = field(default_factory=utc_now)
    modified: str = ""
    warnings: list[str] = field(default_factory=list)
    stale: bool = False
    path: str = ""
    radiographs: tuple | None = None

    def __post_init__(self):
        self.modified = self.modified or self.created

    @classmethod
    def from_run(cls, baseline_path, followup_path, baseline, followup, joints: list[JointSpec],
                 settings, results: list[JointResult], model: dict | None = None,
                 user_masks: dict[str, np.ndarray] | None = None) -> "Session":
        """A session from a finished run (Radiographs as read, the joints and results of `quantify`).

        model: the weights' identity (jsnreg.network.model_info() when None).
        user_masks: joint name -> the user's upper-region mask on that joint's baseline ROI.
        """
        if model is None:
            from .network import model_info
            model = model_info()
        user_masks = user_masks or {}
        by_name = {r.name: r for r in results}
        records = []
        for j in joints:
            used = by_name.get(j.name)
            follow = j.followup_xy or (used.position.get("followup_xy") if used is not None else None)
            records.append(JointRecord(j.name, (float(j.x), float(j.y)),
                                       tuple(map(float, follow)) if follow is not None else None,
                                       baseline_set_by_user=j.source == "manual" or j.moved,
                                       followup_set_by_user=j.followup_xy is not None,
                                       upper_mask=user_masks.get(j.name), source=j.source, moved=j.moved))
        if dataclasses.is_dataclass(settings):
            settings = dataclasses.asdict(settings)
        session = cls(ImageRecord.from_file(baseline_path, baseline.spacing_mm, baseline.meta),
                      ImageRecord.from_file(followup_path, followup.spacing_mm, followup.meta),
                      float(baseline.spacing_mm), records, dict(settings or {}), list(results),
                      model=dict(model), radiographs=(baseline, followup))
        session.warnings = consistency_warnings(session)
        return session

    def interval_days(self) -> int | None:
        """Days between the baseline and the follow-up study; None when a date is unknown."""
        if self.followup.interval_days is not None:
            return self.followup.interval_days
        dates = [parse_study_date(r.meta.get("study_date", "")) for r in (self.baseline, self.followup)]
        return (dates[1] - dates[0]).days if None not in dates else None

    def interval_months(self) -> float | None:
        days = self.interval_days()
        return None if days is None else days / (365.25 / 12)


def consistency_warnings(session: Session) -> list[str]:
    """What a reader must know before trusting the pair: different patients, reversed visits."""
    out = []
    ids = [r.meta.get("patient_id", "") for r in (session.baseline, session.followup)]
    if all(ids) and ids[0] != ids[1]:
        out.append("the two radiographs carry different patient IDs")
    days = session.interval_days()
    if days is not None and days < 0:
        out.append("the follow-up study date is before the baseline's")
    return out


# --- masks -----------------------------------------------------------------------------------

def encode_mask(mask: np.ndarray) -> dict:
    """JSON form of a bool mask: per-column boundary rows when its upper region is a top band
    (the usual case), else run lengths of the row-major flattened mask starting with a False run."""
    mask = np.asarray(mask, dtype=bool)
    rows = rows_from_upper_mask(mask)
    if np.array_equal(upper_mask_from_rows(mask.shape, rows), mask):
        return {"shape": list(mask.shape), "boundary_rows": [int(r) for r in rows]}
    flat = mask.ravel()
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    if flat[0]:
        runs = np.concatenate([[0], runs])
    return {"shape": list(mask.shape), "rle": [int(n) for n in runs]}


def decode_mask(d: dict) -> np.ndarray:
    shape = tuple(int(n) for n in d["shape"])
    if "boundary_rows" in d:
        return upper_mask_from_rows(shape, np.asarray(d["boundary_rows"], dtype=float))
    runs = np.asarray(d["rle"], dtype=int)
    if runs.sum() != shape[0] * shape[1] or np.any(runs < 0):
        raise ValueError("mask run lengths do not match its shape")
    values = np.arange(runs.size) % 2 == 1
    return np.repeat(values, runs).reshape(shape)


# --- JSON form -------------------------------------------------------------------------------

def _json_default(obj):
    """numpy values in results' details and positions -> plain JSON."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-able")


def _stored_path(path: str, session_dir: Path) -> str:
    if not path:
        return ""
    try:
        return Path(os.path.relpath(path, session_dir)).as_posix()
    except ValueError:  # another drive (Windows): keep it absolute
        return path


def to_json(session: Session, session_dir: Path) -> dict:
    images = {}
    for visit in VISITS:
        rec = getattr(session, visit)
        d = dataclasses.asdict(rec)
        d["path"] = _stored_path(rec.path, session_dir)
        images[visit] = d
    joints = []
    for j in session.joints:
        d = {"name": j.name, "baseline_xy": list(j.baseline_xy),
             "followup_xy": list(j.followup_xy) if j.followup_xy is not None else None,
             "baseline_set_by_user": j.baseline_set_by_user, "followup_set_by_user": j.followup_set_by_user,
             "upper_mask": encode_mask(j.upper_mask) if j.upper_mask is not None else None,
             "source": j.source, "moved": j.moved}
        joints.append(d)
    return {
        "schema": SCHEMA, "version": VERSION,
        "created": session.created, "modified": session.modified,
        "software": {"name": "jsnreg", "version": session.software_version},
        "model": session.model,
        "images": images,
        "spacing_mm": session.spacing_mm,
        "settings": session.settings,
        "joints": joints,
        "results": [r.to_dict() for r in session.results],
    }


def from_json(data: dict, session_dir: Path) -> Session:
    """The Session in `data` (already checked to be a session of a readable version)."""
    records = {}
    for visit in VISITS:
        d = dict(data["images"][visit])
        path = d["path"]
        if path and not Path(path).is_absolute():
            path = str((session_dir / path).resolve())
        records[visit] = ImageRecord(path, str(d["sha256"]), d.get("spacing_mm"), dict(d.get("meta", {})),
                                     d.get("interval_days"), bool(d.get("spacing_from_user", False)))
    joints = [JointRecord(str(j["name"]), tuple(j["baseline_xy"]),
                          tuple(j["followup_xy"]) if j.get("followup_xy") is not None else None,
                          bool(j.get("baseline_set_by_user", True)), bool(j.get("followup_set_by_user", False)),
                          decode_mask(j["upper_mask"]) if j.get("upper_mask") else None,
                          str(j.get("source", "manual")), bool(j.get("moved", False)))
              for j in data["joints"]]
    return Session(records["baseline"], records["followup"], float(data["spacing_mm"]), joints,
                   dict(data.get("settings", {})), [JointResult.from_dict(r) for r in data["results"]],
                   software_version=str(data["software"]["version"]), model=dict(data.get("model", {})),
                   created=str(data["created"]), modified=str(data["modified"]))


# --- files -----------------------------------------------------------------------------------

def write_atomically(path, write) -> None:
    """Call write(tmp) on a temporary file next to `path`, flush it to disk and rename it over
    `path`: a failure at any point leaves the previous file untouched. InputError on failure."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist")

    def durable(tmp):
        write(tmp)
        os.chmod(tmp, 0o644)  # the temporary file is owner-only; the result is an ordinary file
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())

    try:
        _atomic_write(path, durable)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def save_session(session: Session, path) -> None:
    """Write the session atomically (a failure leaves any previous file untouched)."""
    path = Path(path).resolve()
    modified = utc_now()
    data = to_json(dataclasses.replace(session, modified=modified), path.parent)
    text = json.dumps(data, indent=1, default=_json_default) + "\n"
    write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    session.modified, session.path = modified, str(path)


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"session file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read session file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is damaged or not a session file (not valid JSON: {exc.msg}, "
                         f"line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise InputError(f"{path} is not a jsnreg session file")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise InputError(f"{path}: session version {version!r} is not valid")
    if version > VERSION:
        raise InputError(f"{path} was written by a newer jsnreg (session version {version}; this is "
                         f"jsnreg {__version__}, reading up to version {VERSION}): update jsnreg to open it")
    return data


def check_images(session: Session) -> None:
    """Compare each recorded image with the file on disk: add warnings, mark the results stale."""
    for visit in VISITS:
        rec = getattr(session, visit)
        label = "baseline" if visit == "baseline" else "follow-up"
        if not rec.path:
            session.warnings.append(f"the {label} image's path is not recorded (de-identified session): "
                                    "results shown as recorded, images unavailable")
        elif not Path(rec.path).is_file():
            session.warnings.append(f"the {label} image {rec.path} is missing: results are stale "
                                    "(shown as recorded, not re-checked)")
            session.stale = True
        elif file_sha256(Path(rec.path)) != rec.sha256:
            session.warnings.append(f"the {label} image {rec.path} has changed since the measurement "
                                    "(SHA-256 differs): results are stale; measure again")
            session.stale = True


def load_session(path) -> Session:
    """Reopen a session: the recorded numbers, with warnings for changed or missing images.

    Raises InputError for a file that is not a session, is damaged, or is of a newer version.
    """
    path = Path(path).resolve()
    data = _read_json(path)
    try:
        session = from_json(data, path.parent)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"session file {path} is damaged: {type(exc).__name__} {exc}") from None
    session.path = str(path)
    session.warnings = consistency_warnings(session)
    check_images(session)
    return session


def deidentified(session: Session) -> Session:
    """A copy without names, IDs, birth date, study dates or image paths (hashes kept, to match
    the images later); the interval between the visits is kept in days."""
    days = session.interval_days()
    out = copy.copy(session)
    out.warnings = list(session.warnings)
    for rec in (session.baseline, session.followup):
        if rec.path:
            out.warnings = [w.replace(rec.path, "(path removed)") for w in out.warnings]
    for visit, offset in zip(VISITS, (0, days)):
        rec = getattr(session, visit)
        meta = {k: v for k, v in rec.meta.items() if k not in IDENTIFYING_META}
        setattr(out, visit, dataclasses.replace(rec, path="", meta=meta, interval_days=offset))
    return out


def session_images(session: Session) -> tuple | None:
    """(baseline, follow-up) Radiographs of a session, read from disk when not in memory;
    None when they are unavailable or stale (a changed image must not be mixed with the results)."""
    if session.radiographs is not None:
        return session.radiographs
    if session.stale or not (session.baseline.path and session.followup.path):
        return None
    session.radiographs = (session.baseline.read(), session.followup.read())
    return session.radiographs


def result_images(session: Session, result: JointResult) -> JointImages | None:
    """A result's images: carried by the result, else rebuilt from the session's radiographs
    (with the user's mask when the joint has one: the per-bone warps do not depend on it)."""
    if result.images is not None:
        return result.images
    pair = session_images(session)
    if pair is None or not result.position:
        return None
    from .quantify import joint_images

    images = joint_images(pair[0], pair[1], result)
    user_mask = next((j.upper_mask for j in session.joints if j.name == result.name), None)
    if user_mask is not None and user_mask.shape == images.fixed.shape:
        images = dataclasses.replace(images, upper_mask=user_mask)
    return images
