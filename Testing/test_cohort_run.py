"""Cohort runs for real: Dask workers, the core pipeline, the store; resume after kill -9."""

from __future__ import annotations

import base64
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("dask.distributed")

from jsnreg.cli import main  # noqa: E402
from jsnreg.cohort.demo import render_visit  # noqa: E402
from jsnreg.cohort.tasks import NO_DETECTION  # noqa: E402
from jsnreg.images import write_dicom  # noqa: E402
from jsnreg.quantify import Settings  # noqa: E402

JOINTS = ("MCP3", "PIP3")
RATE = {"MCP3": 0.3, "PIP3": 0.15}  # mm/year
DATES = ("2020-01-01", "2021-01-01", "2022-01-01")
HAS_DETECT = __import__("importlib").util.find_spec("jsnreg.detect") is not None


def _write_hand(d: Path, name: str, seed: int, k: int, noise_seed: int | None = None) -> dict:
    years = k * 1.0
    pixels, xy = render_visit(seed, {j: RATE[j] * years for j in JOINTS}, k if noise_seed is None else noise_seed)
    write_dicom(d / f"{name}_v{k + 1}.dcm", pixels, 0.2)
    return xy


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two generated hands x three visits (one year apart), their joints files, and manifests."""
    d = tmp_path_factory.mktemp("cohort")
    for name, seed in (("A", 501), ("B", 502)):
        for k in range(3):
            xy = _write_hand(d, name, seed, k)
            if k == 0:
                entries = ",".join(f'{{"name": "{j}", "x": {xy[j][0]}, "y": {xy[j][1]}}}' for j in JOINTS)
                (d / f"{name}.json").write_text(f'{{"joints": [{entries}]}}')
    rows = [f"{p},{DATES[k]},{p}_v{k + 1}.dcm,,{p + '.json' if k == 0 else ''}" for p in "AB" for k in range(3)]
    bad = ["D,2020-01-01,A_v1.dcm,,A.json", "D,2021-01-01,D_missing.dcm,,",  # missing image: one visit left
           "A,2020-01-01,A_v1.dcm,,A.json"]  # duplicate row
    (d / "manifest.csv").write_text("patient,date,image,spacing_mm,joints\n" + "\n".join(rows + bad) + "\n")
    # Six patients on the same files: enough pairs (18) for a run to be killed in its middle.
    many = [f"{p}{c},{DATES[k]},{p}_v{k + 1}.dcm,,{p + '.json' if k == 0 else ''}"
            for c in range(3) for p in "AB" for k in range(3)]
    (d / "nojoints.csv").write_text("patient,date,image\nC,2020-01-01,A_v1.dcm\nC,2021-01-01,A_v2.dcm\n")
    (d / "many.csv").write_text("patient,date,image,spacing_mm,joints\n" + "\n".join(many) + "\n")
    return d


@pytest.fixture(scope="module")
def client():
    from jsnreg.cohort.run import dask_client

    with dask_client(2) as c:
        yield c


def _rows(store, sql="SELECT COUNT(*) FROM measurements"):
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_run_resume_change_and_report(cohort, client, tmp_path, capsys):
    from jsnreg.cohort.run import run_cohort

    store = tmp_path / "s.sqlite"
    first = run_cohort(cohort / "manifest.csv", store, client=client, progress=False)
    assert first["planned"] == 2 * 3 * 2 and first["measured"] == 12 and first["failed"] == 0
    assert first["pending"] == 0 and first["errors"] == []
    # The numbers are the pipeline's: baseline pairs near the known narrowing.
    for patient, joint, to, jsn in _rows(store, "SELECT patient, joint, to_visit, jsn_mm FROM measurements "
                                                "WHERE kind LIKE 'baseline%'"):
        years = DATES.index(to) * 1.0
        assert jsn == pytest.approx(RATE[joint] * years, abs=0.05), (patient, joint, to)
    workers = {w for (w,) in _rows(store, "SELECT DISTINCT worker FROM measurements")}
    assert len(workers) >= 1 and all(str(os.getpid()) not in w.split(":")[-1] for w in workers)  # read by workers

    again = run_cohort(cohort / "manifest.csv", store, client=client, progress=False)
    assert (again["already"], again["measured"]) == (12, 0)

    # A changed image: only the pairs that use it (and the pair placed from it) are measured again.
    time.sleep(0.01)
    _write_hand(cohort, "B", 502, 1, noise_seed=77)
    changed = run_cohort(cohort / "manifest.csv", store, client=client, progress=False)
    assert changed["measured"] == 2 * 2
    redone = _rows(store, "SELECT DISTINCT patient, from_visit, to_visit FROM measurements WHERE run_id = 3")
    assert sorted(redone) == [("B", DATES[0], DATES[1]), ("B", DATES[1], DATES[2])]
    assert _rows(store)[0][0] == 12  # replaced, not added

    # Other settings: measured anew, the old rows kept apart and not mixed in.
    other = run_cohort(cohort / "manifest.csv", store, client=client, progress=False, settings=Settings(roi_mm=20.0))
    assert (other["already"], other["measured"]) == (0, 12)
    assert _rows(store)[0][0] == 24

    assert main(["cohort", "status", str(store)]) == 0
    text = capsys.readouterr().out
    assert "12 planned, 12 done" in text and "12 older rows kept" in text
    assert "missing image" in text and "duplicate row" in text
    assert "patient D: one visit only" in text

    out = tmp_path / "report"
    assert main(["cohort", "report", str(store), "--out", str(out)]) == 0
    html = (out / "summary.html").read_text()
    pngs = html.split('src="data:image/png;base64,')[1:]
    assert len(pngs) == 3
    assert all(base64.b64decode(p.split('"')[0])[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "missing image" in html and "one visit only" in html and "http" not in html.replace("http-equiv", "")
    traj = (out / "trajectories.csv").read_text().splitlines()
    assert len(traj) == 1 + 4
    import csv

    for t in csv.DictReader(open(out / "trajectories.csv")):
        assert float(t["rate_mm_per_year"]) == pytest.approx(RATE[t["joint"]], abs=0.05)
        assert t["flagged"] == "False"
    assert len(list(csv.DictReader(open(out / "transitivity.csv")))) == 4
    pq = pytest.importorskip("pyarrow.parquet")
    assert pq.read_table(out / "measurements.parquet").num_rows == 12


def test_unreadable_image_and_no_spacing_in_a_real_run(cohort, client, tmp_path, capsys):
    """A visit whose file is garbage and one whose PNG has no spacing (none given): each gets its
    status in the store, `cohort status` and the report; the patients' other visits are measured."""
    import json

    from jsnreg.cohort.run import run_cohort
    from jsnreg.images import write_png

    (cohort / "garbage.dcm").write_bytes(bytes(range(256)) * 40)
    write_png(cohort / "B_v2_nospacing.png", render_visit(502, {j: RATE[j] for j in JOINTS}, 1)[0])
    (cohort / "bad_images.csv").write_text(
        "patient,date,image,joints,site\n"
        "E,2020-01-01,A_v1.dcm,A.json,S1\nE,2021-01-01,garbage.dcm,,S1\nE,2022-01-01,A_v3.dcm,,S1\n"
        "F,2020-01-01,B_v1.dcm,B.json,S2\nF,2021-01-01,B_v2_nospacing.png,,S2\nF,2022-01-01,B_v3.dcm,,S2\n")
    store = tmp_path / "bad.sqlite"
    counts = run_cohort(cohort / "bad_images.csv", store, client=client, progress=False)
    assert (counts["planned"], counts["measured"], counts["failed"], counts["pending"]) == (4, 4, 0, 0)
    status = dict(_rows(store, "SELECT patient, status FROM visits WHERE date = '2021-01-01'"))
    assert status["E"].startswith("unreadable image") and "garbage.dcm" in status["E"]
    assert status["F"].startswith("no pixel spacing")
    assert _rows(store, "SELECT patient, status, n_visits FROM patients ORDER BY patient") == [("E", "ok", 2),
                                                                                               ("F", "ok", 2)]
    for patient, joint, frm, to, jsn in _rows(store, "SELECT patient, joint, from_visit, to_visit, jsn_mm "
                                                     "FROM measurements WHERE status = 'ok'"):
        assert (frm, to) == (DATES[0], DATES[2]) and jsn == pytest.approx(2 * RATE[joint], abs=0.05), patient

    assert main(["cohort", "status", str(store)]) == 0
    text = capsys.readouterr().out
    assert "4 planned, 4 done" in text
    assert "visit E 2021-01-01 (line 3): unreadable image" in text
    assert "visit F 2021-01-01 (line 6): no pixel spacing" in text
    out = tmp_path / "bad_report"
    assert main(["cohort", "report", str(store), "--out", str(out)]) == 0
    html = (out / "summary.html").read_text()
    assert "unreadable image" in html and "no pixel spacing" in html
    flags = json.loads((out / "summary.json").read_text())["visit_flags"]
    assert [(r["site"], r["visit_index"], r["measured"]) for r in flags] == [("S1", 2, 2), ("S2", 2, 2)]


def test_existing_scheduler_address(cohort, client, tmp_path):
    """--scheduler ADDRESS: the same run on a scheduler the command did not start."""
    (cohort / "one_pair.csv").write_text("patient,date,image,joints\nA,2020-01-01,A_v1.dcm,A.json\n"
                                         "A,2021-01-01,A_v2.dcm,\n")
    store = tmp_path / "sched.sqlite"
    assert main(["cohort", "run", str(cohort / "one_pair.csv"), "--store", str(store), "--no-progress",
                 "--scheduler", client.scheduler.address]) == 0
    assert _rows(store, "SELECT COUNT(*), MIN(status) FROM measurements")[0] == (2, "ok")
    assert "LocalCluster" not in _rows(store, "SELECT cluster FROM runs")[0][0]


def test_baseline_without_joints_file(cohort, client, tmp_path):
    """Joints detected on the baseline where jsnreg.detect exists, else a clear status (no guess)."""
    from jsnreg.cohort.run import run_cohort

    store = tmp_path / "d.sqlite"
    counts = run_cohort(cohort / "nojoints.csv", store, client=client, progress=False)
    ((status, source),) = _rows(store, "SELECT status, joints_source FROM patients WHERE patient = 'C'")
    if HAS_DETECT:
        assert (status, source) == ("ok", "detected")
        assert counts["measured"] >= 10 and counts["failed"] == 0
        rows = dict(_rows(store, "SELECT joint, jsn_mm FROM measurements"))
        for joint in JOINTS:
            assert rows[joint] == pytest.approx(RATE[joint], abs=0.05)
    else:
        assert status == NO_DETECTION and counts["planned"] == 0


def _children(pid):
    import psutil

    return psutil.Process(pid).children(recursive=True)


def _wait_rows(store, at_least, proc, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if store.exists():
            try:
                if _rows(store)[0][0] >= at_least:
                    return
            except sqlite3.OperationalError:
                pass  # the schema is being made
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    raise AssertionError("no rows in time")


def test_kill_9_of_a_worker_and_of_the_run_then_resume(cohort, tmp_path):
    """A worker SIGKILLed mid-run is replaced; the whole run SIGKILLed mid-run resumes with only
    what is missing: every planned row once, none measured twice."""
    import psutil

    store = tmp_path / "k.sqlite"
    cmd = [sys.executable, "-m", "jsnreg", "cohort", "run", str(cohort / "many.csv"), "--store", str(store),
           "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_rows(store, 2, proc)
        workers = [c for c in _children(proc.pid) if "python" in c.name().lower()]
        assert workers
        workers[0].send_signal(signal.SIGKILL)
        _wait_rows(store, 6, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    time.sleep(1.0)
    for c in psutil.process_iter(["cmdline"]):  # nothing of the killed run is left behind
        assert str(store) not in " ".join(c.info["cmdline"] or [])
    planned = 6 * 3 * 2
    kept = _rows(store)[0][0]
    assert 6 <= kept < planned, kept
    assert kept % 2 == 0  # whole pairs (two joints each) or nothing

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{planned} joint measurements planned: {kept} already in the store, {planned - kept} measured now" \
        in done.stdout
    assert _rows(store)[0][0] == planned
    assert _rows(store, "SELECT COUNT(*) FROM measurements WHERE run_id = 1")[0][0] == kept  # none redone
    assert _rows(store, "SELECT COUNT(*) FROM (SELECT DISTINCT patient, joint, from_visit, to_visit "
                        "FROM measurements)")[0][0] == planned


def test_cohort_bad_input_exits_2(tmp_path, capsys):
    assert main(["cohort", "status", str(tmp_path / "absent.sqlite")]) == 2
    assert "no such cohort store" in capsys.readouterr().err
    assert main(["cohort", "run", str(tmp_path / "absent.csv"), "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "cannot read manifest" in capsys.readouterr().err


def test_cli_import_leaves_dask_out():
    code = "import sys, jsnreg.cli; jsnreg.cli.build_parser(); print('dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_a_joint_that_cannot_be_cut_fails_alone_and_the_others_are_measured(tmp_path):
    from jsnreg.cohort.tasks import file_sha256, measure_pair
    from jsnreg.joints import load_joints_json
    from jsnreg.synthetic import write_demo_case

    case = write_demo_case(tmp_path / "case")
    joints = [{"name": j.name, "x": j.x, "y": j.y} for j in load_joints_json(case["joints"])[:3]]
    joints.append({"name": "DIP5", "x": 4.0, "y": 4.0})  # a corner of the film: no ROI fits there
    task = {"from_image": case["baseline"], "to_image": case["followup"], "from_spacing_given": None,
            "to_spacing_given": None, "joints": joints, "settings": {},
            "from_sha256": file_sha256(case["baseline"]), "to_sha256": file_sha256(case["followup"])}
    rows = measure_pair(task)["rows"]
    assert [r["joint"] for r in rows] == [j["name"] for j in joints]
    assert [r["status"] for r in rows[:3]] == ["ok"] * 3 and all(abs(r["jsn_mm"]) < 5 for r in rows[:3])
    assert rows[3]["status"].startswith("failed: joint DIP5 (baseline)") and "edge" in rows[3]["status"]
