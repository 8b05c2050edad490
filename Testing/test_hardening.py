"""The edges of the faces and readers: no silent wrong number, no lost run, no write outside the
output folder. Each case is one found by a hostile pass over the command line (exit code, one
line on stderr, never a traceback) or over the readers."""

import csv
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from jsnreg import cli
from jsnreg.cli import main
from jsnreg.errors import InputError
from jsnreg.images import read_radiograph, write_dicom, write_png
from jsnreg.synthetic import make_joint_pair, write_demo_case


def error_lines(err: str) -> list[str]:
    """stderr without the progress lines ([k/n] ...)."""
    return [line for line in err.splitlines() if line and not line.startswith("[")]


def assert_one_line_error(capsys, code, expected_code=2, needle=""):
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert code == expected_code, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") or expected_code == 130, err
    assert needle.lower() in lines[0].lower(), (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def rois(tmp_path_factory):
    d = tmp_path_factory.mktemp("rois")
    pair = make_joint_pair(np.random.default_rng(5), jsn_mm=0.4, noise_sigma=0.01, spacing_mm=0.15)
    write_dicom(d / "fixed.dcm", pair.fixed, 0.15)
    write_dicom(d / "moving_015.dcm", pair.moving, 0.15)
    write_dicom(d / "moving_030.dcm", pair.moving, 0.30)
    write_dicom(d / "moving_none.dcm", pair.moving, 0.15, spacing_tag=None)
    write_png(d / "fixed.png", pair.fixed, bits=16)
    write_png(d / "moving.png", pair.moving, bits=16)
    write_png(d / "flat.png", np.full(pair.fixed.shape, 0.5), bits=16)
    return d


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return write_demo_case(tmp_path_factory.mktemp("case"))


def quantify_args(case, out, *extra, joint="MCP3=490,317"):
    return ["quantify", case["baseline"], case["followup"], "--joint", joint, "--out", str(out), *extra]


# --- 1. the follow-up's spacing is its own ----------------------------------------------------

@pytest.mark.parametrize("moving, needle", [
    ("moving_none.dcm", "has no pixel spacing"),  # was: the baseline's spacing borrowed, exit 0
    ("moving_030.dcm", "differ in spacing (0.15 vs 0.3 mm)"),  # was: overwritten by the baseline's
])
def test_roi_never_borrows_or_overwrites_the_follow_up_spacing(rois, capsys, moving, needle):
    code = main(["roi", str(rois / "fixed.dcm"), str(rois / moving)])
    assert_one_line_error(capsys, code, 2, needle)


def test_spacing_mm_is_for_files_without_one(rois, capsys):
    code = main(["roi", str(rois / "fixed.dcm"), str(rois / "moving_015.dcm"), "--spacing-mm", "0.2"])
    assert_one_line_error(capsys, code, 2, "carries its own spacing 0.15 mm")
    assert main(["roi", str(rois / "fixed.png"), str(rois / "moving.png"), "--spacing-mm", "0.15"]) == 0


def test_manifest_follow_up_spacing_is_its_own(rois, tmp_path):
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("fixed,moving\n"
                        f"{rois / 'fixed.dcm'},{rois / 'moving_none.dcm'}\n"
                        f"{rois / 'fixed.dcm'},{rois / 'moving_030.dcm'}\n"
                        f"{rois / 'fixed.dcm'},{rois / 'moving_015.dcm'}\n")
    assert main(["roi", "--manifest", str(manifest), "--out", str(tmp_path / "r.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "r.csv", encoding="utf-8")))
    assert "has no pixel spacing" in rows[0]["error"] and rows[0]["jsn_mm"] == ""
    assert "differ in spacing" in rows[1]["error"] and rows[1]["jsn_mm"] == ""
    assert rows[2]["error"] == "" and float(rows[2]["jsn_mm"]) == pytest.approx(0.4, abs=0.05)


# --- 2. nothing written outside --out; names checked before anything is written --------------

@pytest.mark.parametrize("name", ["../EVIL", "ABS", "a/b", "NUL", "x" * 300, ".hidden", "a\\b"])
def test_joint_names_that_cannot_be_file_names_are_refused_first(case, tmp_path, capsys, name):
    name = {"ABS": str(tmp_path / "abs" / "EVIL"), "NUL": "A\x00B"}.get(name, name)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("previous run")
    code = main(quantify_args(case, out, joint=f"{name}=490,317"))
    assert_one_line_error(capsys, code, 2, "cannot name output files")
    assert (out / "results.json").read_text() == "previous run"
    assert not list(tmp_path.rglob("*EVIL*")) and sorted(p.name for p in out.iterdir()) == ["results.json"]


def test_joints_file_names_are_checked_the_same_way(case, tmp_path, capsys):
    joints = tmp_path / "j.json"
    joints.write_text(json.dumps({"joints": [{"name": "../EVIL", "x": 490, "y": 317}]}))
    code = main(["quantify", case["baseline"], case["followup"], "--joints", str(joints), "--out",
                 str(tmp_path / "out")])
    assert_one_line_error(capsys, code, 2, "cannot name output files")
    assert not (tmp_path / "out").exists()


# --- 3. manifest runs: per-row errors, rows kept as they finish, --resume ----------------------

def test_ragged_and_extra_column_rows_are_per_row_errors(rois, tmp_path, capsys):
    good = f"{rois / 'fixed.dcm'},{rois / 'moving_015.dcm'}"
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(f"fixed,moving\n{good}\n{rois / 'fixed.dcm'}\n{rois / 'fixed.dcm'},\n{good},extra\n{good}\n")
    out = tmp_path / "r.csv"
    assert main(["roi", "--manifest", str(manifest), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert [r["error"] for r in rows][0] == "" and rows[4]["error"] == ""
    assert "1 cells, the header 2" in rows[1]["error"]
    assert "blank moving cell" in rows[2]["error"]
    assert "3 cells, the header 2" in rows[3]["error"]
    assert "3 of 5 pairs measured" not in capsys.readouterr().out  # 2 measured, 3 errors
    assert sum(r["error"] == "" for r in rows) == 2


def test_killed_manifest_run_keeps_its_rows_and_resumes(rois, tmp_path, capsys, monkeypatch):
    manifest = tmp_path / "pairs.csv"
    lines = [f"{rois / 'fixed.dcm'},{rois / 'moving_015.dcm'},{k}" for k in range(4)]
    manifest.write_text("fixed,moving,note\n" + "\n".join(lines) + "\n")
    out = tmp_path / "r.csv"
    measure = cli.ManifestRun._measure
    calls = []

    def stop_at_third(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return measure(self, *args)

    monkeypatch.setattr(cli.ManifestRun, "_measure", stop_at_third)
    code = main(["roi", "--manifest", str(manifest), "--out", str(out)])
    assert_one_line_error(capsys, code, 130, "stopped")
    assert [r["note"] for r in csv.DictReader(open(out, encoding="utf-8"))] == ["0", "1"]
    with open(out, "a", encoding="utf-8") as f:  # a row cut by kill -9 mid-write
        f.write(f"{rois / 'fixed.dcm'},{rois / 'moving_015.dcm'},2,0.1")
    monkeypatch.setattr(cli.ManifestRun, "_measure", measure)
    code = main(["roi", "--manifest", str(manifest), "--out", str(out)])
    assert_one_line_error(capsys, code, 2, "--resume")  # never silently replaced
    assert main(["roi", "--manifest", str(manifest), "--out", str(out), "--resume"]) == 0
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert [r["note"] for r in rows] == ["0", "1", "2", "3"] and all(r["error"] == "" for r in rows)
    assert "2 kept from the earlier run" in capsys.readouterr().out
    assert main(["roi", "--manifest", str(manifest), "--out", str(out), "--force"]) == 0
    assert len(list(csv.DictReader(open(out, encoding="utf-8")))) == 4


def test_manifest_with_a_byte_order_mark_is_read(rois, tmp_path):
    manifest = tmp_path / "pairs.csv"
    manifest.write_bytes(b"\xef\xbb\xbf" + f"fixed,moving\r\n{rois / 'fixed.dcm'},{rois / 'moving_015.dcm'}\r\n"
                         .encode())
    assert main(["roi", "--manifest", str(manifest), "--out", str(tmp_path / "r.csv")]) == 0
    assert list(csv.DictReader(open(tmp_path / "r.csv", encoding="utf-8")))[0]["error"] == ""


@pytest.mark.parametrize("setup, needle", [
    ("dir", "is a folder"),
    ("file-parent", "is not a folder"),
    ("manifest", "is the manifest itself"),
    ("no-out", "needs --out"),
    ("latin1", "not UTF-8"),
    ("no-columns", "needs the columns fixed, moving"),
])
def test_manifest_outputs_and_inputs_are_checked_before_any_work(rois, tmp_path, capsys, monkeypatch, setup,
                                                                 needle):
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(f"fixed,moving\n{rois / 'fixed.dcm'},{rois / 'moving_015.dcm'}\n")
    out = tmp_path / "r.csv"
    if setup == "dir":
        out.mkdir()
    elif setup == "file-parent":
        (tmp_path / "plain").write_text("x")
        out = tmp_path / "plain" / "r.csv"
    elif setup == "manifest":
        out = manifest
    elif setup == "latin1":
        manifest.write_bytes("fixed,moving\nbaseline_\xe9.png,f.png\n".encode("latin-1"))
    elif setup == "no-columns":
        manifest.write_text("a,b\n1,2\n")
    monkeypatch.setattr("jsnreg.register.Engine.load", lambda *a: pytest.fail("work started"))
    args = ["roi", "--manifest", str(manifest)] + ([] if setup == "no-out" else ["--out", str(out)])
    assert_one_line_error(capsys, main(args), 2, needle)
    assert not list(tmp_path.rglob("*.tmp"))
    if setup == "manifest":
        assert "fixed,moving" in manifest.read_text()


# --- 4. all-or-nothing outputs -----------------------------------------------------------------

def test_interrupted_report_leaves_the_previous_run_whole(case, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main(quantify_args(case, out, "--report")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("jsnreg.report.write_report_html", interrupted)
    code = main(quantify_args(case, out, "--report", "--no-refine"))
    assert_one_line_error(capsys, code, 130, "stopped")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no new results beside an old report
    monkeypatch.undo()
    assert main(quantify_args(case, out)) == 0  # without --report: the old report goes with its run
    names = {p.name for p in out.iterdir()}
    assert {"results.json", "results.csv", "MCP3_fixed.png"} <= names
    assert not names & {"report.pdf", "report.html", "session.json"}
    assert not [n for n in names if n.startswith(".jsnreg-staging")]


def test_files_of_others_in_the_output_folder_are_kept(case, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.pdf").write_bytes(b"the user's own")
    assert main(quantify_args(case, out)) == 0
    assert (out / "report.pdf").read_bytes() == b"the user's own"


def test_a_killed_runs_staging_folder_is_cleaned_by_the_next(case, tmp_path):
    out = tmp_path / "out"
    (out / ".jsnreg-staging-dead").mkdir(parents=True)
    (out / ".jsnreg-staging-dead" / "report.pdf").write_bytes(b"%PDF half")
    assert main(quantify_args(case, out)) == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".jsnreg-staging")]


def test_pngs_follow_the_umask(case, tmp_path):
    old = os.umask(0o002)
    try:
        assert main(quantify_args(case, tmp_path / "out")) == 0
    finally:
        os.umask(old)
    for name in ("MCP3_fixed.png", "results.json", "results.csv"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o664, name


# --- 5. tracebacks and exit codes ---------------------------------------------------------------

@pytest.mark.parametrize("extra, joint, needle", [
    ((), "A490,317", "is not NAME=X,Y"),
    ((), "A=x,y", "must be a number"),
    ((), "=1,2", "is not NAME=X,Y"),
    ((), "", "is not NAME=X,Y"),
    ((), "A=nan,3", "finite"),
    (("--roi-mm", "nan"), "MCP3=490,317", "finite"),
    (("--roi-mm", "1e6"), "MCP3=490,317", "within 5-60 mm"),  # was: > 120 s in estimate_axis_angle
    (("--roi-mm", "2000"), "MCP3=490,317", "within 5-60 mm"),  # was: 6.5 GB
    (("--spacing-mm", "1e9"), "MCP3=490,317", "within 0.01-5 mm"),  # was: JSN +1964612464 mm
    (("--spacing-mm", "abc"), "MCP3=490,317", "invalid float value"),
    (("--workers", "0"), "MCP3=490,317", "--workers must be at least 1"),
    (("--workers", "two"), "MCP3=490,317", "invalid int value"),
])
def test_bad_quantify_arguments_exit_2_with_one_line(case, tmp_path, capsys, extra, joint, needle):
    code = main(quantify_args(case, tmp_path / "out", *extra, joint=joint))
    assert_one_line_error(capsys, code, 2, needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, needle", [
    ("quantify-file-out", "is not a folder"),
    ("demo-file-out", "is not a folder"),
    ("roi-json-dir", "is a folder"),
    ("roi-json-under-file", "is not a folder"),
    ("no-args", "the following arguments are required"),
])
def test_unwritable_outputs_are_found_before_any_work(case, rois, tmp_path, capsys, command, needle):
    plain = tmp_path / "plain"
    plain.write_text("x")
    args = {"quantify-file-out": quantify_args(case, plain),
            "demo-file-out": ["demo", "--out", str(plain)],
            "roi-json-dir": ["roi", str(rois / "fixed.dcm"), str(rois / "moving_015.dcm"), "--json", str(tmp_path)],
            "roi-json-under-file": ["roi", str(rois / "fixed.dcm"), str(rois / "moving_015.dcm"), "--json",
                                    str(plain / "r.json")],
            "no-args": ["quantify"]}[command]
    assert_one_line_error(capsys, main(args), 2, needle)
    assert plain.read_text() == "x"


def dicom_with(path, **tags):
    """A small valid DX file with some header elements replaced by raw (possibly invalid) values."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement

    shape = tags.pop("shape", None)
    pair = make_joint_pair(np.random.default_rng(1), jsn_mm=0.3, spacing_mm=0.15)
    write_dicom(path, pair.fixed if shape is None else np.full(shape, 0.5), 0.15)
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        tag = tag_for_keyword(keyword)
        vr, raw = (value if isinstance(value, tuple) else (dictionary_VR(tag), value))
        raw = raw.encode() if isinstance(raw, str) else raw
        raw += b" " * (len(raw) % 2)
        ds[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
    ds.save_as(path)
    return path


@pytest.mark.parametrize("tags, needle", [
    ({"RescaleSlope": "abc"}, "RescaleSlope must be a number"),
    ({"RescaleSlope": "1\\2"}, "RescaleSlope must be one number"),
    ({"RescaleSlope": "1e308", "RescaleIntercept": "1e308"}, "non-finite"),  # was: LinAlgError
    ({"RescaleSlope": "nan"}, "finite"),
    ({"ImagerPixelSpacing": "0.15\\0.15", "PixelSpacing": "", "EstimatedRadiographicMagnificationFactor": "x"},
     "EstimatedRadiographicMagnificationFactor must be a number"),
    ({"ImagerPixelSpacing": "0.15\\0.15", "PixelSpacing": "", "EstimatedRadiographicMagnificationFactor": "1\\2"},
     "must be one number"),
    ({"PixelSpacing": "1e9\\1e9"}, "within 0.01-5 mm"),  # was: JSN in the billions of mm
    ({"PixelSpacing": "0.01\\5", "shape": (1000, 1000)}, "Mpx is above the limit"),  # was: MemoryError
    ({"PatientName": ("ZZ", b"x")}, "cannot read the DICOM image"),  # unknown VR: NotImplementedError
    ({"SamplesPerPixel": ("US", b"\x03\x00")}, "cannot read the DICOM pixel data"),  # was: ValueError in matmul
    ({"Rows": ("US", b"\x20\x4e"), "Columns": ("US", b"\x20\x4e")}, "Mpx is above the limit"),  # 20000 px
])
def test_bad_dicom_headers_exit_2_with_the_reason(rois, tmp_path, capsys, tags, needle):
    path = dicom_with(tmp_path / "bad.dcm", **tags)
    code = main(["roi", str(path), str(rois / "moving_015.dcm"), "--json", str(tmp_path / "r.json")])
    assert_one_line_error(capsys, code, 2, needle)
    assert not (tmp_path / "r.json").exists()


def test_large_image_limit_can_be_lifted_by_a_flag(tmp_path):
    mha = tmp_path / "big.mha"  # a header saying 20000 x 20000: refused before the pixels are read
    mha.write_text("ObjectType = Image\nNDims = 2\nDimSize = 20000 20000\nElementType = MET_UCHAR\n"
                   "ElementSpacing = 0.1 0.1\nElementDataFile = big.raw\n")
    with pytest.raises(InputError, match="400 Mpx is above the limit of 100 Mpx"):
        read_radiograph(mha)
    with pytest.raises(InputError, match="cannot read the image"):  # past the limit: the missing data
        read_radiograph(mha, max_pixels=None)


def test_constant_rois_are_refused_not_measured(rois, capsys):
    code = main(["roi", str(rois / "flat.png"), str(rois / "moving.png"), "--spacing-mm", "0.15"])
    assert_one_line_error(capsys, code, 2, "is constant")


def _wait_for_numpy(proc, timeout_s: float = 120.0) -> None:
    """Until the process maps numpy's core, which only jsnreg's main imports (building the command
    line loads the standard library alone; Python's own start-up can take seconds under load)."""
    maps = Path(f"/proc/{proc.pid}/maps")
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and proc.poll() is None:
        try:
            if "_multiarray_umath" in maps.read_text():
                return
        except OSError:
            break
        time.sleep(0.02)
    pytest.skip("could not see the process import numpy (no /proc, or it ended first)")


@pytest.mark.parametrize("after_s", [0.0, 0.5])  # while the readers are imported, then later
def test_ctrl_c_exits_130_with_one_line(case, tmp_path, after_s):
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc to see when the process imports numpy")
    env = dict(os.environ, PYTHONPATH=str(Path(cli.__file__).parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "jsnreg", *quantify_args(case, tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        _wait_for_numpy(proc)
        time.sleep(after_s)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and error_lines(err) == ["stopped"]
    assert not (tmp_path / "out" / "results.json").exists()


# --- 6. sessions refused on load with the reason -------------------------------------------------

@pytest.fixture(scope="module")
def saved_session(tmp_path_factory):
    from jsnreg.session import save_session
    from test_session import make_session

    folder = tmp_path_factory.mktemp("session")
    session = make_session(folder)
    save_session(session, folder / "s.json")
    return folder / "s.json"


def _edit(data, where, value):
    node = data
    for key in where[:-1]:
        node = node[key]
    if value is KeyError:
        del node[where[-1]]
    else:
        node[where[-1]] = value


@pytest.mark.parametrize("where, value, needle", [
    (("images", "followup", "interval_days"), "abc", "interval_days must be a whole number"),
    (("results", 0, "position", "roi_size_px"), KeyError, "roi_size_px must be a whole number"),
    (("spacing_mm",), -0.2, "spacing_mm must be within 0.01-5 mm"),
    (("spacing_mm",), 0, "spacing_mm must be within 0.01-5 mm"),
    (("spacing_mm",), float("nan"), "spacing_mm must be a finite number"),
    (("results", 0, "upper", "dy"), float("nan"), "upper.dy must be a finite number"),
    (("results", 1, "confidence"), float("inf"), "confidence must be a finite number"),
    (("results", 0, "jsn_mm"), float("nan"), "jsn_mm must be a finite number"),
    (("results", 0, "jsn_mm"), 3.0, "disagrees with the bones' motions"),
    (("joints", 0, "upper_mask"), {"shape": [100000, 100000], "rle": [0, 10 ** 10]}, "upper_mask shape"),
    (("images", "baseline", "meta"), "abc", "meta must be an object"),
    (("results", 0), "abc", "results[0] must be an object"),
    (("settings",), {"roi_mm": 1e6}, "settings.roi_mm must be within 5-60 mm"),
])
def test_damaged_sessions_are_refused_with_the_field(saved_session, tmp_path, capsys, where, value, needle):
    data = json.loads(saved_session.read_text())
    _edit(data, where, value)
    path = saved_session.parent / "edited.json"
    path.write_text(json.dumps(data, allow_nan=True))
    code = main(["report", str(path), "--out", str(tmp_path / "r.pdf"), "--html", str(tmp_path / "r.html")])
    assert_one_line_error(capsys, code, 2, needle)
    assert not list(tmp_path.iterdir())  # no PDF left before a failing HTML step


@pytest.mark.parametrize("text, needle", [
    ('{"schema": "jsnreg-session", "version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "recursion"),
    ('{"schema": "jsnreg-session", "version": 1, "spacing_mm": ' + "1" * 5000 + "}", "digits"),
])
def test_hostile_session_json_is_refused(tmp_path, capsys, text, needle):
    path = tmp_path / "s.json"
    path.write_text(text)
    code = main(["report", str(path), "--out", str(tmp_path / "r.pdf")])
    assert_one_line_error(capsys, code, 2, needle)


def test_deidentified_report_keeps_the_pictures(saved_session, tmp_path):
    from pypdf import PdfReader

    from test_session import IDENTIFYING

    assert main(["report", str(saved_session), "--out", str(tmp_path / "r.pdf"), "--html", str(tmp_path / "r.html"),
                 "--deidentify"]) == 0
    pages = PdfReader(tmp_path / "r.pdf").pages
    text = "\n".join(p.extract_text() for p in pages)
    assert sum(len(p.images) for p in pages) >= 2 + 5 * 2  # both radiographs and every joint panel
    assert "unavailable" not in text.lower()
    html = (tmp_path / "r.html").read_text()
    assert "unavailable" not in html.lower()
    for secret in IDENTIFYING:
        assert secret.lower() not in text.lower()


def test_report_command_writes_all_of_its_outputs_or_none(saved_session, tmp_path, capsys, monkeypatch):
    def failing_html(*a, **k):
        raise InputError("the HTML step failed")

    monkeypatch.setattr("jsnreg.report.write_report_html", failing_html)
    code = main(["report", str(saved_session), "--out", str(tmp_path / "r.pdf"), "--html", str(tmp_path / "r.html"),
                 "--csv", str(tmp_path / "r.csv")])
    assert_one_line_error(capsys, code, 2, "the HTML step failed")
    assert not list(tmp_path.iterdir())  # the PDF written first is not left behind


def test_unusual_but_valid_names_and_values_still_work(case, tmp_path):
    assert main(quantify_args(case, tmp_path / "out", "--roi-mm", "20", joint="L-MCP3.b=490,317")) == 0
    assert (tmp_path / "out" / "L-MCP3.b_fixed.png").is_file()


def test_worker_refuses_a_hostile_request_as_input(tmp_path):
    import io

    from jsnreg import worker

    request = tmp_path / "request.json"
    request.write_text("[" * 100_000 + "]" * 100_000)
    out = io.StringIO()
    assert worker.main([str(request)], out=out) == worker.EXIT_INPUT
    assert json.loads(out.getvalue())["event"] == "error"
