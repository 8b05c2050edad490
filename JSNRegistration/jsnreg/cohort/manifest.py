"""The cohort manifest: one row per radiograph -> visits with a status each.

Columns: patient, date (YYYY-MM-DD), image; optional: spacing_mm, joints (a joints file for the
first visit, as `jsnreg quantify --joints` reads), repeat (1 = a same-day repeat acquisition of
that visit, used for the smallest detectable change), site. Paths are relative to the manifest.
Bad rows are kept with a status saying why, so the store and the report can show them; only the
"ok" visits are measured.
"""

from __future__ import annotations

import csv
import datetime
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

REQUIRED = ("patient", "date", "image")
OPTIONAL = ("spacing_mm", "joints", "repeat", "site")
OK = "ok"


@dataclass
class Visit:
    """One manifest row. key: the visit's name within its patient (the date, "+repeat" for a repeat)."""

    line: int
    patient: str
    date: str
    image: str  # absolute path
    spacing_mm: float | None = None
    joints: str | None = None  # absolute path of the joints file
    repeat: bool = False
    site: str = ""
    status: str = OK
    note: str = ""

    @property
    def key(self) -> str:
        return self.date + ("+repeat" if self.repeat else "")

    @property
    def ok(self) -> bool:
        return self.status == OK


def _parse_date(text: str) -> str:
    return datetime.date.fromisoformat(text.strip()).isoformat()


def _flag(text: str) -> bool:
    t = (text or "").strip().lower()
    if t in ("", "0", "no", "false"):
        return False
    if t in ("1", "yes", "true"):
        return True
    raise ValueError(f"repeat must be 1/0 (yes/no), got {text!r}")


def read_manifest(path) -> list[Visit]:
    """Every row as a Visit; InputError only when the file itself is unusable."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = [c.strip() for c in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read manifest {path}: {exc}") from None
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise InputError(f"manifest {path} lacks the column(s) {', '.join(missing)} "
                         f"(needs {', '.join(REQUIRED)}; optional {', '.join(OPTIONAL)})")
    if not rows:
        raise InputError(f"manifest {path} has no rows")
    base = path.resolve().parent
    visits = []
    for k, raw in enumerate(rows, start=2):  # line 1 is the header
        row = {(key or "").strip(): (value or "").strip() for key, value in raw.items()}
        v = Visit(k, row["patient"], row["date"], str(base / row["image"]) if row["image"] else "",
                  site=row.get("site", ""))
        problems = []
        if not v.patient:
            problems.append("no patient")
        if not row["image"]:
            problems.append("no image path")
        try:
            v.date = _parse_date(row["date"])
        except ValueError:
            problems.append(f"date {row['date']!r} is not YYYY-MM-DD")
        if row.get("spacing_mm"):
            try:
                v.spacing_mm = float(row["spacing_mm"])
                if not v.spacing_mm > 0:
                    raise ValueError
            except ValueError:
                problems.append(f"spacing_mm {row['spacing_mm']!r} is not a positive number")
        if row.get("joints"):
            v.joints = str(base / row["joints"])
        try:
            v.repeat = _flag(row.get("repeat", ""))
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            v.status = "bad row: " + "; ".join(problems)
        visits.append(v)
    _mark_duplicates(visits)
    _mark_order(visits)
    return visits


def _mark_duplicates(visits: list[Visit]) -> None:
    """Two rows for one patient's visit: the same image twice is a duplicate (the first is kept);
    two different images without the repeat mark cannot be told apart, so neither is used."""
    first: dict[tuple[str, str], Visit] = {}
    for v in visits:
        if not v.ok:
            continue
        seen = first.get((v.patient, v.key))
        if seen is None:
            first[(v.patient, v.key)] = v
        elif seen.image == v.image:
            v.status = f"duplicate row (same visit and image as line {seen.line})"
        else:
            reason = (f"two images for patient {v.patient} on {v.key} (lines {seen.line}, {v.line}) "
                      "without a repeat mark: visit left out")
            seen.status = v.status = reason


def _mark_order(visits: list[Visit]) -> None:
    """Rows listed out of date order are measured in date order, with a note saying so."""
    last: dict[str, str] = {}
    for v in visits:
        if not v.ok or v.repeat:
            continue
        if v.patient in last and v.date < last[v.patient]:
            v.note = f"listed after the visit of {last[v.patient]}: dates out of order, measured in date order"
        last[v.patient] = max(v.date, last.get(v.patient, v.date))
