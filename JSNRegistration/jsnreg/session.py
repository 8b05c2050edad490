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

from . import __version__, validate
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
    (sessions written before these fields load as manual, not moved); detect_confidence: a detected
    joint's confidence (jsnreg.detect_confidence), None otherwise.
    """

    name: str
    baseline_xy: tuple[float, float]
    followup_xy: tuple[float, float] | None = None
    baseline_set_by_user: bool = True
    followup_set_by_user: bool = False
    upper_mask: np.ndarray | None = None
    source: str = "manual"
    moved: bool = False
    detect_confidence: float | None = None

    def spec(self) -> JointSpec:
        """The joint to measure again: the follow-up position kept only when the user set it."""
        follow = self.followup_xy if self.followup_set_by_user else None
        return JointSpec(self.name, self.baseline_xy[0], self.baseline_xy[1], follow, self.source, self.moved,
                         self.detect_confidence)


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
                                       upper_mask=user_masks.get(j.name), source=j.source, moved=j.moved,
                                       detect_confidence=j.detect_confidence))
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
    if not isinstance(d, dict) or not isinstance(d.get("shape"), list) or len(d["shape"]) != 2:
        raise InputError("upper_mask must be {\"shape\": [rows, cols], ...}")
    # Checked before any array is made: a damaged shape must not allocate gigabytes.
    shape = tuple(validate.integer(n, "upper_mask shape", 1, validate.MAX_ROI_PX) for n in d["shape"])
    if "boundary_rows" in d:
        rows = d["boundary_rows"]
        if not isinstance(rows, list) or len(rows) != shape[1]:
            raise InputError("upper_mask boundary_rows must give one row per column")
        rows = [validate.number(r, "upper_mask boundary row", 0, shape[0]) for r in rows]
        return upper_mask_from_rows(shape, np.asarray(rows, dtype=float))
    if not isinstance(d.get("rle"), list) or len(d["rle"]) > shape[0] * shape[1] + 1:
        raise InputError("upper_mask run lengths must be a list no longer than the mask")
    n = shape[0] * shape[1]
    runs = np.asarray([validate.integer(r, "upper_mask run length", 0, n) for r in d["rle"]], dtype=np.int64)
    if runs.sum() != n:
        raise InputError("upper_mask run lengths do not match its shape")
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
             "source": j.source, "moved": j.moved, "detect_confidence": j.detect_confidence}
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
                          str(j.get("source", "manual")), bool(j.get("moved", False)),
                          None if j.get("detect_confidence") is None else float(j["detect_confidence"]))
              for j in data["joints"]]
    return Session(records["baseline"], records["followup"], float(data["spacing_mm"]), joints,
                   dict(data.get("settings", {})), [JointResult.from_dict(r) for r in data["results"]],
                   software_version=str(data["software"]["version"]), model=dict(data.get("model", {})),
                   created=str(data["created"]), modified=str(data["modified"]))


# --- checks on loading -------------------------------------------------------------------------

def _obj(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{what} must be an object, got {type(value).__name__}")
    return value


def _text(value, what: str, max_chars: int = 10_000) -> str:
    if not isinstance(value, str) or len(value) > max_chars:
        raise InputError(f"{what} must be a text (at most {max_chars} characters)")
    return value


def _xy(value, what: str) -> None:
    if not isinstance(value, list) or len(value) != 2:
        raise InputError(f"{what} must be [x, y]")
    for v in value:
        validate.number(v, what, -1e6, 1e6, "px")


def _motion(d, what: str) -> None:
    d = _obj(d, what)
    for key in ("dx", "dy"):
        validate.number(d.get(key), f"{what}.{key}", -1e4, 1e4, "px")
    validate.number(d.get("dtheta"), f"{what}.dtheta", -7.0, 7.0, "rad")
    validate.number(d.get("scale"), f"{what}.scale", 0.1, 10.0)


def check_session_json(data: dict) -> None:
    """Every field a session's reader and report use, with its type and physical range: a damaged
    or edited session is refused with the field named, never shown with a NaN or a wrong number."""
    validate.spacing_mm(data.get("spacing_mm"), "spacing_mm")
    _text(data.get("created"), "created", 100)
    _text(data.get("modified"), "modified", 100)
    _text(_obj(data.get("software"), "software").get("version"), "software.version", 100)
    model = _obj(data.get("model", {}), "model")
    for key in ("file", "sha256", "version", "command"):
        if key in model:
            _text(model[key], f"model.{key}", 1000)
    settings = _obj(data.get("settings", {}), "settings")
    if "roi_mm" in settings:
        validate.roi_mm(settings["roi_mm"], "settings.roi_mm")
    if not isinstance(settings.get("refine", True), bool):
        raise InputError("settings.refine must be true or false")
    images = _obj(data.get("images"), "images")
    for visit in VISITS:
        d = _obj(images.get(visit), f"images.{visit}")
        _text(d.get("path"), f"images.{visit}.path", 4096)
        _text(d.get("sha256"), f"images.{visit}.sha256", 64)
        if d.get("spacing_mm") is not None:
            validate.spacing_mm(d["spacing_mm"], f"images.{visit}.spacing_mm")
        meta = _obj(d.get("meta", {}), f"images.{visit}.meta")
        for k, v in meta.items():
            _text(v, f"images.{visit}.meta.{k}", 1000)
        if d.get("interval_days") is not None:
            validate.integer(d["interval_days"], f"images.{visit}.interval_days", -36_500, 36_500)
        if not isinstance(d.get("spacing_from_user", False), bool):
            raise InputError(f"images.{visit}.spacing_from_user must be true or false")
    joints, results = data.get("joints"), data.get("results")
    if not isinstance(joints, list) or not isinstance(results, list) or len(joints) > 1000 or len(results) > 1000:
        raise InputError("joints and results must be lists (at most 1000 each)")
    for k, j in enumerate(joints):
        j = _obj(j, f"joints[{k}]")
        _text(j.get("name"), f"joints[{k}].name", 100)
        _xy(j.get("baseline_xy"), f"joints[{k}].baseline_xy")
        if j.get("followup_xy") is not None:
            _xy(j["followup_xy"], f"joints[{k}].followup_xy")
        for flag in ("baseline_set_by_user", "followup_set_by_user"):
            if not isinstance(j.get(flag, False), bool):
                raise InputError(f"joints[{k}].{flag} must be true or false")
        if j.get("detect_confidence") is not None:
            validate.number(j["detect_confidence"], f"joints[{k}].detect_confidence", 0.0, 1.0)
    for k, r in enumerate(results):
        what = f"results[{k}]"
        r = _obj(r, what)
        _text(r.get("name", ""), f"{what}.name", 100)
        validate.spacing_mm(r.get("spacing_mm"), f"{what}.spacing_mm")
        _motion(r.get("upper"), f"{what}.upper")
        _motion(r.get("lower"), f"{what}.lower")
        for key in ("mse_before", "mse_after"):
            validate.number(r.get(key), f"{what}.{key}", 0.0, 1.0)
        validate.number(r.get("confidence"), f"{what}.confidence", 0.0, 1.0)
        # The stored JSN is derived from the motions: one that disagrees means an edited or damaged file.
        jsn_px = float(r["upper"]["dy"]) - float(r["lower"]["dy"])
        for key, value in (("jsn_px", jsn_px), ("jsn_mm", jsn_px * float(r["spacing_mm"]))):
            if key in r and abs(validate.number(r[key], f"{what}.{key}") - value) > 1e-6 * (1 + abs(value)):
                raise InputError(f"{what}.{key} {r[key]:g} disagrees with the bones' motions ({value:g})")
        if not isinstance(r.get("flagged"), bool):
            raise InputError(f"{what}.flagged must be true or false")
        _text(r.get("flag_reason", ""), f"{what}.flag_reason")
        _obj(r.get("details", {}), f"{what}.details")
        position = _obj(r.get("position", {}), f"{what}.position")
        if position:
            _xy(position.get("baseline_xy"), f"{what}.position.baseline_xy")
            _xy(position.get("followup_xy"), f"{what}.position.followup_xy")
            for key in ("baseline_angle_rad", "followup_angle_rad"):
                validate.number(position.get(key), f"{what}.position.{key}", -7.0, 7.0, "rad")
            validate.integer(position.get("roi_size_px"), f"{what}.position.roi_size_px", 24, validate.MAX_ROI_PX)
            if "work_factor" in position:  # working resolution of the registration (full-res px per px)
                validate.integer(position["work_factor"], f"{what}.position.work_factor", 1, 64)
            if not isinstance(position.get("followup_given", False), bool):
                raise InputError(f"{what}.position.followup_given must be true or false")
        rows = r.get("details", {}).get("split_rows")
        if rows is not None and (not isinstance(rows, list) or len(rows) > validate.MAX_ROI_PX
                                 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                            and np.isfinite(v) for v in rows)):
            raise InputError(f"{what}.details.split_rows must be a list of finite rows")


# --- files -----------------------------------------------------------------------------------

def write_atomically(path, write) -> None:
    """Call write(tmp) on a temporary file next to `path`, flush it to disk and rename it over
    `path`: a failure at any point leaves the previous file untouched. InputError on failure."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist")

    def durable(tmp):
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())

    try:
        _atomic_write(path, durable)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def save_session(session: Session, path, folder=None) -> None:
    """Write the session atomically (a failure leaves any previous file untouched).

    folder: where the file will live when written elsewhere first (a staging folder): image
    paths are recorded relative to it."""
    path = Path(path).resolve()
    modified = utc_now()
    folder = Path(folder).resolve() if folder is not None else path.parent
    data = to_json(dataclasses.replace(session, modified=modified), folder)
    text = json.dumps(data, indent=1, default=_json_default) + "\n"
    write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    session.modified, session.path = modified, str(folder / path.name)


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
    except (ValueError, RecursionError) as exc:  # 5000-digit integers, deep nesting
        raise InputError(f"{path} is damaged or not a session file ({validate.one_line(exc)[:120]})") from None
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
        check_session_json(data)
        session = from_json(data, path.parent)
    except InputError as exc:
        raise InputError(f"session file {path} is damaged: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, RecursionError,
            MemoryError) as exc:
        raise InputError(f"session file {path} is damaged: "
                         f"{validate.one_line(f'{type(exc).__name__} {exc}')[:200]}") from None
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
    # The pictures stay (read now, while the paths are known); only their identifying meta goes.
    try:
        pair = session_images(session)
    except InputError:
        pair = None
    if pair is not None:
        from .images import Radiograph

        out.radiographs = tuple(Radiograph(r.pixels, r.spacing_mm, {k: v for k, v in r.meta.items()
                                                                   if k in ("format", "modality", "photometric")})
                                for r in pair)
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
