"""The shipped real-hand joint annotations: format, split rule, joint names, points inside images."""

import hashlib
import struct

import pytest

from jsnreg.joints import STANDARD_JOINTS
from jsnreg.real_hands import (adult_patient, adult_splits, is_adult, load_annotations, real_hands_dir,
                                rsna_splits, split_of)


@pytest.fixture(scope="module")
def annotations():
    return load_annotations()


def png_size(path):
    """(width, height) from a PNG's IHDR chunk, without an image library."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_file_parses_with_the_contract_fields(annotations):
    assert annotations["version"] == 1
    assert len(annotations["method"]) > 40  # says how the points were made
    assert annotations["images"]
    for key, entry in annotations["images"].items():
        assert key.startswith(("rsna-bone-age/", "adult-annotated/")), key
        assert entry["side"] in ("L", "R"), key
        assert entry["split"] in ("train", "val", "test"), key
        assert entry["spacing_mm_nominal"] > 0, key
        assert isinstance(entry["notes"], str), key
        # the blind re-check's provenance: points taken from the detector or placed by hand, disjoint
        taken, by_hand = set(entry.get("from_detector", [])), set(entry.get("hand_corrected", []))
        assert taken | by_hand <= set(entry["joints"]) and not taken & by_hand, key


def test_joint_names_standard_and_each_joint_placed_or_absent(annotations):
    for key, entry in annotations["images"].items():
        joints, absent = set(entry["joints"]), set(entry["absent"])
        assert joints <= set(STANDARD_JOINTS), (key, joints - set(STANDARD_JOINTS))
        assert absent <= set(STANDARD_JOINTS), key
        assert not joints & absent, key
        if key.startswith("rsna-bone-age/"):
            assert joints | absent == set(STANDARD_JOINTS), key
        for xy in entry["joints"].values():
            assert len(xy) == 2 and all(v >= 0 for v in xy), key


def test_split_rule_by_sha256_of_the_file_name(annotations):
    assert rsna_splits([f"{i}.png" for i in range(60)]) == rsna_splits([f"{i}.png" for i in reversed(range(60))])
    counts = {}
    for key, entry in annotations["images"].items():
        if key.startswith("adult-annotated/"):
            assert entry["split"] == "test", key  # another population: never trained or tuned on
        counts[entry["split"]] = counts.get(entry["split"], 0) + key.startswith("rsna-bone-age/")
        assert split_of(key) == entry["split"]
    assert counts.get("train", 0) <= 36 and counts.get("val", 0) <= 12 and counts.get("test", 0) <= 12
    folder = real_hands_dir()
    if folder is None:
        pytest.skip("real hands not available (../shared/data/real-hands or JSNREG_REAL_HANDS)")
    names = sorted(p.name for p in (folder / "rsna-bone-age").glob("*.png"))
    assert len(names) == 60
    ranked = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    rule = {n: ("train", "val", "test")[(i >= 36) + (i >= 48)] for i, n in enumerate(ranked)}
    for key, entry in annotations["images"].items():
        if key.startswith("rsna-bone-age/"):
            assert entry["split"] == rule[key.split("/", 1)[1]], key
    assert all(split_of(f"rsna-bone-age/{n}") == rule[n] for n in names)


def test_adult_detection_split_by_patient_sha256(annotations):
    names = sorted(k.split("/", 1)[1] for k in annotations["images"] if k.startswith("adult-annotated/"))
    assert adult_patient("test_img5_L.png") == adult_patient("test_img5_R.png") == "test_img5"
    assert adult_patient("test_img1.png") == "test_img1"
    assert is_adult("adult-annotated/test_img1.png") and not is_adult("rsna-bone-age/1437.png")
    rule = adult_splits(names)
    assert rule == adult_splits(list(reversed(names)))  # the order given does not matter
    patients = sorted({adult_patient(n) for n in names}, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    for n in names:  # both hands of one patient on one side of the split; the first three patients val
        assert rule[n] == ("val" if adult_patient(n) in patients[:3] else "test"), n
    if len(patients) == 6:
        assert {n for n, s in rule.items() if s == "val"} == {"test_img2_L.png", "test_img4_L.png",
                                                              "test_img5_L.png", "test_img5_R.png"}


def test_every_joint_inside_its_image(annotations):
    folder = real_hands_dir()
    if folder is None:
        pytest.skip("real hands not available (../shared/data/real-hands or JSNREG_REAL_HANDS)")
    for key, entry in annotations["images"].items():
        width, height = png_size(folder / key)
        for name, (x, y) in entry["joints"].items():
            assert 0 <= x < width and 0 <= y < height, (key, name, x, y)


def test_each_annotated_image_has_its_sha256_recorded(annotations):
    """The annotations belong to these exact files: annotated_images leaves out a name that holds another."""
    import json

    from jsnreg.real_hands import IMAGES_SHA256

    recorded = json.loads(IMAGES_SHA256.read_text())
    assert set(recorded) == set(annotations["images"])
    folder = real_hands_dir()
    if folder is None:
        pytest.skip("real hands not available (../shared/data/real-hands or JSNREG_REAL_HANDS)")
    for key in ("rsna-bone-age/1437.png", "adult-annotated/test_img5_R.png"):
        assert hashlib.sha256((folder / key).read_bytes()).hexdigest() == recorded[key], key


@pytest.fixture
def other_folder(tmp_path, monkeypatch):
    """A real-hands folder of other films, as a held-out set would come: two adult films under new names with
    their own joints.json (wrist sites too), an annotated adult name holding another patient's film, and an
    annotated RSNA name holding another child's hand (links to the shared images, nothing copied)."""
    import json

    folder = real_hands_dir()
    if folder is None:
        pytest.skip("real hands not available (../shared/data/real-hands or JSNREG_REAL_HANDS)")
    own = json.loads((folder / "adult-annotated" / "joints.json").read_text())
    (tmp_path / "adult-annotated").mkdir()
    (tmp_path / "rsna-bone-age").mkdir()
    names = {"ra_0001.png": "test_img1_L.png", "patientB_L.png": "test_img3_L.png",
             "test_img2_L.png": "test_img6_R.png"}
    for new, old in names.items():
        (tmp_path / "adult-annotated" / new).symlink_to(folder / "adult-annotated" / old)
    listed = {n: own[o] for n, o in names.items()}
    listed["patientB_L.png"] = {**listed["patientB_L.png"], "spacing_mm": 0.25}  # a folder may say it
    (tmp_path / "adult-annotated" / "joints.json").write_text(json.dumps(listed))
    (tmp_path / "rsna-bone-age" / "1437.png").symlink_to(folder / "rsna-bone-age" / "2104.png")
    (tmp_path / "rsna-bone-age" / "4407.png").symlink_to(folder / "rsna-bone-age" / "4407.png")
    monkeypatch.setenv("JSNREG_REAL_HANDS", str(tmp_path))
    return tmp_path, own, names


def test_a_folder_of_other_films_is_read_with_its_own_points(other_folder):
    import json

    from jsnreg.real_hands import FINGER_JOINTS, annotated_images, load_annotations

    _, own, names = other_folder
    images = annotated_images()
    shipped = load_annotations()["images"]
    for new, old in names.items():
        entry = images[f"adult-annotated/{new}"]
        assert entry["joints"] == {n: p for n, p in own[old]["joints"].items() if n in FINGER_JOINTS}
        assert entry["split"] == "test" and entry["from_folder"]
        assert entry["spacing_mm_nominal"] == (0.25 if new == "patientB_L.png" else 0.3)  # else the nominal
    assert "rsna-bone-age/1437.png" not in images  # another child's hand under an annotated name
    assert images["rsna-bone-age/4407.png"] == shipped["rsna-bone-age/4407.png"]
    assert images["rsna-bone-age/2104.png"] == shipped["rsna-bone-age/2104.png"]  # not in the folder: kept
    own_file = other_folder[0] / "their_points.json"  # another annotation file speaks of the folder's own films
    own_file.write_text(json.dumps({"images": {"rsna-bone-age/1437.png": shipped["rsna-bone-age/2104.png"]}}))
    assert annotated_images(own_file)["rsna-bone-age/1437.png"] == shipped["rsna-bone-age/2104.png"]


def test_the_detection_bench_scores_a_folder_of_other_films(other_folder):
    """Its films scored as test (nothing was chosen on them), on their finger joints; a split with no hand
    there is a clear error."""
    from jsnreg.cli import main
    from jsnreg.detect_bench import run

    _, _, names = other_folder
    result = run(splits=("test", "val"), variants=False)
    scored = {r["image"] for r in result["images"]}
    assert scored == {f"adult-annotated/{n}" for n in names} | {"rsna-bone-age/4407.png"}
    adult = result["counts"]["adult test"]
    assert set(result["counts"]) == {"adult test", "rsna test", "rsna test, independent"}
    assert sum(sum(c[o] for o in ("found", "misplaced", "misnamed", "missed")) for c in adult.values()) == 30
    assert adult["DIP2-5"] == dict.fromkeys(adult["DIP2-5"], 0)  # SHS_NET marks no DIP
    assert main(["bench", "--detect", "--splits", "train", "--no-variants"]) == 2


def test_an_annotation_entry_lacking_what_the_benches_read_is_a_clear_error(tmp_path):
    import json

    from jsnreg.errors import InputError
    from jsnreg.real_hands import annotated_images

    good = {"split": "test", "spacing_mm_nominal": 0.1, "joints": {"MCP2": [10.0, 20.0]}}
    for field, value, says in (("spacing_mm_nominal", None, "spacing_mm_nominal"), ("split", "later", "split"),
                               ("joints", {"MCP2": [10.0]}, "joints"), ("side", "left", "side")):
        path = tmp_path / f"{field}.json"
        path.write_text(json.dumps({"images": {"rsna-bone-age/h.png": {**good, field: value}}}))
        with pytest.raises(InputError, match=f"'rsna-bone-age/h.png': {says}"):
            annotated_images(path)
    path = tmp_path / "sideless.json"  # the side is not needed
    path.write_text(json.dumps({"images": {"rsna-bone-age/h.png": good}}))
    assert annotated_images(path)["rsna-bone-age/h.png"] == good
