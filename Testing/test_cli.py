"""The command-line contract other tools rely on: keys, columns, exit codes, messages."""

import csv
import json

import numpy as np
import pytest

from jsnreg.cli import main
from jsnreg.images import write_png
from jsnreg.synthetic import make_joint_pair

ROI_KEYS = {"jsn_mm", "jsn_px", "spacing_mm", "upper", "lower", "mse_before", "mse_after", "confidence", "flagged"}


@pytest.fixture(scope="module")
def roi_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("rois")
    pair = make_joint_pair(np.random.default_rng(21), jsn_mm=0.5, noise_sigma=0.01, spacing_mm=0.175)
    write_png(d / "fixed.png", pair.fixed, bits=16)
    write_png(d / "moving.png", pair.moving, bits=16)
    write_png(d / "mask.png", pair.upper_mask.astype(float), bits=8)
    return d, pair


def test_roi_json_contract(roi_files, tmp_path, capsys):
    d, pair = roi_files
    out = tmp_path / "r.json"
    code = main(["roi", str(d / "fixed.png"), str(d / "moving.png"), "--spacing-mm", "0.175",
                 "--mask", str(d / "mask.png"), "--json", str(out)])
    assert code == 0
    assert "JSN" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert ROI_KEYS <= set(data)
    assert set(data["upper"]) == {"dx", "dy", "dtheta", "scale"}
    assert data["jsn_px"] == pytest.approx(data["upper"]["dy"] - data["lower"]["dy"])
    assert data["jsn_mm"] == pytest.approx(pair.jsn_mm, abs=0.03)


def test_roi_without_spacing_stops_with_a_message(roi_files, capsys):
    d, _ = roi_files
    assert main(["roi", str(d / "fixed.png"), str(d / "moving.png")]) == 2
    err = capsys.readouterr().err
    assert "spacing" in err and "Traceback" not in err


def test_manifest_measures_good_rows_and_reports_the_bad_one(roi_files, tmp_path):
    d, _ = roi_files
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(
        "fixed,moving,mask,spacing_mm\n"
        f"{d / 'fixed.png'},{d / 'moving.png'},{d / 'mask.png'},0.175\n"
        f"{d / 'fixed.png'},{d / 'missing.png'},,0.175\n"
        f"{d / 'fixed.png'},{d / 'moving.png'},,0.175\n")
    out = tmp_path / "results.csv"
    assert main(["roi", "--manifest", str(manifest), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 3
    assert {"fixed", "moving", "mask", "spacing_mm", "jsn_mm", "jsn_px", "dx_upper", "dy_upper", "dtheta_upper",
            "scale_upper", "dx_lower", "dy_lower", "dtheta_lower", "scale_lower", "mse_before", "mse_after",
            "confidence", "flagged", "error"} <= set(rows[0])
    assert rows[0]["error"] == "" and float(rows[0]["jsn_mm"]) > 0
    assert "missing.png" in rows[1]["error"] and rows[1]["jsn_mm"] == ""
    assert rows[2]["error"] == ""


def test_quantify_writes_results_and_pictures(tmp_path, capsys):
    from jsnreg.synthetic import write_demo_case

    case = write_demo_case(tmp_path / "case")
    joints = json.loads(open(case["joints"]).read())["joints"][:2]
    args = ["quantify", str(case["baseline"]), str(case["followup"]), "--out", str(tmp_path / "out")]
    for j in joints:
        args += ["--joint", f"{j['name']}={j['x']},{j['y']}"]
    assert main(args) == 0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [j["name"] for j in data["joints"]] == [j["name"] for j in joints]
    truth = json.loads(open(case["truth"]).read())["truth_jsn_mm"]
    for j in data["joints"]:
        assert j["jsn_mm"] == pytest.approx(truth[j["name"]], abs=0.05)
    assert (tmp_path / "out" / "results.csv").exists()
    for panel in ("fixed", "warped", "checkerboard", "loss_before", "loss_after"):
        assert (tmp_path / "out" / f"{joints[0]['name']}_{panel}.png").stat().st_size > 100


def test_quantify_refuses_a_joint_off_the_image(tmp_path, capsys):
    from jsnreg.synthetic import write_demo_case

    case = write_demo_case(tmp_path / "case")
    code = main(["quantify", str(case["baseline"]), str(case["followup"]), "--joint", "PIP2=-500,20",
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "PIP2" in capsys.readouterr().err


def test_bench_refuses_an_roi_offset_beyond_4_mm(tmp_path, capsys):
    assert main(["bench", "--real", "--offset-mm", "9", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "within" in err
