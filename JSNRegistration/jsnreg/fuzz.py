"""Fuzzing the readers: damaged DICOM bytes, odd DICOM tag values and damaged session fields must
each end as a clean reading or an InputError, never another exception or a silently bad value.

    python -m jsnreg.fuzz --cases 5000 --seed 1      # the occasional long run (cases per kind)

The test suite runs the same generators with a few hundred cases each.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import validate
from .errors import InputError

KINDS = ("dicom-bytes", "dicom-tags", "session")
# Values a damaged or hostile header or session may carry.
ODD_TEXT = ["", " ", "abc", "nan", "NaN", "inf", "-inf", "-1", "0", "1e9", "1e-9", "1\\2", "1\\2\\3",
            "0\\0", "-0.2\\-0.2", "1e400", "9" * 60, "\x00", "é", "MONOCHROME3", "RGB", "PALETTE COLOR"]
ODD_NUMBERS = [0, -1, 1, 2, 3, 7, 8, 15, 16, 17, 32, 33, 64, 65535, 65536, 2 ** 31, -2 ** 31, 10 ** 6]
ODD_JSON = [None, True, False, 0, -1, -0.2, 1e9, 1e-9, float("nan"), float("inf"), "", "abc", [], {}, [1],
            {"a": 1}, 10 ** 30, "x" * 5000]


@dataclass
class Tally:
    kind: str
    cases: int = 0
    read: int = 0
    clean_errors: int = 0
    crashes: list = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.kind}: {self.cases} cases, {self.read} read, {self.clean_errors} clean errors, "
                f"{len(self.crashes)} crashes")


def _check_radiograph(image) -> None:
    """A reading that succeeded must hold usable values: finite pixels in [0, 1], a spacing in range."""
    px = image.pixels
    if px.ndim != 2 or not np.all(np.isfinite(px)) or px.min() < 0 or px.max() > 1:
        raise AssertionError(f"read pixels outside [0, 1] or not finite (shape {px.shape})")
    if image.spacing_mm is not None:
        lo, hi = validate.SPACING_RANGE_MM
        if not (math.isfinite(image.spacing_mm) and lo <= image.spacing_mm <= hi):
            raise AssertionError(f"read spacing {image.spacing_mm}")


def _try(tally: Tally, what: str, action) -> None:
    tally.cases += 1
    try:
        action()
        tally.read += 1
    except InputError as exc:
        if "\n" in str(exc):
            tally.crashes.append(f"{what}: InputError on several lines: {exc!r}")
        else:
            tally.clean_errors += 1
    except Exception:  # what the fuzzing is for: anything else is a crash to fix
        tally.crashes.append(f"{what}: {traceback.format_exc(limit=4)}")


# --- DICOM ---------------------------------------------------------------------------------

def _seed_dicom(folder: Path, rng) -> Path:
    from .images import write_dicom

    path = folder / "seed.dcm"
    pixels = rng.random((24, 32))
    write_dicom(path, pixels, 0.1, meta={"patient_id": "P1", "study_date": "20240101"}, bits_stored=12,
                spacing_tag="ImagerPixelSpacing", magnification=1.2, rescale=(1.5, -20.0))
    return path


def fuzz_dicom_bytes(n: int, seed: int, folder: Path) -> Tally:
    """Byte-level damage of a valid file: flipped bytes, cut files, inserted and repeated chunks."""
    from .images import read_radiograph

    rng = np.random.default_rng(seed)
    data = bytearray(_seed_dicom(folder, rng).read_bytes())
    header_end = len(data) - 24 * 32 * 2  # most damage where the parser reads, some in the pixels
    tally = Tally("dicom-bytes")
    for k in range(n):
        buf = bytearray(data)
        how = rng.integers(5)
        if how == 0:
            for _ in range(rng.integers(1, 20)):
                buf[rng.integers(128, header_end)] = rng.integers(256)
        elif how == 1:
            buf = buf[:rng.integers(132, len(buf))]
        elif how == 2:
            at = rng.integers(132, header_end)
            buf[at:at] = rng.integers(0, 256, rng.integers(1, 64), dtype=np.uint8).tobytes()
        elif how == 3:
            at = rng.integers(132, header_end - 8)
            buf[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\x7f",
                                         b"UN\x00\x00", b"ZZ\x00\x00", b"SQ\x00\x00"])
        else:
            a, b = sorted(rng.integers(132, header_end, 2))
            buf[b:b] = buf[a:b]
        path = folder / f"bytes_{k % 7}.dcm"
        path.write_bytes(bytes(buf))
        _try(tally, f"dicom-bytes case {k} (mode {how})",
             lambda: _check_radiograph(read_radiograph(path, require_spacing=False)))
    return tally


TAGS = {  # keyword -> VR, the values drawn for it
    "Rows": ("US", ODD_NUMBERS), "Columns": ("US", ODD_NUMBERS), "BitsStored": ("US", ODD_NUMBERS),
    "BitsAllocated": ("US", ODD_NUMBERS), "HighBit": ("US", ODD_NUMBERS),
    "PixelRepresentation": ("US", ODD_NUMBERS), "SamplesPerPixel": ("US", ODD_NUMBERS),
    "PhotometricInterpretation": ("CS", ODD_TEXT), "RescaleSlope": ("DS", ODD_TEXT),
    "RescaleIntercept": ("DS", ODD_TEXT), "PixelSpacing": ("DS", ODD_TEXT),
    "ImagerPixelSpacing": ("DS", ODD_TEXT), "EstimatedRadiographicMagnificationFactor": ("DS", ODD_TEXT),
    "NumberOfFrames": ("IS", ODD_TEXT), "PlanarConfiguration": ("US", ODD_NUMBERS),
    "ImageLaterality": ("CS", ODD_TEXT), "PatientName": ("PN", ODD_TEXT),
}


def _set_raw(ds, keyword: str, vr: str, value, rng) -> None:
    """Put a value in the dataset as raw bytes (bypassing pydicom's checks, as a damaged file would)."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import RawDataElement

    tag = tag_for_keyword(keyword)
    if rng.random() < 0.1:  # a wrong or unknown VR
        vr = str(rng.choice(["UN", "OB", "ZZ", "SQ", "FD", "SS", "AT", "LO"]))
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
    else:
        raw = (int(value) % 65536).to_bytes(2, "little") if vr in ("US", "SS") else str(value).encode()
    if len(raw) % 2:
        raw += b" "
    ds[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)


def fuzz_dicom_tags(n: int, seed: int, folder: Path) -> Tally:
    """Valid files with one to four header elements replaced by odd values, a wrong VR or dropped."""
    import pydicom

    from .images import read_radiograph

    rng = np.random.default_rng(seed)
    seed_path = _seed_dicom(folder, rng)
    base = pydicom.dcmread(seed_path)
    tally = Tally("dicom-tags")
    keywords = list(TAGS)
    for k in range(n):
        ds = copy.deepcopy(base)
        for keyword in rng.choice(keywords, rng.integers(1, 5), replace=False):
            vr, pool = TAGS[str(keyword)]
            if rng.random() < 0.1:
                if keyword in ds:
                    del ds[keyword]
                continue
            _set_raw(ds, str(keyword), vr, pool[rng.integers(len(pool))], rng)
        if rng.random() < 0.1:  # pixel data of the wrong length
            ds.PixelData = bytes(ds.PixelData)[:rng.integers(0, len(ds.PixelData))]
        path = folder / f"tags_{k % 7}.dcm"
        try:
            ds.save_as(path)
        except Exception:  # pydicom refused to write this combination: draw it as bytes instead
            path.write_bytes(seed_path.read_bytes())
        _try(tally, f"dicom-tags case {k}", lambda: _check_radiograph(read_radiograph(path, require_spacing=False)))
    return tally


# --- sessions --------------------------------------------------------------------------------

def _seed_session(folder: Path) -> dict:
    """A valid session's JSON (two small images, two joints, one with a run-length mask)."""
    from .images import write_png
    from .results import JointResult
    from .session import ImageRecord, JointRecord, Session, save_session, to_json
    from .transforms import BoneMotion

    rng = np.random.default_rng(0)
    for name in ("b.png", "f.png"):
        write_png(folder / name, rng.random((40, 40)))
    meta = {"patient_id": "P1", "study_date": "20240101", "modality": "DX"}
    records = [ImageRecord.from_file(folder / name, 0.1, {**meta, "study_date": date})
               for name, date in (("b.png", "20240101"), ("f.png", "20250101"))]
    mask = np.zeros((31, 31), dtype=bool)
    mask[:15] = True
    mask[3, 20] = False
    results = [JointResult(name, 0.1, BoneMotion(1.0, 0.01, 0.2, -0.3), BoneMotion(1.0, -0.01, 0.1, 0.2), 0.02,
                           0.01, 0.8, name == "PIP3", "low contrast" if name == "PIP3" else "",
                           position={"baseline_xy": [20.0, 20.0], "followup_xy": [21.0, 19.0],
                                     "baseline_angle_rad": 0.0, "followup_angle_rad": 0.01, "roi_size_px": 31,
                                     "followup_given": False},
                           details={"split_rows": [15.0] * 31}) for name in ("PIP2", "PIP3")]
    joints = [JointRecord("PIP2", (20.0, 20.0), (21.0, 19.0)), JointRecord("PIP3", (20.0, 20.0), upper_mask=mask)]
    session = Session(records[0], records[1], 0.1, joints, {"roi_mm": 22.0, "refine": True}, results,
                      model={"sha256": "0" * 64})
    save_session(session, folder / "seed.json")
    return to_json(session, folder)


def _paths(node, prefix=()):
    """Every (path, value) in a JSON tree."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _mutate(data: dict, rng) -> str:
    data = copy.deepcopy(data)
    for _ in range(rng.integers(1, 4)):
        paths = [p for p, _ in _paths(data) if p]
        where = paths[rng.integers(len(paths))]
        parent = data
        for key in where[:-1]:
            parent = parent[key]
        how = rng.random()
        if how < 0.15 and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = copy.deepcopy(ODD_JSON[rng.integers(len(ODD_JSON))])
    text = json.dumps(data, allow_nan=True)
    if rng.random() < 0.05:  # deep nesting
        depth = int(rng.integers(50, 100_000))
        key = str(rng.choice(['"settings": ', '"results": ', '"meta": ', '"upper": ']))
        text = text.replace(key, key + "[" * depth + "]" * depth + ', "x": ', 1)
    if rng.random() < 0.05:  # a number of thousands of digits
        text = text.replace('"spacing_mm": 0.1', '"spacing_mm": ' + "1" * int(rng.integers(400, 6000)), 1)
    return text


def _use_session(path: Path) -> None:
    """Load a session and do what the report's text layer and the CSV do with it."""
    from .report import csv_row, header_fields, joint_title, report_warnings, table_cells
    from .session import deidentified, load_session

    session = load_session(path)
    for s in (session, deidentified(session)):
        header_fields(s, deidentify=s is not session)
        report_warnings(s)
        for r in s.results:
            table_cells(r)
            joint_title(r)
            row = csv_row(r)
            if not all(math.isfinite(v) for v in row.values() if isinstance(v, float)):
                raise AssertionError(f"non-finite number in a loaded result: {row}")


def fuzz_sessions(n: int, seed: int, folder: Path) -> Tally:
    rng = np.random.default_rng(seed)
    data = _seed_session(folder)
    tally = Tally("session")
    for k in range(n):
        path = folder / "case.json"
        path.write_text(_mutate(data, rng), encoding="utf-8")
        _try(tally, f"session case {k}", lambda: _use_session(path))
    return tally


FUZZERS = {"dicom-bytes": fuzz_dicom_bytes, "dicom-tags": fuzz_dicom_tags, "session": fuzz_sessions}


def run(cases: int, seed: int, kinds=KINDS) -> list[Tally]:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    with tempfile.TemporaryDirectory(prefix="jsnreg-fuzz-") as tmp:
        return [FUZZERS[kind](cases, seed, Path(tmp)) for kind in kinds]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jsnreg.fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=5000, help="cases per kind")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    args = p.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        p.error(f"unknown kinds {', '.join(unknown)}")
    tallies = run(args.cases, args.seed, kinds)
    for t in tallies:
        print(t.line())
        for crash in t.crashes[:5]:
            print("  " + crash.replace("\n", "\n  "))
    return 1 if any(t.crashes for t in tallies) else 0


if __name__ == "__main__":
    sys.exit(main())
