"""The viewer's session: the two radiographs, the placed joints and their results (no Qt).

Coordinates: joint (x, y) = (column, row) px on the baseline. Follow-up positions are in the
follow-up at the baseline's spacing (`followup_view`), the frame jsnreg.quantify works in, so a
position the engine reports and one the user drags mean the same thing.
Views subscribe to changes; every change goes through a method here, so a result never
outlives the positions it was measured at.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import tempfile
from pathlib import Path
from typing import Callable

from jsnreg import session as core_session
from jsnreg.errors import InputError
from jsnreg.images import Radiograph, match_spacing, read_radiograph
from jsnreg.joints import DEFAULT_JOINTS, JointSpec, detected_joints, load_joints_json, next_joint_name
from jsnreg.report import CSV_COLUMNS, csv_row
from jsnreg.results import JointResult

IMAGES, JOINTS, RESULTS = "images", "joints", "results"
SIDES = ("baseline", "followup")
# The demo case is written here once per machine and reused, so a saved demo session reopens.
DEMO_DIR = Path(tempfile.gettempdir()) / "jsnreg-viewer-demo"

# Table columns: JointResult.table_row() keys and their headers (units in the header).
COLUMNS = (
    ("joint", "Joint"),
    ("placed", "Placed"),
    ("jsn_mm", "JSN (mm)"),
    ("lateral_shift_mm", "Shift (mm)"),
    ("relative_rotation_deg", "Rotation (°)"),
    ("mse_before", "MSE before"),
    ("mse_after", "MSE after"),
    ("confidence", "Confidence"),
    ("flag_reason", "Flag"),
)


class Workspace:
    """What the user opened, placed and measured; views listen with `subscribe`."""

    def __init__(self):
        self.images: dict[str, Radiograph | None] = {side: None for side in SIDES}
        self.joints: list[JointSpec] = []
        self.results: dict[str, JointResult] = {}
        self._followup_view: Radiograph | None = None
        self._listeners: list[Callable[[str], None]] = []

    # -- notification ---------------------------------------------------------------------
    def subscribe(self, listener: Callable[[str], None]) -> None:
        """Call `listener(what)` after every change; what is IMAGES, JOINTS or RESULTS."""
        self._listeners.append(listener)

    def _changed(self, what: str) -> None:
        for listener in self._listeners:
            listener(what)

    # -- images ---------------------------------------------------------------------------
    @property
    def baseline(self) -> Radiograph | None:
        return self.images["baseline"]

    @property
    def followup(self) -> Radiograph | None:
        return self.images["followup"]

    def set_image(self, side: str, image: Radiograph) -> None:
        """Replace one radiograph; its results no longer hold, the joints stay."""
        self.images[side] = image
        self._followup_view = None
        self.results.clear()
        self._changed(IMAGES)
        self._changed(RESULTS)

    def followup_view(self) -> Radiograph | None:
        """The follow-up at the baseline's spacing (the core's resampling), the frame shown."""
        if self.followup is None:
            return None
        if self.baseline is None:
            return self.followup
        if self._followup_view is None:
            self._followup_view = match_spacing(self.followup, self.baseline.spacing_mm)
        return self._followup_view

    def ready(self) -> bool:
        return self.baseline is not None and self.followup is not None

    # -- joints ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        return [j.name for j in self.joints]

    def joint(self, name: str) -> JointSpec:
        for j in self.joints:
            if j.name == name:
                return j
        raise KeyError(name)

    def add_joint(self, x: float, y: float, name: str | None = None) -> JointSpec:
        """Place a joint at baseline (x, y) px; default name: the next standard joint."""
        name = (name or next_joint_name(self.names())).strip()
        self._check_new_name(name)
        spec = JointSpec(name, float(x), float(y))
        self.joints.append(spec)
        self._changed(JOINTS)
        return spec

    def set_joints(self, specs: list[JointSpec]) -> None:
        """Replace all joints (e.g. from a joints file); their old results go."""
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise InputError("joint names must be unique")
        self.joints = [dataclasses.replace(s) for s in specs]  # ours to edit
        self.results.clear()
        self._changed(JOINTS)
        self._changed(RESULTS)

    def detect_joints(self) -> list[str]:
        """Place the joints jsnreg.detect finds on the baseline; joints the user placed or moved
        stay as they are (a detected name they hold is not added again). The names added."""
        from jsnreg.detect import detect_joints

        if self.baseline is None:
            raise InputError("open a baseline radiograph first")
        found = detect_joints(self.baseline.pixels, self.baseline.spacing_mm)
        kept = [j for j in self.joints if j.source == "manual" or j.moved]
        taken = {j.name for j in kept}
        added = detected_joints([d for d in found if d.name not in taken])
        self.joints = kept + added
        for name in list(self.results):
            if name not in taken:
                self.results.pop(name)
        self._changed(JOINTS)
        self._changed(RESULTS)
        return [j.name for j in added]

    def move_joint(self, name: str, x: float, y: float) -> None:
        spec = self.joint(name)
        spec.x, spec.y = float(x), float(y)
        spec.moved = spec.moved or spec.source == "detected"
        self._drop_result(name)
        self._changed(JOINTS)

    def set_followup_xy(self, name: str, xy: tuple[float, float] | None) -> None:
        """Where the joint is in the follow-up (None: let the engine find it on the next run)."""
        self.joint(name).followup_xy = None if xy is None else (float(xy[0]), float(xy[1]))
        self._drop_result(name)
        self._changed(JOINTS)

    def rename_joint(self, old: str, new: str) -> None:
        new = new.strip()
        if new == old:
            return
        self._check_new_name(new)
        self.joint(old).name = new
        if old in self.results:
            self.results[new] = dataclasses.replace(self.results.pop(old), name=new)
            self._changed(RESULTS)
        self._changed(JOINTS)

    def remove_joint(self, name: str) -> None:
        self.joints.remove(self.joint(name))
        self._drop_result(name)
        self._changed(JOINTS)

    def _check_new_name(self, name: str) -> None:
        if not name:
            raise InputError("a joint needs a name")
        if name in self.names():
            raise InputError(f"joint {name} is already placed: pick another name or move it")

    def followup_xy(self, name: str) -> tuple[float, float] | None:
        """The follow-up position to show: the user's, else where the engine found the joint."""
        spec = self.joint(name)
        if spec.followup_xy is not None:
            return spec.followup_xy
        result = self.results.get(name)
        if result is not None and "followup_xy" in result.position:
            x, y = result.position["followup_xy"]
            return float(x), float(y)
        return None

    def specs(self, names: list[str] | None = None) -> list[JointSpec]:
        """Copies of the joints to run (all, or the named ones in placement order)."""
        chosen = [j for j in self.joints if names is None or j.name in names]
        return [dataclasses.replace(j) for j in chosen]

    # -- results --------------------------------------------------------------------------
    def set_results(self, results: list[JointResult], run_specs: list[JointSpec]) -> None:
        """Store a run's results (other joints keep theirs), each only if its joint is still
        where it was when the run started: a joint moved meanwhile waits for the next run."""
        current = {j.name: j for j in self.joints}
        for result, spec in zip(results, run_specs):
            if current.get(spec.name) == spec:
                self.results[spec.name] = result
        self._changed(RESULTS)

    def _drop_result(self, name: str) -> None:
        if self.results.pop(name, None) is not None:
            self._changed(RESULTS)

    def measured(self) -> list[JointResult]:
        """Results of the placed joints, in placement order."""
        return [self.results[j.name] for j in self.joints if j.name in self.results]

    def table_rows(self) -> list[dict]:
        """One row per placed joint: the result's table row, or just the name when not run."""
        return [(self.results[j.name].table_row() if j.name in self.results else {"joint": j.name})
                | {"placed": j.placed()} for j in self.joints]


def open_radiograph(path: str | Path, ask_spacing_mm: Callable[[str], float | None]) -> Radiograph | None:
    """Read a radiograph; when the file has no spacing, ask for it (None = the user gave up)."""
    image = read_radiograph(path, require_spacing=False)
    if image.spacing_mm is not None:
        return image
    spacing_mm = ask_spacing_mm(str(path))
    if spacing_mm is None:
        return None
    return read_radiograph(path, spacing_mm=spacing_mm)


def format_value(key: str, value) -> str:
    """A table cell as text: numbers to a sensible precision, blanks for joints not yet run."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.4f}" if key in ("jsn_mm", "lateral_shift_mm") else (
            f"{value:.2f}" if key in ("relative_rotation_deg", "confidence") else f"{value:.5f}")
    return str(value)


def clipboard_text(results: list[JointResult]) -> str:
    """Measured joints as tab-separated text with a header, in the report's CSV columns."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_row(r) for r in results)
    return out.getvalue()


def to_core_session(ws: Workspace, settings) -> core_session.Session:
    """The workspace as a jsnreg session (the core's file format and report input)."""
    paths = [image.meta.get("path") if image is not None else None for image in (ws.baseline, ws.followup)]
    if not all(paths):
        raise InputError("a session records image files: open both radiographs from files first")
    return core_session.Session.from_run(paths[0], paths[1], ws.baseline, ws.followup, ws.specs(),
                                         settings, ws.measured())


def from_core_session(saved: core_session.Session) -> tuple[Workspace, list[str]]:
    """A workspace reopened from a saved session, and the warnings to show.

    When an image is missing or changed the recorded results are not shown over it: the joints
    are restored and the warnings say why the numbers are gone.
    """
    pair = core_session.session_images(saved)
    if pair is None:
        raise InputError("the session's radiographs are missing or have changed:\n"
                         + "\n".join(saved.warnings))
    ws = Workspace()
    ws.set_image("baseline", pair[0])
    ws.set_image("followup", pair[1])
    ws.set_joints([record.spec() for record in saved.joints])
    results = [r for r in saved.results if r.name in ws.names()]
    for result in results:
        result.images = core_session.result_images(saved, result)
    ws.set_results(results, [ws.joint(r.name) for r in results])
    return ws, list(saved.warnings)


def demo_workspace(out_dir: Path = DEMO_DIR) -> Workspace:
    """The built-in synthetic hand pair, written as DICOM (so sessions and reports can record
    files), with the ten default joints placed, ready to run."""
    from jsnreg.synthetic import write_demo_case

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = write_demo_case(out_dir, seed=0)
    ws = Workspace()
    ws.set_image("baseline", read_radiograph(paths["baseline"]))
    ws.set_image("followup", read_radiograph(paths["followup"]))
    placed = {j.name: j for j in load_joints_json(paths["joints"])}
    ws.set_joints([JointSpec(n, placed[n].x, placed[n].y) for n in DEFAULT_JOINTS if n in placed])
    return ws
