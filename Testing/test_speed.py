"""What makes a whole hand fast without changing its numbers: lazy imports, the numpy network,
the colour table of the PNGs, the joint search at reduced resolution, the hand bench's parts."""

import json
import subprocess
import sys

import numpy as np
import pytest

HEAVY = ("torch", "matplotlib", "SimpleITK", "numpy", "scipy", "pydicom", "PIL")


def loaded_after(code: str) -> list[str]:
    """Top-level heavy modules a fresh interpreter has loaded after running `code`."""
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return [m for m in json.loads(out.strip().splitlines()[-1]) if m in HEAVY]


def test_building_the_parser_imports_nothing_heavy():
    assert loaded_after("import jsnreg.cli\njsnreg.cli.build_parser().parse_args(['quantify', 'a', 'b', "
                        "'--out', 'o'])") == []


def test_measuring_loads_neither_torch_nor_matplotlib():
    loaded = loaded_after("import jsnreg.quantify, jsnreg.register, jsnreg.figures, jsnreg.images\n"
                          "jsnreg.register.Engine.load()")
    assert "torch" not in loaded and "matplotlib" not in loaded
    assert "numpy" in loaded  # the probe sees what was loaded


@pytest.fixture(scope="module")
def demo_case(tmp_path_factory):
    from jsnreg.synthetic import write_demo_case

    return write_demo_case(tmp_path_factory.mktemp("case"))


def test_quantify_without_a_report_loads_neither_the_training_nor_the_plotting_stack(demo_case, tmp_path):
    # Detection, placement (SimpleITK's coarse alignment), registration and the PNGs, end to end.
    loaded = loaded_after(f"from jsnreg import cli\nassert cli.main(['quantify', {str(demo_case['baseline'])!r}, "
                          f"{str(demo_case['followup'])!r}, '--out', {str(tmp_path / 'out')!r}]) == 0")
    assert (tmp_path / "out" / "results.json").is_file()  # the command ran
    assert not {"torch", "matplotlib"} & set(loaded), loaded


def test_detecting_joints_reads_each_radiograph_once_and_times_the_detection(demo_case, tmp_path, monkeypatch):
    from jsnreg import cli

    read = []
    real_read = cli.read_visit
    monkeypatch.setattr(cli, "read_visit", lambda path, *a, **k: read.append(str(path)) or real_read(path, *a, **k))
    timings = tmp_path / "timings.json"
    assert cli.main(["quantify", str(demo_case["baseline"]), str(demo_case["followup"]), "--out",
                     str(tmp_path / "out"), "--timings", str(timings)]) == 0
    assert read == [str(demo_case["baseline"]), str(demo_case["followup"])]
    stages = json.loads(timings.read_text())
    assert stages["detect_s"] > 0 and stages["detect_s"] < stages["imports_s"] + stages["read_s"] + stages["detect_s"]
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())["joints"]) == 14


def test_a_stop_while_starting_prints_no_traceback(monkeypatch, capsys):
    from jsnreg import cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["quantify", "a", "b", "--out", "o"]) == 130
    assert capsys.readouterr().err.strip() == "stopped"


def test_numpy_network_reads_the_weights_and_matches_torch():
    torch = pytest.importorskip("torch")
    from jsnreg.network import DEFAULT_WEIGHTS, NumpyNet, read_state_dict
    from jsnreg.torchnet import JSNNet

    state = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=True)
    mine = read_state_dict(DEFAULT_WEIGHTS)
    assert mine.keys() == state.keys()
    for key, tensor in state.items():
        assert np.array_equal(mine[key], tensor.numpy()), key
    model = JSNNet()
    model.load_state_dict(state)
    model.eval()
    net = NumpyNet(mine)
    x = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    got = np.stack([net(xi) for xi in x])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_file_that_is_not_weights_is_refused(tmp_path):
    from jsnreg.errors import InputError
    from jsnreg.network import Network

    bad = tmp_path / "w.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot be read"):
        Network.load(bad)


def test_the_colour_table_is_matplotlibs_viridis():
    colormaps = pytest.importorskip("matplotlib").colormaps
    from jsnreg.figures import VIRIDIS_RGB8, heat_rgb

    assert np.array_equal(VIRIDIS_RGB8, (np.asarray(colormaps["viridis"].colors) * 255).round().astype(np.uint8))
    loss = np.random.default_rng(1).random((40, 30)) * 0.02
    loss[0, 0], loss[1, 1], loss[2, 2] = np.nan, 0.0, 0.05
    ref = colormaps["viridis"](np.clip(np.nan_to_num(loss, nan=0.0) / 0.015, 0, 1))[..., :3]
    ref[~np.isfinite(loss)] = 0
    assert np.array_equal(heat_rgb(loss, 0.015), (ref * 255).round().astype(np.uint8))


def test_joints_are_placed_after_a_known_whole_hand_similarity():
    """One coarse alignment, then each joint's search on 3 x 3 block means (a 40 mm ROI at
    0.2 mm/px is 201 px): every joint within 1.5 px of where the transform put it."""
    from jsnreg import quantify as q
    from jsnreg.bench_hand import repositioned, similarity_matrix
    from jsnreg.images import Radiograph
    from jsnreg.joints import DEFAULT_JOINTS, JointSpec
    from jsnreg.synthetic import make_hand_pair

    hand = make_hand_pair(seed=3, narrowing_mm={})  # no joint changes: the film is only moved
    rows, cols = hand.baseline.shape
    m = similarity_matrix(-6.0, 0.97, (21.4, -13.7), ((cols - 1) / 2, (rows - 1) / 2))
    follow = repositioned(hand.baseline, m, seed=0)
    joints = [JointSpec(n, *hand.joints[n]) for n in DEFAULT_JOINTS]
    settings = q.Settings(roi_mm=40.0)
    placed = q.place_joints(Radiograph(hand.baseline, 0.2, {}), Radiograph(follow, 0.2, {}), joints, settings)
    assert placed[0].size_px == 201
    for j, p in zip(joints, placed):
        truth = (m @ [j.x, j.y, 1.0])[:2]
        assert np.hypot(*(np.array(p.followup_xy) - truth)) < 1.5, j.name
        assert p.followup_angle_rad - p.baseline_angle_rad == pytest.approx(np.radians(-6.0), abs=0.01)


def test_a_finger_posed_otherwise_is_followed_joint_by_joint():
    """The index finger turned 12 deg about MCP2 at follow-up (the rest of the hand as it was): PIP2 and
    DIP2 lie 6-9 mm from where the hand's alignment puts them, beyond one joint's search; found from
    MCP2 along the turned finger, each within 0.5 mm, its ROI cut at the finger's new angle."""
    from jsnreg import quantify as q
    from jsnreg.bench_hand import turned_finger
    from jsnreg.images import Radiograph
    from jsnreg.joints import JointSpec
    from jsnreg.synthetic import make_hand_pair

    hand = make_hand_pair(seed=3, narrowing_mm={})
    at = {n: np.array(xy, float) for n, xy in hand.joints.items()}
    follow = turned_finger(hand.baseline, at["MCP2"], at["DIP2"], 12.0, hand.spacing_mm)
    names = ("DIP2", "MCP3", "PIP2", "MCP2")  # any order: each finger is placed from its base
    placed = q.place_joints(Radiograph(hand.baseline, 0.2, {}), Radiograph(follow, 0.2, {}),
                            [JointSpec(n, *at[n]) for n in names], q.Settings())
    turn = np.radians(12.0)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    for name, p in zip(names, placed):
        truth = rot @ (at[name] - at["MCP2"]) + at["MCP2"] if name in ("PIP2", "DIP2") else at[name]
        assert np.hypot(*(np.array(p.followup_xy) - truth)) * 0.2 < (0.8 if name == "MCP2" else 0.5), name
    by_name = dict(zip(names, placed))
    assert np.degrees(by_name["DIP2"].followup_angle_rad - by_name["DIP2"].baseline_angle_rad) == pytest.approx(12.0, abs=2.0)
    assert by_name["MCP3"].followup_angle_rad == pytest.approx(by_name["MCP3"].baseline_angle_rad, abs=np.radians(1.0))


def test_joints_are_grouped_by_finger_from_base_to_tip():
    from jsnreg.quantify import finger_chains

    names = ["DIP2", "IP1", "L-PIP3", "MCP2", "custom", "R-MCP3", "MCP1", "L-MCP3", "PIP2"]
    chains = sorted([names[k] for k in chain] for chain in finger_chains(names))
    assert chains == sorted([["MCP2", "PIP2", "DIP2"], ["MCP1", "IP1"], ["L-MCP3", "L-PIP3"], ["R-MCP3"], ["custom"]])


def test_along_finger_keeps_the_joint_found_and_adds_the_turn():
    from jsnreg.bench_hand import similarity_matrix
    from jsnreg.rois import along_finger, matrix_rotation

    coarse = similarity_matrix(-4.0, 1.02, (10.0, -5.0), (100.0, 100.0))
    m = along_finger(coarse, (50.0, 60.0), (57.0, 49.0), np.radians(9.0))
    assert m[:2, :2] @ [50.0, 60.0] + m[:2, 2] == pytest.approx([57.0, 49.0])
    assert np.degrees(matrix_rotation(m)) == pytest.approx(-4.0 + 9.0)
    assert np.sqrt(abs(np.linalg.det(m[:2, :2]))) == pytest.approx(1.02)


def test_repositioning_moves_the_film_as_its_matrix_says():
    from jsnreg.bench_hand import repositioned, similarity_matrix

    image = np.zeros((120, 100))
    image[40, 30] = 1.0
    m = similarity_matrix(10.0, 1.05, (5.0, -3.0), (50.0, 60.0))
    moved = repositioned(image, m, seed=0)
    y, x = np.unravel_index(np.argmax(moved), moved.shape)
    np.testing.assert_allclose([x, y], (m @ [30.0, 40.0, 1.0])[:2], atol=0.75)


def test_hand_summary_reads_every_stage():
    from jsnreg.bench_hand import format_summary

    stage = {"s": 1.0, "cpu_s": 0.5}
    errors = {"PIP2": 0.01, "PIP3": -0.01}
    cli = {"total_s": 2.5, "total_cpu_s": 2.0, "start_s": 0.2, "jsn_error_mm": errors}
    for k in ("imports", "read", "place", "register", "write"):
        cli[f"{k}_s"], cli[f"{k}_cpu_s"] = 0.4, 0.3
    result = {"generated": {
        "what": "generated: test", "cli": cli, "coarse": stage,
        "placement": {m: {**stage, "error_px": {"PIP2": 0.5}} for m in ("ours", "simpleitk")},
        "registration": {m: {**stage, "factor": f, "jsn_error_mm": errors}
                         for m, f in (("working", 2), ("full", 1), ("simpleitk", 1))}}}
    result["generated"]["cli_detected"] = {**cli, "detect_s": 0.3, "detect_cpu_s": 0.25, "joints": 14}
    text = format_summary(result)
    assert "detect 0.30 / 0.25   14 joints measured, 2 of them annotated" in text
    assert "total 2.50 / 2.00" in text and "ours, 1/2 res." in text and "SimpleITK, full res." in text


def test_segment_turn_reads_a_finger_segments_turn_and_nothing_from_coincident_joints():
    from scipy import ndimage

    from jsnreg.rois import segment_turn

    rng = np.random.default_rng(5)
    image = ndimage.gaussian_filter(rng.random((300, 300)), 3.0)
    base, tip = np.array([150.0, 250.0]), np.array([150.0, 80.0])  # (x, y): a segment pointing up
    turn = np.radians(12.0)
    y, x = np.mgrid[0:300, 0:300].astype(float)
    # follow-up(q) = baseline(R^-1 (q - base) + base): the film turned by 12 deg about `base`
    qx, qy = x - base[0], y - base[1]
    follow = ndimage.map_coordinates(image, [-np.sin(turn) * qx + np.cos(turn) * qy + base[1],
                                             np.cos(turn) * qx + np.sin(turn) * qy + base[0]], order=1)
    assert np.degrees(segment_turn(image, follow, base, tip, base, np.eye(3), 0.1, 2)) == pytest.approx(12.0, abs=1.0)
    assert segment_turn(image, image, base, tip, base, np.eye(3), 0.1, 2) == 0.0
    assert segment_turn(image, follow, base, base + 1.0, base, np.eye(3), 0.1, 2) == 0.0
