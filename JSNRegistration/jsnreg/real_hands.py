"""The real hand radiographs (outside the repository) and their shipped joint annotations.

Images live in `<repo>/../shared/data/real-hands` or where JSNREG_REAL_HANDS points; the joint
centres, sides and train/val/test split ship as `jsnreg/data/real_hands_joints.json` (or the file
JSNREG_REAL_JOINTS names), the SHA-256 of each image they were placed on as
`jsnreg/data/real_hands_sha256.json`. A folder of other films is read too (annotated_images): an
adult-annotated/joints.json there (as the shared folder's) gives the films it lists their own points.
"""

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

ANNOTATIONS = Path(__file__).parent / "data" / "real_hands_joints.json"
IMAGES_SHA256 = Path(__file__).parent / "data" / "real_hands_sha256.json"
FINGER_JOINTS = ("IP1", "MCP1", "MCP2", "MCP3", "MCP4", "MCP5", "PIP2", "PIP3", "PIP4", "PIP5",
                 "DIP2", "DIP3", "DIP4", "DIP5")
ADULT_SPACING_MM = 0.3  # nominal: the adult films were downsized to about this (the folder's README)
RSNA_DIR = "rsna-bone-age"
RSNA_COUNTS = {"train": 36, "val": 12, "test": 12}  # by sha256 rank of the file name
ADULT_DIR = "adult-annotated"
ADULT_VAL_PATIENTS = 3  # of the 6 adult patients (8 images): by sha256 rank of the patient id


def real_hands_folder() -> Path:
    """`$JSNREG_REAL_HANDS`, else `<repo>/../shared/data/real-hands` (may not exist)."""
    env = os.environ.get("JSNREG_REAL_HANDS")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-hands"


def real_hands_dir() -> "Path | None":
    """The real-hands folder, or None where it is absent (tests then skip)."""
    folder = real_hands_folder()
    return folder if folder.is_dir() else None


def load_annotations() -> dict:
    """The annotation file as a dict: {"version", "method", "images": {relative path: entry}}."""
    return json.loads(ANNOTATIONS.read_text(encoding="utf-8"))


def annotation_path() -> Path:
    """`$JSNREG_REAL_JOINTS`, else the package's data/real_hands_joints.json (may not exist)."""
    env = os.environ.get("JSNREG_REAL_JOINTS")
    return Path(env) if env else ANNOTATIONS


@lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    from .network import file_sha256

    return file_sha256(Path(path))


def image_sha256(path: Path) -> str:
    """SHA-256 of an image file, computed once per version of it (size, mtime) in a process."""
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def annotated_images(path=None) -> dict:
    """{relative image path: entry} of the real-hands folder's annotated images: the annotation file's
    (path, default annotation_path()) whose image is there as annotated, then each film the folder's
    adult-annotated/joints.json lists that is not in the file, with its own finger joints (the wrist sites
    left out), split "test", spacing its "spacing_mm_nominal" or "spacing_mm" if it has one, else the shared
    folder's nominal ADULT_SPACING_MM, "from_folder" true. A name the package's file
    annotates whose image in the folder is another file (its SHA-256 not the recorded one) is not taken: its
    points belong to the file annotated. InputError when a file cannot be read or an entry lacks what the
    benches read (_checked_entry: naming the image and the field)."""
    from .errors import InputError

    path = Path(path) if path else annotation_path()
    try:
        return _annotated_images(path)
    except InputError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read joint annotations {path}: {exc}") from None


def _annotated_images(path: Path) -> dict:
    images = json.loads(path.read_text(encoding="utf-8"))["images"] if path.is_file() else {}
    images = {rel: _checked_entry(path, rel, e) for rel, e in images.items()}
    ours = path.resolve() == ANNOTATIONS.resolve()
    recorded = json.loads(IMAGES_SHA256.read_text()) if ours and IMAGES_SHA256.is_file() else {}
    folder = real_hands_folder()
    images = {rel: e for rel, e in images.items()
              if rel not in recorded or not (folder / rel).is_file() or image_sha256(folder / rel) == recorded[rel]}
    own = folder / ADULT_DIR / "joints.json"
    if own.is_file():
        for name, entry in json.loads(own.read_text()).items():
            images.setdefault(f"{ADULT_DIR}/{name}", {
                "split": "test", "side": entry.get("side", ""),
                "spacing_mm_nominal": entry.get("spacing_mm_nominal", entry.get("spacing_mm", ADULT_SPACING_MM)),
                "joints": {n: p for n, p in entry["joints"].items() if n in FINGER_JOINTS},
                "absent": [], "notes": f"{ADULT_DIR}/joints.json", "from_folder": True})
            _checked_entry(own, name, images[f"{ADULT_DIR}/{name}"])
    return images


def _checked_entry(path: Path, rel: str, entry) -> dict:
    """An annotation file's entry as the benches read it: "split" train / val / test, "spacing_mm_nominal" > 0
    (mm per pixel; a nominal value will do, never guessed here), "joints" {name: [x, y]} (px of the image),
    "side" L / R or absent; else InputError saying which image lacks what."""
    from .errors import InputError

    def bad(what):
        return InputError(f"{path}: image {rel!r}: {what}")

    if not isinstance(entry, dict):
        raise bad("the entry is not an object")
    if entry.get("split") not in ("train", "val", "test"):
        raise bad(f"split {entry.get('split')!r}: train, val or test is needed")
    spacing = entry.get("spacing_mm_nominal")
    if not isinstance(spacing, (int, float)) or isinstance(spacing, bool) or not spacing > 0:
        raise bad(f"spacing_mm_nominal {spacing!r}: a pixel spacing in mm (> 0) is needed")
    joints = entry.get("joints")
    if not isinstance(joints, dict) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)
            for p in joints.values()):
        raise bad("joints: {name: [x, y]} in pixels of the image is needed")
    if entry.get("side", "") not in ("L", "R", ""):
        raise bad(f"side {entry.get('side')!r}: L or R")
    return entry


def rsna_splits(names) -> dict:
    """The split rule: RSNA file names sorted by sha256 of the name; first 36 train, next 12 val, rest test."""
    ranked = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    first_val, first_test = RSNA_COUNTS["train"], RSNA_COUNTS["train"] + RSNA_COUNTS["val"]
    return {n: "train" if i < first_val else "val" if i < first_test else "test" for i, n in enumerate(ranked)}


def is_adult(name: str) -> bool:
    """Whether an image (path relative to the real-hands folder) is one of the adult RA patients' films."""
    return name.startswith(ADULT_DIR + "/")


def adult_patient(name: str) -> str:
    """The patient of an adult image: its file name without the hand's side (test_img5_L.png -> test_img5)."""
    stem = Path(name).stem
    return stem.rsplit("_", 1)[0] if stem.endswith(("_L", "_R")) else stem


def adult_splits(names) -> dict:
    """The adult images' detection split, by patient (both hands of one patient on the same side):
    patient ids sorted by sha256; the first ADULT_VAL_PATIENTS "val" (detection may be tuned on them),
    the rest "test". The registration benchmarks keep every adult image as test (their annotation's
    split): nothing there is chosen on adult joints."""
    patients = sorted({adult_patient(n) for n in names}, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    val = set(patients[:ADULT_VAL_PATIENTS])
    return {n: "val" if adult_patient(n) in val else "test" for n in names}


def split_of(file) -> str:
    """"train" | "val" | "test" for a path relative to the real-hands folder (e.g. rsna-bone-age/1437.png).

    Adult and any other non-RSNA images are test (another population; detection alone splits the adult
    images by patient, adult_splits). An RSNA file takes its split
    from the annotations, else from the rule applied to the folder's listing; KeyError when unknown.
    """
    file = Path(file).as_posix()
    if not file.startswith(RSNA_DIR + "/"):
        return "test"
    entry = load_annotations()["images"].get(file)
    if entry:
        return entry["split"]
    folder = real_hands_dir()
    names = [p.name for p in (folder / RSNA_DIR).glob("*.png")] if folder else []
    return rsna_splits(names)[file.split("/", 1)[1]]
