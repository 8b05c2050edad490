"""Sessions: save -> open gives the same numbers; bad files are refused; changed images warn."""

import json
import os

import numpy as np
import pytest

from jsnreg import __version__
from jsnreg.errors import InputError
from jsnreg.images import Radiograph, write_dicom
from jsnreg.joints import JointSpec
from jsnreg.measure import joint_images, mse_before_after
from jsnreg.results import JointResult
from jsnreg.session import (Session, decode_mask, deidentified, encode_mask, load_session, save_session)
from jsnreg.transforms import BoneMotion

SPACING_MM = 0.175
ROI_PX = 63
MODEL = {"file": "jsnnet.pt", "sha256": "ab" * 32, "version": "test"}
META = {"patient_id": "PID-73519", "patient_name": "Doe^Jane", "patient_birth_date": "19470312",
        "laterality": "R", "modality": "DX"}
STUDY_DATES = ("19990115", "20000720")
IDENTIFYING = ("PID-73519", "Doe", "Jane", "19470312", "1947-03-12", "19990115", "1999-01-15",
               "20000720", "2000-07-20", "doejane")


def joint_roi(gap_rows: float, shape=(ROI_PX, ROI_PX)) -> np.ndarray:
    """Two bright bone ends with a dark joint space of `gap_rows` around the middle row."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    mid = (shape[0] - 1) / 2 + 2 * np.sin(x / 9)
    upper = 1 / (1 + np.exp((y - (mid - gap_rows / 2)) / 1.2))
    lower = 1 / (1 + np.exp(-(y - (mid + gap_rows / 2)) / 1.2))
    texture = 0.05 * np.sin(x / 3) * np.cos(y / 4)
    return np.clip(0.15 + 0.7 * (upper + lower) + texture, 0, 1)


def make_result(name: str, dy_lower_px: float, flagged: bool = False) -> JointResult:
    """A joint whose lower bone moved up by dy_lower_px at follow-up, with its images."""
    fixed = joint_roi(8)
    upper = BoneMotion(1.0, 0.01, 0.3, 0.2)
    lower = BoneMotion(1.0, -0.02, 0.1, -dy_lower_px)
    y, x = np.mgrid[0:ROI_PX, 0:ROI_PX]
    moving = np.where(y < ROI_PX // 2, joint_roi(8), joint_roi(8 - 2 * dy_lower_px))
    mask = y < ROI_PX // 2
    images = joint_images(fixed, moving, mask, upper, lower)
    before, after = mse_before_after(images)
    return JointResult(name, SPACING_MM, upper, lower, before, after, 0.31 if flagged else 0.93, flagged,
                       "low confidence: the bones disagree" if flagged else "",
                       position={"baseline_xy": [120.0, 80.0], "followup_xy": [123.5, 82.25],
                                 "baseline_angle_rad": 0.05, "followup_angle_rad": 0.07,
                                 "roi_size_px": ROI_PX, "followup_given": False},
                       details={"split_rows": np.full(ROI_PX, ROI_PX // 2.0)}, images=images)


def make_radiograph(seed: int, date: str, path) -> Radiograph:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:300, 0:240]
    pixels = np.clip(0.2 + 0.6 * np.exp(-((x - 120) ** 2) / 3000 - ((y - 150) ** 2) / 9000)
                     + 0.02 * rng.standard_normal((300, 240)), 0, 1).astype(np.float32)
    meta = dict(META, study_date=date)
    write_dicom(path, pixels, SPACING_MM, meta)
    return Radiograph(pixels, SPACING_MM, dict(meta, path=str(path)))


def make_session(folder, joints=(("MCP2", 0.9, False), ("PIP3", 2.4, True))) -> Session:
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "baseline_doejane.dcm", folder / "followup_doejane.dcm"
    base = make_radiograph(0, STUDY_DATES[0], paths[0])
    follow = make_radiograph(1, STUDY_DATES[1], paths[1])
    results = [make_result(name, dy, flagged) for name, dy, flagged in joints]
    specs = [JointSpec(name, 60.0 + 40 * k, 90.0 + 30 * k, (62.0, 95.0) if k == 1 else None)
             for k, (name, _, _) in enumerate(joints)]
    user_mask = np.zeros((ROI_PX, ROI_PX), bool)
    user_mask[:30, :] = True
    user_mask[30:34, 10:20] = True  # not a top band in column 20..: exercises both encodings
    return Session.from_run(paths[0], paths[1], base, follow, specs, {"roi_mm": 22.0, "refine": True},
                            results, model=MODEL, user_masks={joints[0][0]: user_mask})


def numbers(results):
    return [(r.name, r.jsn_mm, r.jsn_px, r.upper.as_tuple(), r.lower.as_tuple(), r.mse_before, r.mse_after,
             r.confidence, r.flagged, r.flag_reason) for r in results]


def test_round_trip_gives_the_same_numbers_and_edits(tmp_path):
    session = make_session(tmp_path / "case")
    path = tmp_path / "case" / "session.json"
    save_session(session, path)
    loaded = load_session(path)
    assert numbers(loaded.results) == numbers(session.results)
    assert loaded.results[0].images is None  # nothing re-run: the numbers come from the file
    assert loaded.warnings == [] and not loaded.stale
    assert loaded.baseline.path == session.baseline.path and loaded.baseline.sha256 == session.baseline.sha256
    assert loaded.baseline.meta["patient_id"] == "PID-73519"
    assert loaded.spacing_mm == SPACING_MM and loaded.model == MODEL
    assert loaded.software_version == __version__ and loaded.settings == {"roi_mm": 22.0, "refine": True}
    assert np.array_equal(loaded.joints[0].upper_mask, session.joints[0].upper_mask)
    assert loaded.joints[1].upper_mask is None
    assert loaded.joints[1].followup_set_by_user and not loaded.joints[0].followup_set_by_user
    assert loaded.joints[0].followup_xy == (123.5, 82.25)  # where the run found it
    assert loaded.joints[1].spec().followup_xy == (62.0, 95.0)
    assert loaded.results[0].details["split_rows"] == [31.0] * ROI_PX
    assert loaded.interval_months() == pytest.approx(552 / (365.25 / 12))
    assert loaded.created == session.created and loaded.modified >= loaded.created


def test_reopened_images_are_rebuilt_with_the_users_mask(tmp_path):
    session = make_session(tmp_path)
    save_session(session, tmp_path / "s.json")
    loaded = load_session(tmp_path / "s.json")
    from jsnreg.session import result_images
    with_user_mask, automatic = (result_images(loaded, r) for r in loaded.results)
    assert np.array_equal(with_user_mask.upper_mask, session.joints[0].upper_mask)
    assert np.array_equal(automatic.upper_mask, np.arange(ROI_PX)[:, None] < ROI_PX // 2 * np.ones(ROI_PX))
    assert with_user_mask.fixed.shape == (ROI_PX, ROI_PX)
    assert np.isfinite(automatic.loss_before()).all()


def test_file_layout_relative_paths_and_schema(tmp_path):
    session = make_session(tmp_path / "case")
    save_session(session, tmp_path / "case" / "s.json")
    data = json.loads((tmp_path / "case" / "s.json").read_text())
    assert (data["schema"], data["version"]) == ("jsnreg-session", 1)
    assert data["images"]["baseline"]["path"] == "baseline_doejane.dcm"
    assert data["created"].endswith("Z") and data["software"]["version"] == __version__
    # Moving the folder keeps the session valid: paths are relative to the session file.
    os.rename(tmp_path / "case", tmp_path / "moved")
    loaded = load_session(tmp_path / "moved" / "s.json")
    assert loaded.warnings == [] and loaded.baseline.path == str(tmp_path / "moved" / "baseline_doejane.dcm")


@pytest.mark.parametrize("mask_rows", [[5, 6, 7, 7, 0], None])
def test_mask_encodings_round_trip(mask_rows):
    rng = np.random.default_rng(3)
    if mask_rows is None:
        mask = rng.random((9, 5)) > 0.5
        mask[0, 0] = True
    else:
        mask = np.arange(9)[:, None] < np.array(mask_rows)[None, :]
    encoded = encode_mask(mask)
    assert ("boundary_rows" in encoded) == (mask_rows is not None)
    assert np.array_equal(decode_mask(json.loads(json.dumps(encoded))), mask)


def test_corrupt_foreign_and_newer_files_are_refused(tmp_path):
    path = tmp_path / "s.json"
    save_session(make_session(tmp_path), path)
    good = json.loads(path.read_text())
    cases = {"truncated": path.read_text()[:200], "foreign": json.dumps({"joints": []}),
             "newer": json.dumps(dict(good, version=2)), "damaged": json.dumps({k: v for k, v in good.items()
                                                                                  if k != "results"})}
    messages = {}
    for name, text in cases.items():
        bad = tmp_path / f"{name}.json"
        bad.write_text(text)
        with pytest.raises(InputError) as info:
            load_session(bad)
        messages[name] = str(info.value)
    assert "not valid JSON" in messages["truncated"]
    assert "not a jsnreg session" in messages["foreign"]
    assert "newer jsnreg" in messages["newer"] and "version 2" in messages["newer"]
    assert "damaged" in messages["damaged"]
    with pytest.raises(InputError, match="not found"):
        load_session(tmp_path / "nothing.json")


def test_changed_or_missing_image_warns_and_marks_stale(tmp_path):
    session = make_session(tmp_path)
    save_session(session, tmp_path / "s.json")
    with open(tmp_path / "followup_doejane.dcm", "ab") as f:
        f.write(b"\0")
    loaded = load_session(tmp_path / "s.json")
    assert loaded.stale and len(loaded.warnings) == 1 and "follow-up" in loaded.warnings[0]
    assert "changed" in loaded.warnings[0]
    assert numbers(loaded.results) == numbers(session.results)  # shown as recorded, not recomputed
    from jsnreg.session import result_images, session_images
    assert session_images(loaded) is None and result_images(loaded, loaded.results[0]) is None
    # Saving a stale session keeps the recorded hash, so it stays stale when opened again.
    save_session(loaded, tmp_path / "s2.json")
    assert load_session(tmp_path / "s2.json").stale
    os.remove(tmp_path / "baseline_doejane.dcm")
    again = load_session(tmp_path / "s.json")
    assert again.stale and any("missing" in w for w in again.warnings)


@pytest.mark.parametrize("target", ["json.dumps", "os.replace", "os.fsync"])
def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch, target):
    path = tmp_path / "s.json"
    session = make_session(tmp_path)
    save_session(session, path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    module, name = target.split(".")
    monkeypatch.setattr(f"jsnreg.session.{module}.{name}", fail)
    session.results[0].flag_reason = "edited"
    with pytest.raises((OSError, InputError)):
        save_session(session, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline_doejane.dcm", "followup_doejane.dcm", "s.json"]


def test_deidentified_session_has_no_identifying_field(tmp_path):
    session = make_session(tmp_path)
    anon = deidentified(session)
    save_session(anon, tmp_path / "anon.json")
    text = (tmp_path / "anon.json").read_text()
    for secret in IDENTIFYING:
        assert secret.lower() not in text.lower(), secret
    loaded = load_session(tmp_path / "anon.json")
    assert loaded.interval_days() == 552 and numbers(loaded.results) == numbers(session.results)
    assert loaded.baseline.sha256 == session.baseline.sha256 and not loaded.stale
    assert any("de-identified" in w for w in loaded.warnings)
    assert session.baseline.meta["patient_id"] == "PID-73519"  # the original is untouched


def test_from_run_refuses_a_missing_image(tmp_path):
    session = make_session(tmp_path)
    base, follow = session.radiographs
    with pytest.raises(InputError, match="not found"):
        Session.from_run(tmp_path / "gone.dcm", session.followup.path, base, follow, [], {}, [], model=MODEL)


def test_different_patients_warn(tmp_path):
    session = make_session(tmp_path)
    session.followup.meta["patient_id"] = "OTHER"
    save_session(session, tmp_path / "s.json")
    assert any("different patient" in w for w in load_session(tmp_path / "s.json").warnings)
