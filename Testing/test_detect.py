"""Joint detection: positions, names and side on the generated hand and on real hands, the variants a
film brings (mirrored, rotated, two hands, a finger missing), refusals, and the faces that use it."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from jsnreg.cli import main
from jsnreg.detect import detect_joints, to_work_px
from jsnreg.detect_bench import (blurred, fingers_cut, load_annotations, mirrored, noisier, real_hands_dir,
                                 rotated, score, scored, shuttered, thumb_cut, toned, two_hands, without_finger)
from jsnreg.errors import InputError
from jsnreg.images import read_radiograph, write_png
from jsnreg.joints import STANDARD_JOINTS, load_joints_json
from jsnreg.real_hands import ANNOTATIONS


@pytest.fixture(scope="module")
def hand():
    """The generated right hand (0.2 mm/px) with the exact centres of its 14 joints."""
    from jsnreg.synthetic import make_hand_pair

    pair = make_hand_pair(0)
    return pair.baseline, pair.spacing_mm, {n: np.array(xy, float) for n, xy in pair.joints.items()}


def by_name(joints):
    return {j.name: np.array([j.x, j.y]) for j in joints}


def assert_close(found, truth, tol_px):
    assert set(found) == set(truth), f"names differ: {sorted(set(found) ^ set(truth))}"
    worst = {n: float(np.hypot(*(found[n] - truth[n]))) for n in truth}
    assert max(worst.values()) <= tol_px, worst


def test_generated_hand_all_joints_found_and_named(hand):
    pixels, spacing, truth = hand
    found = detect_joints(pixels, spacing)
    assert_close(by_name(found), truth, 1.0 / spacing)  # within 1 mm
    assert {j.side for j in found} == {"R"}
    assert all(0 <= j.confidence <= 1 for j in found)
    assert [j.name for j in found] == list(STANDARD_JOINTS)


def test_mirrored_hand_is_a_left_hand(hand):
    pixels, spacing, truth = hand
    flipped, ftruth = mirrored(pixels, truth)
    found = detect_joints(flipped, spacing)
    assert {j.side for j in found} == {"L"}
    assert_close(by_name(found), ftruth, 1.0 / spacing)


@pytest.mark.parametrize("degrees", [30.0, -30.0])
def test_rotated_hand(hand, degrees):
    pixels, spacing, truth = hand
    turned, ttruth = rotated(pixels, truth, degrees)
    assert_close(by_name(detect_joints(turned, spacing)), ttruth, 1.5 / spacing)


def test_two_hands_on_one_film_carry_their_side(hand):
    pixels, spacing, truth = hand
    film, ftruth = two_hands(pixels, truth, "R")  # the right hand on the left half, its mirror beside it
    found = detect_joints(film, spacing)
    assert_close(by_name(found), ftruth, 1.5 / spacing)
    assert {j.side for j in found if j.x < pixels.shape[1]} == {"R"}
    assert {j.side for j in found if j.x >= pixels.shape[1]} == {"L"}



def test_two_hands_whose_fingers_touch_are_cut_apart(hand):
    pixels, spacing, truth = hand
    film, ftruth = two_hands(pixels, truth, "R")
    # the empty columns between the two little fingers and 3 mm more removed: the fingertips overlap,
    # so the two hands make one outline
    tissue = (film > np.percentile(film, 1) + 0.1).any(axis=0)
    empty = np.flatnonzero(~tissue[:pixels.shape[1] + 200] & (np.arange(pixels.shape[1] + 200) > 200))
    cut = np.arange(empty.min() - int(1.5 / spacing), empty.max() + int(1.5 / spacing))
    film = np.delete(film, cut, axis=1)
    ftruth = {n: xy - np.array([len(cut), 0]) * (xy[0] > cut.max()) for n, xy in ftruth.items()}
    found = detect_joints(film, spacing)
    assert_close(by_name(found), ftruth, 1.5 / spacing)
    assert {j.name[:2] for j in found if j.x < cut.min()} == {"R-"}


@pytest.mark.parametrize("digit", [3, 5])
def test_removed_finger_reports_no_joint_for_it(hand, digit):
    pixels, spacing, truth = hand
    cut, kept, removed = without_finger(pixels, truth, digit)
    found = by_name(detect_joints(cut, spacing))
    assert not removed & set(found)
    others = {n: p for n, p in kept.items() if not n.endswith(str(digit))}
    assert_close({n: found[n] for n in others if n in found}, others, 1.5 / spacing)


@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_a_thumb_cut_by_the_film_edge_leaves_the_fingers_their_names(hand, fraction):
    """The film's edge between MCP1 and IP1: the thumb shows no fingertip, so neither end finger has a
    thumb's web space; the little finger was named the thumb (and the others 2-4, 38-61 mm off)."""
    pixels, spacing, truth = hand
    cut, kept, beyond = thumb_cut(pixels, truth, fraction)
    assert "IP1" in beyond and "MCP1" in kept
    found = by_name(detect_joints(cut, spacing))
    assert not beyond & set(found)
    fingers = {n: p for n, p in kept.items() if n[-1] in "2345"}
    assert_close({n: p for n, p in found.items() if n in fingers}, fingers, 1.5 / spacing)


@pytest.mark.parametrize("fraction", [0.3, 0.7])
def test_fingers_cut_by_the_film_edge_keep_their_joints_names(hand, fraction):
    """The film's top edge between DIP3 and PIP3: the fingers' outline ends there, not at their tips;
    counted from the edge, the proportions named PIP3 DIP3 and MCP3 PIP3 (23-80 mm off, DIPs
    invented)."""
    pixels, spacing, truth = hand
    cut, kept, beyond = fingers_cut(pixels, truth, fraction)
    assert "DIP3" in beyond
    found = by_name(detect_joints(cut, spacing))
    assert not beyond & set(found)
    assert_close({n: found[n] for n in kept if n in found}, {n: kept[n] for n in kept if n in found}, 1.5 / spacing)
    assert {"MCP2", "MCP3", "MCP4", "PIP2", "PIP3", "PIP4"} <= set(found)


def test_a_film_inside_collimator_shutters_keeps_its_joints(hand):
    """A bright, flat margin round the film (no X-rays reached it) made one outline of the hand and the
    margin: the hand was refused. Inside its exposed field the joints are found as on the bare film."""
    pixels, spacing, truth = hand
    film, moved, beyond = shuttered(pixels, truth, spacing)
    assert not beyond
    found = detect_joints(film, spacing)
    assert_close(by_name(found), moved, 1.0 / spacing)
    assert {j.side for j in found} == {"R"}


def test_a_shutter_over_the_thumb_is_the_film_edge(hand):
    """The shutter's edge between MCP1 and IP1 cuts the thumb as the film's edge would: nothing
    beyond it is reported, the fingers keep their names."""
    pixels, spacing, truth = hand
    film, kept, beyond = shuttered(pixels, truth, spacing, thumb_fraction=0.5)
    assert "IP1" in beyond and "MCP1" in kept
    found = by_name(detect_joints(film, spacing))
    assert not beyond & set(found)
    fingers = {n: p for n, p in kept.items() if n[-1] in "2345"}
    assert_close({n: p for n, p in found.items() if n in fingers}, fingers, 1.5 / spacing)


def test_unexposed_margin_only_where_the_film_has_one(hand):
    """The margin is the bright flat band along the edge; a dark border, a bright marker at the edge
    or a film without one give none."""
    from jsnreg.detect import _reduce
    from jsnreg.detect_field import unexposed

    pixels, spacing, truth = hand
    small, factor = _reduce(pixels, spacing)
    mm = spacing * factor
    assert unexposed(small, mm) is None
    assert unexposed(np.pad(small, 30), mm) is None
    marked = small.copy()
    marked[:20, :20] = small.max()  # a lead marker of 8 mm at the corner
    assert unexposed(marked, mm) is None
    film, _, _ = shuttered(pixels, truth, spacing, margin_mm=10.0)
    small, factor = _reduce(film, spacing)
    margin = unexposed(small, mm)
    band = int(10.0 / mm)
    assert margin[:band - 2].all() and margin[:, -(band - 2):].all()  # the whole band, to its penumbra
    inner = margin[band + 5:-band - 5, band + 5:-band - 5]
    assert not inner.any()  # and none of the film inside it


def test_a_film_stored_inverted_is_refused_with_the_reason(hand, tmp_path, capsys):
    """Bone dark (MONOCHROME1 saved without its tag): no hand, or a doubtful one, where its negative
    shows a clear one. Refused, one line, saying so; the film as stored keeps its joints."""
    pixels, spacing, _ = hand
    with pytest.raises(InputError, match="stored inverted"):
        detect_joints(1.0 - pixels, spacing)
    negative = tmp_path / "negative.png"
    write_png(negative, 1.0 - pixels)
    assert main(["detect", str(negative), "--spacing-mm", str(spacing)]) == 2
    err = capsys.readouterr().err
    assert "stored inverted" in err and len(err.strip().splitlines()) == 1
    assert len(detect_joints(pixels, spacing)) == 14


def test_real_films_stored_inverted_are_refused_with_the_reason(real):
    """Adult films (dark background, bright marker) and a child's, stored negative: they gave 8 joints,
    all misplaced, or were refused as no hand, without a word on why."""
    for rel, spacing in (("adult-annotated/test_img1_L.png", 0.3), ("adult-annotated/test_img5_R.png", 0.3),
                         ("rsna-bone-age/4498.png", 0.1)):
        pixels = read_radiograph(real / rel, spacing_mm=spacing).pixels
        with pytest.raises(InputError, match="stored inverted"):
            detect_joints(1.0 - pixels, spacing)


def test_names_restrict(hand):
    pixels, spacing, _ = hand
    assert [j.name for j in detect_joints(pixels, spacing, names=["MCP2", "PIP3"])] == ["MCP2", "PIP3"]


@pytest.mark.parametrize("what", ["noise", "flat", "disc", "small", "nan"])
def test_not_a_hand_is_refused(what):
    rng = np.random.default_rng(3)
    images = {"noise": rng.random((900, 700)), "flat": np.full((900, 700), 0.4),
              "disc": (np.hypot(*np.mgrid[-450:450, -350:350]) < 300) * 0.6 + 0.02 * rng.random((900, 700)),
              "small": np.zeros((20, 20)), "nan": np.full((900, 700), np.nan)}
    with pytest.raises(InputError):
        detect_joints(images[what], 0.2)


def closed_fingers(pixels: np.ndarray, spacing: float, gap_mm: float = 12.0) -> np.ndarray:
    """The hand with the background between its fingers (gaps narrower than 2 gap_mm, closed over
    the mask) filled with soft tissue, as a young child's closed fingers that touch each other."""
    from jsnreg.detect import _otsu3_low

    smooth = ndimage.gaussian_filter(pixels, 1.0 / spacing)
    mask = smooth > _otsu3_low(smooth)
    far = ndimage.distance_transform_edt(~mask) > gap_mm / spacing
    gaps = (ndimage.distance_transform_edt(~far) > gap_mm / spacing) & ~mask
    out = pixels.copy()
    out[gaps] = np.median(pixels[mask & (smooth < np.percentile(smooth[mask], 30))])  # soft tissue
    return out


def test_closed_fingers_are_found_from_their_bones(hand, monkeypatch):
    """With the gaps between the fingers filled, the outline shows too few fingertips (the hand was
    refused); the bones crossing the proximal phalanges still give every finger its joints and name."""
    import jsnreg.detect as detect

    pixels, spacing, truth = hand
    mitten = closed_fingers(pixels, spacing)
    found = detect_joints(mitten, spacing)
    assert_close(by_name(found), truth, 2.0 / spacing)
    assert {j.side for j in found} == {"R"}
    monkeypatch.setattr(detect, "_bone_fingertips", lambda *args: [])
    with pytest.raises(InputError, match="three to five fingers"):
        detect_joints(mitten, spacing)


# --- real hands (shared data; skipped where it is absent) -------------------------------------

@pytest.fixture(scope="module")
def real():
    folder = real_hands_dir()
    if folder is None:
        pytest.skip("real hands not available (../shared/data/real-hands)")
    return folder


def test_real_hand_side_from_the_anatomy(real):
    image = read_radiograph(real / "rsna-bone-age" / "4407.png", spacing_mm=0.1)
    found = detect_joints(image.pixels, 0.1)
    flipped = detect_joints(image.pixels[:, ::-1].copy(), 0.1)
    assert {j.side for j in found} == {"L"} and {j.side for j in flipped} == {"R"}
    w = image.pixels.shape[1]
    assert_close(by_name(flipped), {n: np.array([w - 1 - p[0], p[1]]) for n, p in by_name(found).items()}, 20.0)


def test_real_test_hands_within_tolerance(real):
    if not ANNOTATIONS.exists():
        pytest.skip("real-hand joint annotations not in this checkout")
    annotations = load_annotations()
    names = ["rsna-bone-age/4407.png", "rsna-bone-age/1437.png", "rsna-bone-age/4517.png"]
    good = total = invented = 0
    for rel in names:
        entry = annotations[rel]
        truth, absent = scored(entry)
        found = by_name(detect_joints(read_radiograph(real / rel, spacing_mm=0.1).pixels, 0.1))
        invented += len(absent & set(found))
        total += len(truth)
        good += sum(n in found and np.hypot(*(found[n] - p)) <= 40 for n, p in truth.items())  # 4 mm
    assert invented == 0
    assert good >= 0.8 * total, f"{good} of {total} within 4 mm"


def _val_hand(real, rel):
    from jsnreg.detect import _hands

    entry = load_annotations()[rel]
    fine, _, factor, offset, hands = _hands(read_radiograph(real / rel, spacing_mm=0.1).pixels, 0.1)
    truth, _ = scored(entry)
    independent = {n: to_work_px(p, factor, offset) for n, p in truth.items() if n not in entry.get("from_detector", [])}
    return fine, hands[0], independent


def test_refinement_brings_real_joints_onto_the_joint_space(real):
    """On val hands (not trained on), the filter moves traced joints nearer the annotated ones."""
    from jsnreg.detect_refine import refine

    before = after = total = 0
    for rel in ["rsna-bone-age/2815.png", "rsna-bone-age/4558.png", "rsna-bone-age/2565.png"]:
        fine, hand, truth = _val_hand(real, rel)
        traced = {n: np.asarray(c) for n, c, _, _ in hand.joints}
        refined = {n: xy for n, xy, _ in refine(fine, hand)}
        tol = 2.0 / hand.mm
        total += len(truth)
        before += sum(n in traced and np.hypot(*(traced[n] - p)) <= tol for n, p in truth.items())
        after += sum(n in refined and np.hypot(*(refined[n] - p)) <= tol for n, p in truth.items())
    assert after >= 0.8 * total and after >= before + 0.15 * total, (before, after, total)


def test_a_finger_near_the_film_edge_does_not_misname_the_others(real):
    """Train 2859: the little finger runs along the film's edge; as filmed its trace stops short and it is
    left out rather than taken for the thumb (which named the index finger 4, the ring finger 2); the hand
    is doubtful, and the mask read at a darker tone curve finds the little finger too, on its joints."""
    rel = "rsna-bone-age/2859.png"
    truth, _ = scored(load_annotations()[rel])
    found = by_name(detect_joints(read_radiograph(real / rel, spacing_mm=0.1).pixels, 0.1))
    for n in ("MCP2", "MCP3", "MCP4", "DIP2", "DIP4", "MCP5", "PIP5", "DIP5"):
        assert np.hypot(*(found[n] - truth[n])) <= 40, n  # 4 mm


def test_real_thumbs_cut_by_the_film_edge_invent_no_joint_and_misname_no_finger(real):
    """Val hands cropped beside the thumb halfway from MCP1 to IP1: fingers 2-5 keep their names
    (the little finger was taken for the thumb on 11 of the 12 hands) and at most one joint beyond the
    edge is reported (2608: the thumb's stub traced with its MCP joint space as IP1)."""
    annotations = load_annotations()
    misnamed = invented = total = 0
    for rel, entry in annotations.items():
        if entry["split"] != "val" or not rel.startswith("rsna"):
            continue
        truth, absent = scored(entry)
        cut, kept, beyond = thumb_cut(read_radiograph(real / rel, spacing_mm=0.1).pixels, truth)
        found = by_name(detect_joints(cut, 0.1))
        invented += len((absent | beyond) & set(found))
        for n, p in found.items():
            near = [m for m, q in kept.items() if np.hypot(*(p - q)) <= 20]  # 2 mm
            misnamed += n[-1] in "2345" and bool(near) and n not in near
        total += 1
    assert total == 12 and invented <= 1 and misnamed == 0, (invented, misnamed)


def test_real_hands_inside_collimator_shutters_are_found_as_filmed(real):
    """Three val hands inside a bright margin (no X-rays reached it): refused before; now each joint
    as on the bare film (within 1 mm of where it was found there, no joint more or less)."""
    annotations = load_annotations()
    for rel in ("rsna-bone-age/4498.png", "rsna-bone-age/2182.png", "rsna-bone-age/2838.png"):
        pixels = read_radiograph(real / rel, spacing_mm=0.1).pixels
        truth, _ = scored(annotations[rel])
        bare = by_name(detect_joints(pixels, 0.1))
        film, moved, beyond = shuttered(pixels, truth, 0.1)
        pad = moved["MCP2"] - truth["MCP2"]
        found = by_name(detect_joints(film, 0.1))
        assert_close({n: p - pad for n, p in found.items()}, bare, 10.0)


def test_real_fingers_cut_by_the_film_edge_are_named_right(real):
    """Val hands cropped halfway between DIP3 and PIP3: of the joints reported, none named after
    another joint and none beyond the edge (before: 29 misnamed, 9 invented on the 12 hands; with the
    cut fingers' joints chosen from the edge but valleys at the edge kept, 2182's DIP2 and 4375's
    DIP4, just beyond it, were reported on them)."""
    misnamed = invented = total = 0
    for rel, entry in load_annotations().items():
        if entry["split"] != "val" or not rel.startswith("rsna"):
            continue
        truth, absent = scored(entry)
        cut, kept, beyond = fingers_cut(read_radiograph(real / rel, spacing_mm=0.1).pixels, truth)
        try:
            found = by_name(detect_joints(cut, 0.1))
        except InputError:  # 1541's closed fingers, cut so, are not found: nothing reported
            found = {}
        for n, p in found.items():
            near = [m for m, q in kept.items() if np.hypot(*(p - q)) <= 20]  # 2 mm
            invented += n in absent | beyond
            misnamed += bool(near) and n not in near
        total += 1
    assert total == 12 and misnamed == 0 and invented == 0, (misnamed, invented)


@pytest.mark.parametrize("rel", ["rsna-bone-age/2621.png", "rsna-bone-age/2798.png", "rsna-bone-age/4496.png"])
def test_a_dip_at_the_film_edge_is_left_out(real, rel):
    """Train hands cropped halfway between DIP3 and PIP3: the ring finger's DIP lies just beyond the edge, and a
    DIP4 was reported 0.4-3 mm inside it (the middle phalanx's end read as a joint space)."""
    from jsnreg.detect_refine import MIN_DIP_EDGE_MM

    truth, _ = scored(load_annotations()[rel])
    cut, _, beyond = fingers_cut(read_radiograph(real / rel, spacing_mm=0.1).pixels, truth)
    assert "DIP4" in beyond
    found = by_name(detect_joints(cut, 0.1))
    assert not beyond & set(found)
    h, w = cut.shape
    assert all(min(x, y, w - 1 - x, h - 1 - y) * 0.1 >= MIN_DIP_EDGE_MM
               for n, (x, y) in found.items() if n.startswith("DIP"))


@pytest.mark.parametrize("rel", ["rsna-bone-age/2768.png", "rsna-bone-age/2783.png", "rsna-bone-age/4557.png"])
def test_a_joint_placed_beyond_the_film_edge_is_left_out(real, rel):
    """The edge 0.8 of the way from MCP1 to IP1: the thumb's stub is found as a finger and the
    filters carried its IP1 past the edge (the regions read on as the edge's pixels); it was
    reported there."""
    truth, _ = scored(load_annotations()[rel])
    cut, _, beyond = thumb_cut(read_radiograph(real / rel, spacing_mm=0.1).pixels, truth, 0.8)
    assert "IP1" in beyond
    assert "IP1" not in by_name(detect_joints(cut, 0.1))


@pytest.mark.parametrize("variant", ["blurred 0.3 mm", "noisier 5 %"])
def test_a_blurred_or_noisier_hand_keeps_its_joints(hand, variant):
    """As a softer detector or a lower dose leaves the film: every joint still found within 1 mm."""
    image, spacing, truth = hand
    film = blurred(image, spacing, 0.3) if variant.startswith("blurred") else noisier(image, 0.05)
    assert float(np.abs(film - image).mean()) > 0.005  # the film did change
    found = by_name(detect_joints(film, spacing))
    assert set(found) == set(truth)
    assert all(np.hypot(*(found[n] - truth[n])) <= 1.0 / spacing for n in truth)


def test_a_hand_processed_much_darker_is_read_at_another_tone_of_its_mask(hand, monkeypatch):
    """The generated hand with its tone raised to the power 2.2: its mask at the film's own tone shows no
    fingers (refused); read again at lighter tones of the mask, all 14 joints are found within 1 mm."""
    import jsnreg.detect as detect

    image, spacing, truth = hand
    darker = toned(image, 2.2)
    found = by_name(detect_joints(darker, spacing))
    assert set(found) == set(truth)
    assert all(np.hypot(*(found[n] - truth[n])) <= 1.0 / spacing for n in truth)
    monkeypatch.setattr(detect, "MASK_GAMMAS", ())
    with pytest.raises(InputError, match="no hand found"):
        detect_joints(darker, spacing)


@pytest.mark.parametrize("rel, least", [("adult-annotated/test_img4_L.png", 10), ("adult-annotated/test_img5_L.png", 9),
                                        ("adult-annotated/test_img5_R.png", 12)])
def test_a_real_adult_hand_processed_darker_is_found_from_its_mask_read_at_another_tone(real, monkeypatch, rel, least):
    """Adult val hands (11-13 of 14 joints found as filmed) with their tone raised to the power 1.6: the hand
    mask's threshold fell inside the fingertips' soft tissue and 1-2 joints were found; the doubtful hand read
    again at a lighter tone curve of the mask finds 9-13."""
    import jsnreg.detect as detect

    entry = load_annotations()[rel]
    spacing = float(entry["spacing_mm_nominal"])
    truth, absent = scored(entry)
    darker = toned(read_radiograph(real / rel, spacing_mm=spacing).pixels, 1.6)

    def found():
        outcomes = score(detect_joints(darker, spacing), truth, absent, 2.0 / spacing)
        return sum(o == "found" for _, o in outcomes)
    assert found() >= least
    monkeypatch.setattr(detect, "MASK_GAMMAS", ())
    assert found() <= 3


def test_a_real_hand_with_closed_fingers_is_found_from_its_bones(real, monkeypatch):
    """Val 1541, a young child's left hand whose fingers touch up to their tips: the outline shows two
    fingertips and was refused; from the bones, its joints are named right (each nearer its own
    annotated joint than any other) and the PIP3-5 and DIP5 found within 2 mm; the MCP2 and MCP3 the
    filters carried 9-18 mm off their traces (towards the film's exposure step) are left out."""
    import jsnreg.detect as detect

    rel = "rsna-bone-age/1541.png"
    truth, absent = scored(load_annotations()[rel])
    pixels = read_radiograph(real / rel, spacing_mm=0.1).pixels
    joints = detect_joints(pixels, 0.1)
    found = by_name(joints)
    assert {j.side for j in joints} == {"L"} and not absent & set(found)
    assert set(found) == set(truth) - {"MCP2", "MCP3"}
    for n, p in found.items():
        assert min(truth, key=lambda m: np.hypot(*(truth[m] - p))) == n, n
    assert all(np.hypot(*(found[n] - truth[n])) <= 20 for n in ("PIP3", "PIP4", "PIP5", "DIP5"))  # 2 mm
    monkeypatch.setattr(detect, "_bone_fingertips", lambda *args: [])
    monkeypatch.setattr(detect, "MASK_GAMMAS", ())  # the outline alone, at the film's own tone
    with pytest.raises(InputError, match="three to five fingers"):
        detect_joints(pixels, 0.1)


def test_a_joint_that_took_its_neighbours_joint_space_is_left_out():
    from jsnreg.detect_refine import _jumped

    traced = {"MCP2": np.array([0.0, 300.0]), "PIP2": np.array([0.0, 200.0]), "DIP2": np.array([0.0, 140.0])}
    moved = [("MCP2", np.array([0.0, 298.0]), 1.0), ("PIP2", np.array([0.0, 204.0]), 1.0),
             ("DIP2", np.array([1.0, 202.0]), 1.0)]  # DIP2 jumped 62 px onto PIP2
    assert _jumped(moved, traced, min_px=30.0) == {"DIP2"}
    assert _jumped(moved[:2], traced, min_px=30.0) == set()  # 94 px apart: both kept


def test_a_joint_the_filters_carried_far_from_its_trace_is_left_out():
    from jsnreg.detect_refine import _strayed

    traced = {"MCP2": np.array([0.0, 300.0]), "PIP2": np.array([0.0, 200.0])}
    moved = [("MCP2", np.array([3.0, 330.0]), 1.0), ("PIP2", np.array([2.0, 210.0]), 1.0)]
    assert _strayed(moved, traced, max_px=25.0) == {"MCP2"}  # 30 px off its trace
    assert _strayed(moved, traced, max_px=31.0) == set()


def test_the_ip1_of_a_thumb_cut_before_it_is_left_out():
    from jsnreg.detect_refine import MIN_THUMB_PHALANX_RADII, _cut_thumb

    radius = 100.0
    mcp1 = ("MCP1", np.array([400.0, 500.0]), 1.0)
    ip1 = lambda gap: ("IP1", mcp1[1] + np.array([0.6, -0.8]) * gap * radius, 1.0)
    assert _cut_thumb([mcp1, ip1(0.26)], radius) == {"IP1"}  # train 2107: the thumb ends at the film's edge
    assert _cut_thumb([mcp1, ip1(0.57)], radius) == set()  # the shortest phalanx of the train and val hands
    assert _cut_thumb([ip1(0.1)], radius) == set()  # without MCP1 nothing to measure against
    assert 0.26 < MIN_THUMB_PHALANX_RADII < 0.57


def _finger(degrees: float, width_mm: float, mm: float, shape=(200, 200)):
    """A straight bright bone (bar) of width_mm on dimmer soft tissue, tilted by `degrees` from
    vertical, through the image centre, with a dark joint space across it there; returns the image,
    the unit direction towards the tip and the across direction (-t[1], t[0]) the offsets use."""
    t = np.array([np.sin(np.radians(degrees)), -np.cos(np.radians(degrees))])
    across = np.array([-t[1], t[0]])
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    rel = np.stack([xx - shape[1] / 2, yy - shape[0] / 2], -1)
    a, c = rel @ t * mm, rel @ across * mm  # mm along and across the bone's axis
    image = 0.3 + 0.5 * (np.abs(c) < width_mm / 2) * (np.abs(a) > 0.6)  # 1.2 mm joint space
    return ndimage.gaussian_filter(image, 0.3 / mm).astype(np.float32), t, across


@pytest.mark.parametrize("degrees", [0.0, 25.0, -40.0])
def test_centre_offset_finds_the_bones_axis_across_the_joint_space(degrees):
    from jsnreg.detect import centre_offset

    mm = 0.4
    image, t, across = _finger(degrees, width_mm=7.0, mm=mm)  # a child's proximal phalanx
    centre = np.array([100.0, 100.0])
    for off_mm in (-2.3, 1.7, 0.0):
        p = centre + across * off_mm / mm
        assert abs(centre_offset(image, p, t, mm) * mm + off_mm) <= 0.15, off_mm  # back onto the axis
    # a bone edge beyond the 6 mm the lines across reach: nothing to centre on, no move
    assert centre_offset(image, centre + across * 3.0 / mm, t, mm) == 0.0


def test_finger_joints_are_moved_onto_the_bones_axis_and_the_thumbs_are_not():
    from jsnreg.detect_refine import _recentred

    mm = 0.4
    image, t, across = _finger(15.0, width_mm=7.0, mm=mm)
    hand = type("Hand", (), {"mm": mm})()
    p = np.array([100.0, 100.0]) + across * 2.2 / mm  # 2.2 mm beside the axis: misplaced at 2 mm
    for name in ("MCP3", "PIP3", "DIP3"):
        assert np.hypot(*(_recentred(image, hand, name, p, t) - [100.0, 100.0])) * mm <= 0.15, name
    for name in ("MCP1", "IP1"):
        assert np.array_equal(_recentred(image, hand, name, p, t), p), name


def test_an_mcp_is_moved_along_its_finger_onto_the_darkest_line_and_not_onto_an_edge():
    from jsnreg.detect_refine import _darkest_along

    mm = 0.4
    image, t, _ = _finger(0.0, width_mm=7.0, mm=mm)  # joint space 1.2 mm wide at the centre
    centre = np.array([100.0, 100.0])
    for off_mm in (-1.2, 0.8):  # in the metacarpal head or the phalanx's base: onto the joint space
        moved = _darkest_along(image, centre + t * off_mm / mm, t, mm)
        assert np.hypot(*(moved - centre)) * mm <= 0.15, off_mm
    # no valley within reach, only the bone's end getting darker towards it: no move
    p = centre + t * 3.0 / mm
    assert np.array_equal(_darkest_along(image, p, t, mm), p)


def test_bench_splits_the_adult_images_by_patient():
    from jsnreg.detect_bench import detection_splits

    annotations = {f"adult-annotated/test_img{k}.png": {"split": "test"} for k in ("5_L", "5_R", "1_L", "2_L")}
    annotations["rsna-bone-age/1.png"] = {"split": "train"}
    splits = detection_splits(annotations)
    assert splits["rsna-bone-age/1.png"] == "train"
    assert splits["adult-annotated/test_img5_L.png"] == splits["adult-annotated/test_img5_R.png"]
    assert {splits[k] for k in annotations if k.startswith("adult")} <= {"val", "test"}


def _traced_mcp3_moved_proximal(hand, mm_off: float):
    """The generated hand's work image, its traced hand with MCP3 started mm_off proximal along its
    finger, and the true MCP3 (work px)."""
    from jsnreg.detect import _Hand, _hands

    image, spacing, truth = hand
    fine, _, factor, offset, hands = _hands(image, spacing)
    h = hands[0]
    moved = [(n, np.asarray(c, float) - mm_off / h.mm * d if n == "MCP3" else c, d, conf) for n, c, d, conf in h.joints]
    return fine, _Hand(h.side, h.lean, h.radius, h.mm, moved), to_work_px(truth["MCP3"], factor, offset)


def test_an_mcp_traced_on_a_line_far_from_its_joint_is_found_again_by_the_phalanges_proportion(hand, monkeypatch):
    """An MCP traced 20 mm proximal (beyond the two passes' search; val 2783's MCP2, 12 mm) is searched for
    again where the proximal phalanx's usual proportion to the middle one puts it."""
    from jsnreg import detect_refine

    fine, traced, mcp3 = _traced_mcp3_moved_proximal(hand, 20.0)
    error_mm = lambda: np.hypot(*(dict((n, xy) for n, xy, _ in detect_refine.refine(fine, traced))["MCP3"] - mcp3)) * traced.mm
    assert error_mm() <= 1.0
    monkeypatch.setattr(detect_refine, "PHALANX_RATIO", (0.0, np.inf))  # the check off: the filter alone
    assert error_mm() > 5.0


def test_phalanx_ratio_of_a_finger():
    from jsnreg.detect_refine import PHALANX_RATIO, TYPICAL_PHALANX_RATIO, _phalanx_ratio

    at = {"MCP2": np.array([0.0, 330.0]), "PIP2": np.array([0.0, 160.0]), "DIP2": np.array([0.0, 60.0])}
    assert _phalanx_ratio(at, "2") == pytest.approx(1.7)
    assert _phalanx_ratio(at, "3") is None  # finger 3 has no joints here
    assert PHALANX_RATIO[0] < TYPICAL_PHALANX_RATIO < PHALANX_RATIO[1]


def test_no_real_joint_is_reported_twice(real):
    """On an adult film where one finger's DIP refinement lands on its PIP, the two are not both reported."""
    image = read_radiograph(real / "adult-annotated" / "test_img2_L.png", spacing_mm=0.3)
    found = by_name(detect_joints(image.pixels, 0.3))
    points = np.array(list(found.values()))
    gaps = np.hypot(*(points[:, None] - points[None]).transpose(2, 0, 1))
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() > 10.0 / 0.3  # every two joints at least 10 mm apart


def test_refinement_recovers_a_displaced_joint(real):
    """A joint started 3 mm off along its finger on a val hand returns to within 2 mm of the annotation."""
    from jsnreg.detect import _Hand
    from jsnreg.detect_refine import refine

    fine, hand, truth = _val_hand(real, "rsna-bone-age/2815.png")
    good = total = 0
    for sign in (1, -1):
        moved = [(n, truth[n] + sign * 3.0 / hand.mm * d, d, c) for n, _, d, c in hand.joints if n in truth]
        for n, xy, _ in refine(fine, _Hand(hand.side, hand.lean, hand.radius, hand.mm, moved)):
            total += 1
            good += np.hypot(*(xy - truth[n])) <= 2.0 / hand.mm
    assert good >= 0.75 * total, f"{good} of {total}"


def test_cross_validation_refines_each_hand_with_filters_learned_without_it(monkeypatch):
    """`python -m jsnreg.detect_train --cv` on two generated hands: each is refined by the filters of
    the other only, and its joints come back within 2 mm."""
    from jsnreg import detect_train
    from jsnreg.detect import _hands
    from jsnreg.synthetic import make_hand_pair

    hands = []
    for seed in (2, 3):
        pair = make_hand_pair(seed)
        fine, _, factor, offset, found = _hands(pair.followup, pair.spacing_mm)
        hands.append((f"generated {seed}", fine, found[0],
                      {n: to_work_px(p, factor, offset) for n, p in pair.followup_joints.items()}))
    learned_on = []
    learn = detect_train.filters
    monkeypatch.setattr(detect_train, "filters", lambda hs, w=None: (learned_on.append([h[0] for h in hs]), learn(hs, w))[1])
    assert detect_train.cross_validated(hands, []) == (28, 28)
    assert learned_on == [["generated 3"], ["generated 2"]]


def test_filters_are_those_of_the_training_command():
    from jsnreg.detect_refine import FILTERS, HALF, load_filters

    data = json.loads(FILTERS.read_text())
    assert data["made_by"].startswith("python -m jsnreg.detect_train") and data["half"] == list(HALF)
    passes = load_filters()
    assert len(passes) == 2 and all(set(p) == {"IP1", "MCP1", "MCP", "PIP", "DIP"} for p in passes)
    assert {f.shape for p in passes for f in p.values()} == {(2 * HALF[0] + 1, 2 * HALF[1] + 1)}


# --- command line ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from jsnreg.synthetic import write_demo_case

    return write_demo_case(tmp_path_factory.mktemp("case"))


def test_cli_detect_writes_joints_and_picture(case, tmp_path, capsys):
    out, png = tmp_path / "joints.json", tmp_path / "joints.png"
    assert main(["detect", case["baseline"], "--json", str(out), "--png", str(png)]) == 0
    assert "14 joints detected" in capsys.readouterr().out
    specs = load_joints_json(out)
    assert [s.name for s in specs] == list(STANDARD_JOINTS) and {s.source for s in specs} == {"detected"}
    assert png.stat().st_size > 10_000


def test_cli_detect_refuses_what_is_not_a_hand(tmp_path, capsys):
    noise = tmp_path / "noise.png"
    write_png(noise, np.random.default_rng(0).random((600, 500)))
    assert main(["detect", str(noise), "--spacing-mm", "0.2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no hand found") and len(err.strip().splitlines()) == 1
    assert main(["detect", str(noise)]) == 2  # a PNG has no spacing
    assert "spacing" in capsys.readouterr().err


def test_cli_quantify_detects_when_no_joints_given(case, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["quantify", case["baseline"], case["followup"], "--joints-only", "MCP2,PIP3", "--out", str(out),
                 "--report"]) == 0
    data = json.loads((out / "results.json").read_text())
    assert [j["name"] for j in data["joints"]] == ["MCP2", "PIP3"]
    assert {j["position"]["source"] for j in data["joints"]} == {"detected"}
    assert "detected" in (out / "results.csv").read_text()
    session = json.loads((out / "session.json").read_text())
    assert {(j["source"], j["moved"]) for j in session["joints"]} == {("detected", False)}
    # each joint keeps its detection's confidence, in the results and the session
    confidences = [j["position"]["detect_confidence"] for j in data["joints"]]
    assert [j["detect_confidence"] for j in session["joints"]] == confidences
    assert all(0.0 < c <= 1.0 for c in confidences)
    assert "detected" in (out / "report.html").read_text()


def test_cli_quantify_explicit_joints_win(case, tmp_path):
    out = tmp_path / "out"
    joints = load_joints_json(case["joints"])
    j = joints[0]
    assert main(["quantify", case["baseline"], case["followup"], "--joint", f"{j.name}={j.x},{j.y}",
                 "--joints-only", j.name, "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    assert [(r["name"], r["position"]["source"]) for r in data["joints"]] == [(j.name, "manual")]
    assert main(["quantify", case["baseline"], case["followup"], "--joint", f"{j.name}={j.x},{j.y}",
                 "--joints-only", "DIP5", "--out", str(out)]) == 2


def test_cli_quantify_leaves_out_a_detected_joint_at_the_edge_and_measures_the_rest(case, tmp_path, capsys):
    from jsnreg.images import write_dicom

    # Both visits cut 150 rows below the top: the middle fingertip's DIP3 is still found, 24 px from the
    # edge, where a third of its 22 mm ROI would lie beyond the film (a thumb at a film's edge does this).
    cut = {}
    for key in ("baseline", "followup"):
        image = read_radiograph(case[key])
        cut[key] = str(tmp_path / f"{key}.dcm")
        write_dicom(cut[key], image.pixels[150:], image.spacing_mm)
    out = tmp_path / "out"
    assert main(["quantify", cut["baseline"], cut["followup"], "--out", str(out), "--report"]) == 0
    err = capsys.readouterr().err
    assert "DIP3 left out: joint DIP3 (baseline)" in err and "too close to the image edge" in err
    data = json.loads((out / "results.json").read_text())
    assert [j["name"] for j in data["joints"]] == [n for n in STANDARD_JOINTS if n != "DIP3"]
    assert [item["joint"] for item in data["left_out"]] == ["DIP3"]
    assert all(np.isfinite(j["jsn_mm"]) for j in data["joints"])
    assert "DIP3" not in {j["name"] for j in json.loads((out / "session.json").read_text())["joints"]}
    # a joint given by hand at the same place is refused with the reason, nothing written
    dip3 = {j.name: j for j in detect_joints(read_radiograph(cut["baseline"]).pixels, 0.2)}["DIP3"]
    assert main(["quantify", cut["baseline"], cut["followup"], "--joint", f"DIP3={dip3.x},{dip3.y}",
                 "--out", str(tmp_path / "given")]) == 2
    assert "too close to the image edge" in capsys.readouterr().err and not (tmp_path / "given").exists()


def test_quantify_with_nothing_left_to_measure_is_an_input_error(case):
    from jsnreg.joints import JointSpec
    from jsnreg.quantify import quantify

    base, follow = read_radiograph(case["baseline"]), read_radiograph(case["followup"])
    left_out = []
    with pytest.raises(InputError, match="too close to the image edge"):
        quantify(base, follow, [JointSpec("DIP3", 5.0, 5.0, source="detected")], left_out=left_out)
    assert left_out == []


def test_cli_quantify_without_joints_on_a_non_hand(tmp_path, capsys):
    noise = tmp_path / "noise.png"
    write_png(noise, np.random.default_rng(1).random((600, 500)))
    assert main(["quantify", str(noise), str(noise), "--spacing-mm", "0.2", "--out", str(tmp_path / "o")]) == 2
    assert "no hand found" in capsys.readouterr().err


# --- sessions -------------------------------------------------------------------------------

def test_session_keeps_source_and_moved_and_old_files_load(case, tmp_path):
    from jsnreg.joints import JointSpec
    from jsnreg.quantify import Settings, quantify
    from jsnreg.session import Session, load_session, save_session

    base, follow = read_radiograph(case["baseline"]), read_radiograph(case["followup"])
    j = load_joints_json(case["joints"])[2]
    specs = [JointSpec(j.name, j.x + 1, j.y, source="detected", moved=True)]
    results = quantify(base, follow, specs)
    path = tmp_path / "s.json"
    save_session(Session.from_run(case["baseline"], case["followup"], base, follow, specs, Settings(), results), path)
    again = load_session(path)
    assert (again.joints[0].source, again.joints[0].moved) == ("detected", True)
    assert again.joints[0].spec().placed() == "detected, moved"
    data = json.loads(path.read_text())
    for entry in data["joints"]:
        del entry["source"], entry["moved"]
    for r in data["results"]:
        del r["position"]["source"], r["position"]["moved"]
    path.write_text(json.dumps(data))
    old = load_session(path)
    assert (old.joints[0].source, old.joints[0].moved) == ("manual", False)


def test_a_doubtful_detection_flags_its_measurement_until_moved(case, tmp_path):
    from jsnreg.joints import DOUBTFUL_DETECTION, JointSpec
    from jsnreg.quantify import quantify
    from jsnreg.session import Session, load_session, save_session

    base, follow = read_radiograph(case["baseline"]), read_radiograph(case["followup"])
    given = {j.name: j for j in load_joints_json(case["joints"])}
    low = DOUBTFUL_DETECTION - 0.1
    specs = [JointSpec("MCP2", given["MCP2"].x, given["MCP2"].y, source="detected", detect_confidence=low),
             JointSpec("MCP3", given["MCP3"].x, given["MCP3"].y, source="detected", moved=True,
                       detect_confidence=low),
             JointSpec("PIP2", given["PIP2"].x, given["PIP2"].y, source="detected", detect_confidence=0.9),
             JointSpec("PIP3", given["PIP3"].x, given["PIP3"].y)]
    results = {r.name: r for r in quantify(base, follow, specs)}
    doubtful = results.pop("MCP2")
    assert doubtful.flagged and f"detected with confidence {low:.2f}" in doubtful.flag_reason
    assert doubtful.position["detect_confidence"] == low
    # moved by the user, confident, or placed by hand: no doubt about the place
    assert not any("placement" in r.flag_reason for r in results.values())
    assert "detect_confidence" not in results["PIP3"].position
    path = tmp_path / "s.json"
    save_session(Session.from_run(case["baseline"], case["followup"], base, follow, specs, None,
                                  [doubtful, *results.values()]), path)
    again = [j.spec() for j in load_session(path).joints]
    assert [s.detect_confidence for s in again] == [low, low, 0.9, None]
    assert [bool(s.placement_doubt()) for s in again] == [True, False, False, False]
    assert [s.placed() for s in again] == [f"detected {low:.2f}", "detected, moved", "detected 0.90", "manual"]
    assert doubtful.table_row()["placed"] == f"detected {low:.2f}" and results["PIP3"].placed() == "manual"


def test_joints_file_reads_a_detection_confidence(tmp_path):
    from jsnreg.joints import joints_from_entries, joints_to_json

    specs = joints_from_entries([{"name": "MCP2", "x": 1, "y": 2, "source": "detected", "detect_confidence": 0.4},
                                 {"name": "PIP2", "x": 3, "y": 4}])
    assert [s.detect_confidence for s in specs] == [0.4, None]
    assert [s.detect_confidence for s in joints_from_entries(joints_to_json(specs)["joints"])] == [0.4, None]
    with pytest.raises(InputError, match="detect_confidence"):
        joints_from_entries([{"name": "MCP2", "x": 1, "y": 2, "detect_confidence": 1.5}])


def test_bench_scoring_counts_each_outcome():
    from jsnreg.detect import DetectedJoint
    from jsnreg.detect_bench import score

    truth = {"MCP2": np.array([100.0, 100.0]), "PIP2": np.array([100.0, 300.0]), "MCP3": np.array([200.0, 100.0])}
    detected = [DetectedJoint("MCP2", 105, 100, 1), DetectedJoint("PIP2", 100, 200, 1),
                DetectedJoint("MCP4", 200, 102, 1), DetectedJoint("DIP5", 500, 500, 1)]
    outcomes = dict(score(detected, truth, {"DIP5"}, tol_px=20))
    assert outcomes == {"MCP2": "found", "PIP2": "misplaced", "MCP3": "misnamed", "DIP5": "invented"}
    assert ("PIP3", "missed") in score([], {"PIP3": np.zeros(2)}, set(), 20)


def test_package_does_not_ship_images():
    package = Path(__file__).resolve().parents[1] / "JSNRegistration" / "jsnreg"
    assert not [p for p in package.rglob("*") if p.suffix.lower() in (".png", ".bmp", ".dcm", ".tif")]
