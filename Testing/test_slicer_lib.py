"""The Slicer module's pure helpers (JSNRegistrationLib), tested without Slicer or Qt.

They run inside Slicer's own Python, so `make test` runs them again in Python 3.9 with pydicom 2.4
(marker slicer_python); the one test that needs Qt and torch skips there."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slicer_python
MODULE_DIR = Path(__file__).resolve().parents[1] / "JSNRegistration"
sys.path.insert(0, str(MODULE_DIR))  # as Slicer does with the module folder

from JSNRegistrationLib import conversions, display  # noqa: E402
from JSNRegistrationLib import runner as runner_lib  # noqa: E402
from JSNRegistrationLib.runner import RunState, WorkerRunner  # noqa: E402

from jsnreg.errors import InputError  # noqa: E402
from jsnreg.figures import loss_vmax  # noqa: E402
from jsnreg.results import JointImages, JointResult  # noqa: E402
from jsnreg.transforms import BoneMotion  # noqa: E402


def rotation_z(deg):
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


# A DICOM-like radiograph: origin and axes in LPS, 0.15 x 0.2 mm pixels, turned by 30 degrees.
IJK_TO_LPS = conversions.ijk_to_ras_matrix([0.15, 0.2, 1.0], [-40.0, 25.0, 7.0], rotation_z(30))
IJK_TO_RAS = conversions.lps_to_ras_matrix(IJK_TO_LPS)
RAS_TO_IJK = np.linalg.inv(IJK_TO_RAS)


def test_lps_flip_negates_x_and_y_only():
    voxel = [[10.0, 20.0, 0.0]]
    lps = conversions.ijk_to_ras(voxel, IJK_TO_LPS)[0]
    ras = conversions.ijk_to_ras(voxel, IJK_TO_RAS)[0]
    assert np.allclose(ras, [-lps[0], -lps[1], lps[2]])
    assert np.allclose(conversions.ijk_to_ras([[0, 0, 0]], IJK_TO_RAS)[0], [40.0, -25.0, 7.0])
    # one column step moves 0.15 mm along the turned axis
    step = conversions.ijk_to_ras([[1, 0, 0]], IJK_TO_RAS)[0] - conversions.ijk_to_ras([[0, 0, 0]], IJK_TO_RAS)[0]
    assert np.isclose(np.linalg.norm(step), 0.15)


def test_ras_ijk_round_trip_and_joint_pixels():
    ijk = np.array([[120.5, 80.25, 0.0], [3.0, 199.0, 0.0]])
    ras = conversions.ijk_to_ras(ijk, IJK_TO_RAS)
    assert np.allclose(conversions.ras_to_ijk(ras, RAS_TO_IJK), ijk)
    xy = conversions.joint_xy(ras, RAS_TO_IJK, (200, 150), ["PIP2", "MCP3"])
    assert np.allclose(xy, ijk[:, :2])  # x = column (i), y = row (j)
    entries = conversions.joint_entries(["PIP2", " MCP3 "], xy)
    assert entries[1]["name"] == "MCP3" and np.allclose([entries[1]["x"], entries[1]["y"]], [3.0, 199.0])


def test_joint_off_plane_or_outside_is_refused():
    off_plane = conversions.ijk_to_ras([[10, 10, 3.0]], IJK_TO_RAS)
    with pytest.raises(InputError, match="PIP2.*off the baseline"):
        conversions.joint_xy(off_plane, RAS_TO_IJK, (200, 150), ["PIP2"])
    outside = conversions.ijk_to_ras([[160, 10, 0]], IJK_TO_RAS)
    with pytest.raises(InputError, match="outside"):
        conversions.joint_xy(outside, RAS_TO_IJK, (200, 150), ["PIP2"])
    with pytest.raises(InputError, match="no joints"):
        conversions.joint_entries([], np.zeros((0, 2)))


def test_volume_arrays():
    image = np.arange(12, dtype=np.float64).reshape(3, 4)
    vol = conversions.image_to_volume(image)
    assert vol.shape == (1, 3, 4) and vol.dtype == np.float32
    assert np.array_equal(conversions.volume_to_image(vol), image)
    with pytest.raises(InputError, match="single-slice"):
        conversions.volume_to_image(np.zeros((1, 3, 4, 3)))


def test_roi_volume_lands_where_it_was_cut():
    from functools import partial

    from jsnreg.rois import roi_to_image as core_roi_to_image

    size = 21
    roi_to_image = partial(core_roi_to_image, centre_xy=(60.0, 90.0), size_px=size, angle_rad=np.radians(25))
    affine = conversions.roi_affine_xy(roi_to_image, size)
    roi_ras = conversions.roi_ijk_to_ras(IJK_TO_RAS, affine)
    roi_px = np.array([[0, 0, 0], [10, 10, 0], [20, 3, 0]], dtype=float)
    expected = conversions.ijk_to_ras(np.c_[roi_to_image(roi_px[:, :2]), np.zeros(3)], IJK_TO_RAS)
    assert np.allclose(conversions.ijk_to_ras(roi_px, roi_ras), expected)


def test_build_request_and_source_file():
    req = conversions.build_request("a.dcm", "b.dcm", [{"name": "PIP2", "x": 1.0, "y": 2.0}], "out", 22, True, 0.0)
    assert req["spacing_mm"] is None and req["settings"] == {"roi_mm": 22.0, "refine": True}
    assert conversions.build_request("a", "b", [], "o", 20, False, 0.1)["spacing_mm"] == 0.1
    assert conversions.source_file("/x/a.nrrd", False, []) == "/x/a.nrrd"
    assert conversions.source_file("/x/a.nrrd", True, ["/db/1.dcm"]) == "/db/1.dcm"
    assert conversions.source_file(None, False, ["/db/1.dcm", "/db/2.dcm"]) is None


def joint_result(name, dy_upper, flagged=False, reason=""):
    rng = np.random.default_rng(len(name))
    fixed = rng.random((32, 32))
    moving = np.roll(fixed, 1, axis=0)
    mask = np.zeros((32, 32), bool)
    mask[:16] = True
    warped = fixed + 0.01
    warped[0] = np.nan
    images = JointImages(fixed, moving, mask, warped, warped)
    return JointResult(name, 0.1, BoneMotion(dy_px=dy_upper), BoneMotion(dy_px=0.5), 0.02, 0.001, 0.9,
                       flagged, reason, images=images)


def test_table_columns_follow_table_row():
    results = [joint_result("PIP2", 2.5), joint_result("MCP3", 0.5, True, "poor fit")]
    columns = {name: (kind, values) for name, kind, values in display.table_columns(results)}
    assert list(columns) == list(results[0].table_row())
    assert columns["joint"] == ("text", ["PIP2", "MCP3"])
    assert columns["flagged"] == ("text", ["", "yes"])
    assert columns["placed"] == ("text", ["manual", "manual"])  # results without a placement record
    assert columns["jsn_mm"][0] == "number"
    assert np.allclose(columns["jsn_mm"][1], [0.2, 0.0])  # (2.5 - 0.5) px * 0.1 mm
    assert display.table_columns([]) == []
    assert display.flag_marks(results) == {"MCP3": "poor fit"}


def test_overlays_and_shared_loss_scale():
    images = joint_result("PIP2", 1.0).images
    overlays = display.overlay_images(images)
    assert set(overlays) == set(display.OVERLAYS)
    assert all(np.isfinite(v).all() and v.shape == (32, 32) for v in overlays.values())
    before, after = display.display_range(images, "loss_before"), display.display_range(images, "loss_after")
    assert before == after == (0.0, loss_vmax(images))  # one scale, so before/after compare by eye
    assert display.display_range(images, "checkerboard") == (0.0, 1.0)
    assert display.slice_layers("loss_after") == {"background": "checkerboard", "foreground": "loss_after",
                                                  "foreground_opacity": 0.5}
    assert display.slice_layers("fixed")["foreground"] is None


class Signal:
    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def emit(self, *args):
        for slot in self.slots:
            slot(*args)


class FakeProcess:
    """QProcess's interface; the test plays the worker by feeding output and firing signals."""

    def __init__(self):
        self.readyReadStandardOutput, self.finished, self.errorOccurred = Signal(), Signal(), Signal()
        self.stdout, self.stderr, self.exit_code = b"", b"", 0
        self.started, self.killed = None, False

    def start(self, program, args):
        self.started = (program, list(args))

    def kill(self):
        self.killed = True

    def readAllStandardOutput(self):
        out, self.stdout = self.stdout, b""
        return out

    def readAllStandardError(self):
        return self.stderr

    def exitCode(self):
        return self.exit_code

    def write(self, data: bytes):
        self.stdout += data
        self.readyReadStandardOutput.emit()


def make_runner():
    calls = []
    process = FakeProcess()
    runner = WorkerRunner(process, lambda *a: calls.append(("progress", *a)), lambda d: calls.append(("finished", d)),
                          lambda m: calls.append(("error", m)), lambda: calls.append(("cancelled",)))
    runner.start("PythonSlicer", ["-m", "jsnreg.worker", "r.json"])
    return runner, process, calls


def event(**kw):
    return (json.dumps(kw) + "\n").encode()


def test_runner_progress_then_finished_with_split_lines():
    runner, process, calls = make_runner()
    assert process.started == ("PythonSlicer", ["-m", "jsnreg.worker", "r.json"])
    line = event(event="progress", done=1, total=2, joint="PIP2")
    process.write(line[:10])  # a line arriving in two reads
    assert calls == []
    process.write(line[10:] + b"a stray log line\n" + event(event="progress", done=2, total=2, joint="MCP3"))
    process.write(event(event="finished", out_dir="/tmp/out", joints=2, flagged=[])[:-1])  # no final newline
    process.finished.emit(0, 0)
    assert calls == [("progress", 1, 2, "PIP2"), ("progress", 2, 2, "MCP3"), ("finished", "/tmp/out")]
    assert runner.state == RunState.FINISHED and runner.ignored_lines == ["a stray log line"]


def test_runner_error_event_and_crash():
    runner, process, calls = make_runner()
    process.write(event(event="error", message="joint PIP2 lies outside the baseline"))
    process.exit_code = 2
    process.finished.emit(2, 0)
    assert calls == [("error", "joint PIP2 lies outside the baseline")] and runner.state == RunState.FAILED

    runner, process, calls = make_runner()
    process.stderr, process.exit_code = b"Traceback...\nMemoryError\n", 1
    process.finished.emit(1, 1)
    assert calls[0][0] == "error" and "exit code 1" in calls[0][1] and "MemoryError" in calls[0][1]


def test_runner_cancel_kills_and_reports_cancelled():
    runner, process, calls = make_runner()
    process.write(event(event="progress", done=1, total=3, joint="PIP2"))
    runner.cancel()
    assert process.killed and runner.state == RunState.CANCELLING and runner.running
    process.write(event(event="progress", done=2, total=3, joint="PIP3"))  # late output is not progress
    process.finished.emit(9, 1)
    assert calls == [("progress", 1, 3, "PIP2"), ("cancelled",)] and runner.state == RunState.CANCELLED
    runner.start("PythonSlicer", [])  # a finished runner can start again
    assert runner.running


def test_runner_failed_start():
    runner, process, calls = make_runner()
    process.errorOccurred.emit(0)  # QProcess::FailedToStart, no finished signal follows
    assert calls == [("error", "could not start the worker (PythonSlicer): is it installed?")]
    assert not runner.running
    with pytest.raises(RuntimeError):
        runner2, _, _ = make_runner()
        runner2.start("again", [])


def make_cooperative_runner(tmp_path):
    calls, timers = [], []
    process = FakeProcess()
    runner = WorkerRunner(process, lambda *a: calls.append(("progress", *a)), lambda d: calls.append(("finished", d)),
                          lambda m: calls.append(("error", m)), lambda: calls.append(("cancelled",)),
                          schedule=lambda s, f: timers.append((s, f)), kill_after_s=7.0)
    request = tmp_path / "request.json"
    (tmp_path / "cancel").touch()  # left over from an earlier run in this folder
    runner.start("PythonSlicer", runner_lib.measure_arguments(str(request)))
    assert not (tmp_path / "cancel").exists()
    return runner, process, calls, timers


def test_runner_cancel_asks_the_worker_and_kills_only_after_the_timeout(tmp_path):
    runner, process, calls, timers = make_cooperative_runner(tmp_path)
    assert process.started[1] == ["-m", "jsnreg.worker", str(tmp_path / "request.json"),
                                  "--cancel-file", str(tmp_path / "cancel")]
    runner.cancel()
    assert (tmp_path / "cancel").exists() and not process.killed and runner.state == RunState.CANCELLING
    assert [s for s, _ in timers] == [7.0]
    process.write(event(event="cancelled"))
    process.exit_code = 3
    process.finished.emit(3, 0)
    assert calls == [("cancelled",)] and runner.state == RunState.CANCELLED
    timers[0][1]()  # the timeout fires after the worker stopped by itself: nothing to kill
    assert not process.killed

    runner, process, calls, timers = make_cooperative_runner(tmp_path)
    runner.cancel()
    timers[0][1]()  # the worker did not stop in time (e.g. still loading): killed now
    assert process.killed
    process.finished.emit(9, 1)
    assert calls == [("cancelled",)]


def test_runner_finished_event_of_a_report(tmp_path):
    runner, process, calls, _ = make_cooperative_runner(tmp_path)
    process.write(event(event="finished", report="/tmp/r.pdf"))
    process.finished.emit(0, 0)
    assert calls == [("finished", "/tmp/r.pdf")]
    assert runner_lib.report_arguments("/runs/a", "/x/r.pdf") == ["-m", "jsnreg.worker", "--report", "/runs/a",
                                                                   "/x/r.pdf"]


def test_run_folders_are_unique_and_the_core_goes_first_on_the_python_path(tmp_path):
    folders = {runner_lib.new_run_folder(str(tmp_path / "JSNRegistration")) for _ in range(5)}
    assert len(folders) == 5 and all(Path(f).is_dir() and Path(f).parent == tmp_path / "JSNRegistration"
                                     for f in folders)
    sep = os.pathsep
    assert runner_lib.python_path_with("/m", "") == "/m"
    assert runner_lib.python_path_with("/m", f"/a{sep}/m{sep}/b") == f"/m{sep}/a{sep}/b"


def test_runner_drives_the_real_worker_through_a_qprocess(tmp_path):
    """QProcess (PyQt5 here, PythonQt in Slicer) running the real worker: progress, then a
    cooperative cancel after the first joint; the process ends by itself, nothing is written."""
    import time

    pytest.importorskip("torch")
    QtCore = pytest.importorskip("PyQt5.QtCore")
    QProcess, QTimer = QtCore.QProcess, QtCore.QTimer
    app = QtCore.QCoreApplication.instance() or QtCore.QCoreApplication([])

    from jsnreg.joints import joints_to_json, load_joints_json
    from jsnreg.synthetic import write_demo_case

    demo = write_demo_case(tmp_path / "demo")
    folder = Path(runner_lib.new_run_folder(str(tmp_path / "runs")))
    request = conversions.build_request(demo["baseline"], demo["followup"],
                                        joints_to_json(load_joints_json(demo["joints"])[:4])["joints"],
                                        str(folder / "result"), 22.0, True)
    (folder / "request.json").write_text(json.dumps(request))
    calls = []
    process = QProcess()
    runner = WorkerRunner(process, lambda *a: (calls.append(("progress", *a)), runner.cancel()),
                          lambda d: calls.append(("finished", d)), lambda m: calls.append(("error", m)),
                          lambda: calls.append(("cancelled",)),
                          schedule=lambda s, f: QTimer.singleShot(int(s * 1000), f), kill_after_s=120.0)
    env = process.processEnvironment()
    env.insert("PYTHONPATH", runner_lib.python_path_with(str(MODULE_DIR), os.environ.get("PYTHONPATH", "")))
    process.setProcessEnvironment(env)
    runner.start(sys.executable, runner_lib.measure_arguments(str(folder / "request.json")))
    deadline = time.monotonic() + 240
    while runner.running and time.monotonic() < deadline:
        app.processEvents(QtCore.QEventLoop.AllEvents, 100)
        process.waitForReadyRead(100)
    assert calls[0][:3] == ("progress", 1, 4) and calls[-1] == ("cancelled",), calls
    assert process.exitCode() == 3  # the worker stopped itself: it was not killed
    assert not (folder / "result" / "result.json").exists()


def blob(shape_rc, centre_xy, sigma_xy):
    rows, cols = np.mgrid[:shape_rc[0], :shape_rc[1]].astype(float)
    return 0.1 + 0.8 * np.exp(-0.5 * (((cols - centre_xy[0]) / sigma_xy[0]) ** 2
                                     + ((rows - centre_xy[1]) / sigma_xy[1]) ** 2))


def centroid_xy(pixels):
    w = np.clip(pixels - 0.5, 0, None)
    rows, cols = np.mgrid[:pixels.shape[0], :pixels.shape[1]]
    return np.array([(w * cols).sum() / w.sum(), (w * rows).sum() / w.sum()])


def test_anisotropic_volume_joints_and_rois_on_the_cores_grid(tmp_path):
    """A file with 0.1 x 0.25 mm pixels (column x row): the core resamples it to 0.1 mm; a joint
    at a volume pixel lands on the same spot of the core's image, and an ROI cut there is placed
    back on it."""
    import SimpleITK as sitk

    from jsnreg import rois
    from jsnreg.images import read_radiograph

    spacing_ij, centre_vol = (0.1, 0.25), np.array([52.3, 20.6])
    # the same physical blob (1 mm wide) on the anisotropic grid
    volume = blob((48, 120), centre_vol, (1.0 / spacing_ij[0], 1.0 / spacing_ij[1]))
    image = sitk.GetImageFromArray(volume.astype(np.float32))
    image.SetSpacing(spacing_ij)
    sitk.WriteImage(image, str(tmp_path / "aniso.nrrd"))
    core = read_radiograph(tmp_path / "aniso.nrrd")
    assert core.spacing_mm == pytest.approx(0.1) and core.pixels.shape == (120, 120)

    zoom = conversions.core_zoom_xy(spacing_ij)
    assert np.allclose(zoom, [1.0, 2.5])
    assert np.allclose(conversions.core_zoom_xy(spacing_ij, spacing_given_mm=0.2), [1, 1])  # user spacing: as is
    assert np.allclose(conversions.core_zoom_xy((0.2, 0.2)), [1, 1])
    centre_core = conversions.volume_xy_to_core([centre_vol], zoom)[0]
    assert np.allclose(centre_core, centroid_xy(core.pixels), atol=0.05)
    back = conversions.core_to_volume_xy_matrix(zoom) @ [*centre_core, 1.0]
    assert np.allclose(back[:2], centre_vol)

    # a joint clicked in RAS on the volume -> the core's pixel
    ijk_to_ras = conversions.lps_to_ras_matrix(conversions.ijk_to_ras_matrix([*spacing_ij, 1.0], [5.0, 7.0, 0.0]))
    ras = conversions.ijk_to_ras([[*centre_vol, 0.0]], ijk_to_ras)
    xy = conversions.joint_xy(ras, np.linalg.inv(ijk_to_ras), volume.shape, ["PIP2"], zoom)
    assert np.allclose(xy[0], centre_core)

    # an ROI cut (turned) around it on the core's grid is placed back on the blob in RAS
    size, angle = 41, 0.3
    roi = rois.cut_roi(core.pixels, tuple(centre_core), size, angle)
    affine = conversions.roi_affine_xy(lambda p: rois.roi_to_image(p, centre_xy=tuple(centre_core), size_px=size,
                                                                   angle_rad=angle), size)
    roi_to_ras = conversions.roi_ijk_to_ras(ijk_to_ras, affine, zoom)
    roi_blob_ras = conversions.ijk_to_ras([[*centroid_xy(roi), 0.0]], roi_to_ras)[0]
    assert np.allclose(roi_blob_ras, ras[0], atol=0.01)  # mm
    # one ROI pixel is 0.1 mm along both of its axes
    steps = roi_to_ras[:3, :2]
    assert np.allclose(np.linalg.norm(steps, axis=0), 0.1)


def test_auto_naming_by_the_events_index_and_only_for_placed_points():
    from JSNRegistrationLib.naming import auto_joint_label, is_default_label

    labels = ["IP1", "Joints-2", "MCP2"]
    # the point defined is #1 (not the last one): it gets the first standard name not taken
    assert auto_joint_label(labels, 1, "Joints", placed_interactively=True) == "MCP1"
    assert labels == ["IP1", "Joints-2", "MCP2"]  # not changed in place
    # added from a script, or placed again with its joint name kept: left alone
    assert auto_joint_label(labels, 1, "Joints", placed_interactively=False) is None
    assert auto_joint_label(labels, 2, "Joints", placed_interactively=True) is None
    assert auto_joint_label(labels, 5, "Joints", placed_interactively=True) is None  # stale index
    assert auto_joint_label(["", "IP1"], 0, "Joints", True) == "MCP1"
    assert is_default_label("F-12", "F") and is_default_label("Joints_3", "Joints", "%N_%d")
    assert not is_default_label("Joints-2b", "Joints") and not is_default_label("PIP2", "Joints")
    assert is_default_label("My (hand)-1", "My (hand)")  # the node name is matched literally


def test_missing_requirements_keep_their_bounds_for_pip():
    from JSNRegistrationLib.dependencies import missing_requirements, requirements

    import ast

    text = (MODULE_DIR.parent / "Resources" / "requirements.txt").read_text()
    setup = ast.parse((MODULE_DIR.parent / "setup.py").read_text())
    install_requires = next(ast.literal_eval(k.value) for n in ast.walk(setup) if isinstance(n, ast.Call)
                            for k in n.keywords if k.arg == "install_requires")
    assert sorted(requirements(text)) == sorted(install_requires)  # what the module installs = what the core needs
    present = {"numpy", "scipy", "matplotlib", "contourpy"}
    assert missing_requirements(text, present.__contains__) == ["SimpleITK>=2.2", "pydicom>=2.4"]
    assert missing_requirements("# none\n\nscikit-image>=0.20  # for x\n", {"skimage"}.__contains__) == []
    assert missing_requirements(text) == []  # this environment has them all


def test_reload_packages_picks_up_edits_in_dependency_order(tmp_path, monkeypatch):
    from JSNRegistrationLib.reloading import reload_packages

    pkg = tmp_path / "reloadpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "b.py").write_text("VALUE = 1\n")
    (pkg / "a.py").write_text("from .b import VALUE\nDOUBLE = 2 * VALUE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    import reloadpkg.a

    assert reloadpkg.a.DOUBLE == 2
    (pkg / "b.py").write_text("VALUE = 100  # edited\n")
    names = reload_packages(["reloadpkg"])
    assert set(names) == {"reloadpkg", "reloadpkg.a", "reloadpkg.b"}
    assert names.index("reloadpkg.b") < names.index("reloadpkg.a")
    assert sys.modules["reloadpkg.a"].DOUBLE == 200
    for name in [n for n in sys.modules if n.startswith("reloadpkg")]:
        monkeypatch.delitem(sys.modules, name)


def test_detected_joints_land_on_an_anisotropic_volume(tmp_path):
    """The demo baseline stored with 0.2 x 0.4 mm pixels (every two rows averaged): the core reads
    it back at 0.2 mm, the detector runs on that, and the points land on the joints of the volume."""
    import SimpleITK as sitk

    from jsnreg.images import read_radiograph
    from jsnreg.joints import DEFAULT_JOINTS, load_joints_json
    from jsnreg.synthetic import write_demo_case
    from JSNRegistrationLib.detection import detected_points

    demo = write_demo_case(tmp_path / "demo")
    iso = read_radiograph(demo["baseline"])
    rows = iso.pixels.shape[0] // 2 * 2
    volume = iso.pixels[:rows].reshape(rows // 2, 2, -1).mean(axis=1)
    spacing_ij = (iso.spacing_mm, 2 * iso.spacing_mm)
    image = sitk.GetImageFromArray(volume.astype(np.float32))
    image.SetSpacing(spacing_ij)
    sitk.WriteImage(image, str(tmp_path / "aniso.nrrd"))
    core = read_radiograph(tmp_path / "aniso.nrrd")
    zoom = conversions.core_zoom_xy(spacing_ij)
    ijk_to_ras = conversions.lps_to_ras_matrix(conversions.ijk_to_ras_matrix([*spacing_ij, 1.0], [3.0, -4.0, 0.0]))
    points = detected_points(core.pixels, core.spacing_mm, zoom, ijk_to_ras)

    truth = {s.name: s for s in load_joints_json(demo["joints"])}
    found = {p["name"]: p for p in points}
    assert set(DEFAULT_JOINTS) <= set(found)
    for name in DEFAULT_JOINTS:
        i, j, k = found[name]["ijk"]
        truth_ij = np.array([truth[name].x, (truth[name].y + 0.5) / 2 - 0.5])  # the volume's grid
        error_mm = np.hypot(*((np.array([i, j]) - truth_ij) * spacing_ij))
        assert error_mm < 1.0 and k == 0.0, (name, error_mm)
        assert np.allclose(found[name]["ras"], conversions.ijk_to_ras([[i, j, k]], ijk_to_ras)[0])
        assert 0.0 <= found[name]["confidence"] <= 1.0


def test_detected_points_follow_the_detector_and_joint_sources():
    from types import SimpleNamespace

    from JSNRegistrationLib.detection import detected_points, detected_record, joint_sources

    fake = [SimpleNamespace(name="MCP2", x=9.0, y=4.0, confidence=0.8), SimpleNamespace(name="IP1", x=1.0, y=2.0,
                                                                                         confidence=0.3)]
    points = detected_points(np.zeros((5, 5)), 0.1, (1.0, 2.5), np.eye(4), detect=lambda px, mm: fake)
    assert [p["name"] for p in points] == ["MCP2", "IP1"]
    assert np.allclose(points[0]["ijk"], [9.0, (4.0 + 0.5) / 2.5 - 0.5, 0.0]) and points[1]["confidence"] == 0.3
    assert detected_points(np.zeros((5, 5)), 0.1, (1, 1), np.eye(4), detect=lambda px, mm: []) == []

    detected = detected_record([{"name": "MCP2", "ras": (1.0, 2.0, 0.0), "confidence": 0.8},
                                {"name": "PIP2", "ras": (5.0, 5.0, 0.0), "confidence": 0.3}])
    assert json.loads(json.dumps(detected)) == detected  # kept as a node attribute
    points_ras = [[1.0, 2.0, 0.0], [5.0, 5.3, 0.0], [0, 0, 0]]
    assert joint_sources(["MCP2", "PIP2", "IP1"], points_ras, detected) == [
        ("detected", False, 0.8), ("detected", True, 0.3), ("manual", False, None)]
    # a scene saved before the confidences were kept: positions only
    assert joint_sources(["MCP2"], points_ras[:1], {"MCP2": [1.0, 2.0, 0.0]}) == [("detected", False, None)]
    entries = conversions.joint_entries(["MCP2", "PIP2"], np.array([[3.0, 4.0], [5.0, 6.0]]),
                                        [("detected", True, 0.3), ("detected", False, None)])
    assert entries == [{"name": "MCP2", "x": 3.0, "y": 4.0, "source": "detected", "moved": True,
                        "detect_confidence": 0.3},
                       {"name": "PIP2", "x": 5.0, "y": 6.0, "source": "detected", "moved": False}]
    assert "source" not in conversions.joint_entries(["MCP2"], np.array([[3.0, 4.0]]))[0]


def test_what_slicers_process_imports_pulls_no_torch():
    """The Lib's pure modules and the core modules scene.py uses (results, overlays, detection,
    reading the baseline) import no torch, so Slicer's own process never loads it."""
    import subprocess

    modules = ["JSNRegistrationLib." + p.stem for p in (MODULE_DIR / "JSNRegistrationLib").glob("*.py")
               if p.stem not in ("scene", "selftest", "__init__")]
    modules += ["jsnreg.job", "jsnreg.rois", "jsnreg.images", "jsnreg.detect"]
    code = f"import sys; import {', '.join(modules)}; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(MODULE_DIR)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
