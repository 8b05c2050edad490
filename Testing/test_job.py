"""The job protocol every face uses: request -> result files, in-process and as a worker process."""

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jsnreg import job, worker
from jsnreg.errors import InputError
from jsnreg.joints import joints_to_json, load_joints_json

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from jsnreg.synthetic import write_demo_case

    return {k: Path(v) for k, v in write_demo_case(tmp_path_factory.mktemp("demo")).items()}


def make_request(demo, out_dir, n_joints=2, **changes):
    joints = joints_to_json(load_joints_json(demo["joints"])[:n_joints])["joints"]
    request = {"baseline": str(demo["baseline"]), "followup": str(demo["followup"]), "spacing_mm": None,
               "joints": joints, "settings": {"roi_mm": 22.0, "refine": True}, "out_dir": str(out_dir)}
    request.update(changes)
    return request


@pytest.fixture(scope="module")
def finished_run(demo, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("run")
    events = []
    summary = job.run(make_request(demo, out_dir), on_progress=lambda *e: events.append(e))
    return out_dir, summary, events


def test_run_reports_progress_and_writes_result(demo, finished_run):
    out_dir, summary, events = finished_run
    names = [j["name"] for j in make_request(demo, out_dir)["joints"]]
    assert events == [(1, 2, names[0]), (2, 2, names[1])]
    on_disk = json.loads((out_dir / job.RESULT_FILE).read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert [r["name"] for r in on_disk["results"]] == names
    assert on_disk["spacing_mm"] > 0 and on_disk["settings"]["roi_mm"] == 22.0
    assert not list(out_dir.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_results_match_truth_and_load_back_with_images(demo, finished_run):
    out_dir, summary, _ = finished_run
    truth = json.loads(demo["truth"].read_text())
    loaded = job.load_result(out_dir)
    for r, d in zip(loaded, summary["results"]):
        assert math.isclose(r.jsn_mm, d["jsn_mm"], abs_tol=1e-12)
        assert r.images is not None and r.images.fixed.shape == r.images.upper_mask.shape
        assert r.images.upper_mask.dtype == bool and 0 < r.images.upper_mask.mean() < 1
        assert abs(r.jsn_mm - truth["truth_jsn_mm"][r.name]) < 0.1, (r.name, r.jsn_mm)
    with np.load(out_dir / job.ARRAYS_FILE) as npz:
        name = loaded[0].name
        assert {f"{name}/{k}" for k in job.ARRAY_NAMES} <= set(npz.files)
        np.testing.assert_allclose(npz[f"{name}/loss_after"], loaded[0].images.loss_after(), equal_nan=True)


def test_worker_process_prints_events_and_writes_result(demo, tmp_path):
    request = make_request(demo, tmp_path / "out", n_joints=1)
    (tmp_path / "request.json").write_text(json.dumps(request))
    proc = subprocess.run([sys.executable, "-m", "jsnreg.worker", str(tmp_path / "request.json")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # every stdout line is an event
    name = request["joints"][0]["name"]
    assert events[0] == {"event": "progress", "done": 1, "total": 1, "joint": name}
    assert events[-1]["event"] == "finished" and Path(events[-1]["out_dir"]) == (tmp_path / "out").resolve()
    assert [r.name for r in job.load_result(events[-1]["out_dir"])] == [name]


def test_worker_bad_request_exits_2_with_a_message(tmp_path):
    (tmp_path / "request.json").write_text(json.dumps({"baseline": str(tmp_path / "missing.dcm")}))
    proc = subprocess.run([sys.executable, "-m", "jsnreg.worker", str(tmp_path / "request.json")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [
        {"event": "error", "message": f"baseline radiograph not found: {tmp_path / 'missing.dcm'}"}]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_worker_other_failure_exits_1_without_traceback_on_stdout(tmp_path, monkeypatch):
    def broken(request, on_progress=None, should_cancel=None, workers=1):
        raise RuntimeError("disk full")

    monkeypatch.setattr(job, "run", broken)
    (tmp_path / "request.json").write_text("{}")
    out = io.StringIO()
    assert worker.main([str(tmp_path / "request.json")], out=out) == 1
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"event": "error", "message": "RuntimeError: disk full"}]
    out = io.StringIO()
    assert worker.main([], out=out) == 2 and "usage" in json.loads(out.getvalue())["message"]


@pytest.mark.parametrize("change, message", [
    ({"joints": []}, "non-empty list"),
    ({"joints": [{"name": "PIP2", "x": 1, "y": 2}, {"name": "PIP2", "x": 3, "y": 4}]}, "PIP2 given more than once"),
    ({"joints": [{"name": "PIP2", "x": 1, "y": 2, "followup_x": 5}]}, "both followup_x and followup_y"),
    ({"joints": [{"name": "PIP2", "x": "left", "y": 2}]}, "PIP2: x .* must be a number"),
    ({"settings": {"roi_mm": 22, "iterations": 3}}, "unknown setting.*iterations"),
    ({"settings": {"roi_mm": -1}}, "roi_mm .* must be positive"),
    ({"spacing_mm": 0}, "spacing_mm must be within 0.01-5 mm"),
    ({"colour": "red"}, "unknown request key.*colour"),
])
def test_bad_request_gives_a_clear_input_error(tmp_path, change, message):
    # The request is checked before any image is read: placeholder files are enough.
    files = {name: tmp_path / name for name in ("baseline.dcm", "followup.dcm")}
    for path in files.values():
        path.write_bytes(b"")
    request = {"baseline": str(files["baseline.dcm"]), "followup": str(files["followup.dcm"]),
               "joints": [{"name": "PIP2", "x": 1, "y": 2}], "out_dir": str(tmp_path), **change}
    with pytest.raises(InputError, match=message):
        job.run(request)
    assert not (tmp_path / job.RESULT_FILE).exists()


def test_cancel_between_joints_writes_nothing(demo, tmp_path):
    from jsnreg.quantify import Cancelled

    events = []
    with pytest.raises(Cancelled):
        job.run(make_request(demo, tmp_path / "out"), on_progress=lambda *e: events.append(e),
                should_cancel=lambda: len(events) >= 1)
    assert len(events) == 1
    assert not (tmp_path / "out" / job.RESULT_FILE).exists()


def test_results_of_two_runs_are_never_mixed(finished_run, tmp_path):
    out_dir, summary, _ = finished_run
    for name in (job.RESULT_FILE, job.ARRAYS_FILE):
        (tmp_path / name).write_bytes((out_dir / name).read_bytes())
    other = dict(summary, run_id="another-run")
    (tmp_path / job.RESULT_FILE).write_text(json.dumps(other))
    with pytest.raises(InputError, match="another run"):
        job.load_result(tmp_path)
    with pytest.raises(InputError, match="no finished run"):
        job.load_result(tmp_path / "empty")


def test_worker_stops_at_the_cancel_file_and_writes_nothing(demo, tmp_path):
    """Cooperative cancel as Slicer does it: the cancel file appears after the first joint (of several, so
    that the rest is still under way on a busy machine)."""
    request = make_request(demo, tmp_path / "out", n_joints=6)
    (tmp_path / "request.json").write_text(json.dumps(request))
    cancel_file = tmp_path / "cancel"
    proc = subprocess.Popen([sys.executable, "-m", "jsnreg.worker", str(tmp_path / "request.json"),
                             "--cancel-file", str(cancel_file)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = json.loads(proc.stdout.readline())
    cancel_file.touch()
    rest, stderr = proc.communicate(timeout=300)
    assert first["event"] == "progress" and first["done"] == 1
    events = [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == worker.EXIT_CANCELLED, stderr
    # at most the joints under way in the worker's two processes when the file appeared (their progress lines
    # may be written before this test, descheduled after reading the first, touches it)
    assert events[-1] == {"event": "cancelled"} and len(events) <= 3
    assert not (tmp_path / "out" / job.RESULT_FILE).exists()


def test_worker_cancel_file_present_from_the_start(demo, tmp_path):
    (tmp_path / "request.json").write_text(json.dumps(make_request(demo, tmp_path / "out")))
    (tmp_path / "cancel").touch()
    out = io.StringIO()
    assert worker.main([str(tmp_path / "request.json"), "--cancel-file", str(tmp_path / "cancel")], out=out) == 3
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [{"event": "cancelled"}]


def test_worker_writes_the_report_of_a_finished_run(finished_run, tmp_path):
    """The Slicer module exports the report through the worker (no torch in Slicer's process)."""
    out_dir, _, _ = finished_run
    proc = subprocess.run([sys.executable, "-m", "jsnreg.worker", "--report", str(out_dir),
                           str(tmp_path / "r.pdf")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [
        {"event": "finished", "report": str((tmp_path / "r.pdf").resolve())}]
    assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"
    out = io.StringIO()
    assert worker.main(["--report", str(out_dir), str(tmp_path / "r.txt")], out=out) == 2
    assert "should end in .pdf" in json.loads(out.getvalue())["message"]
    out = io.StringIO()
    assert worker.main(["--report", str(tmp_path / "nothing"), str(tmp_path / "r.pdf")], out=out) == 2
    assert "no finished run" in json.loads(out.getvalue())["message"]
