"""quantify's second pass: the hand's magnification, from its joints, held along each joint's ROI."""

import numpy as np
import pytest

from jsnreg import quantify as q
from jsnreg.images import Radiograph
from jsnreg.joints import JointSpec
from jsnreg.synthetic import make_hand_pair


@pytest.fixture(scope="module")
def hand():
    h = make_hand_pair(seed=3)
    return h, Radiograph(h.baseline, h.spacing_mm, {}), Radiograph(h.followup, h.spacing_mm, {})


def test_a_hand_is_measured_again_with_its_magnification_held(hand, engine):
    h, base, follow = hand
    joints = [JointSpec(n, *xy) for n, xy in h.joints.items()]
    results = q.quantify(base, follow, joints, engine=engine)
    held = {r.details.get("along_scale") for r in results}
    assert len(held) == 1 and None not in held  # one magnification for the hand, in every result
    assert held.pop() == pytest.approx(h.meta_followup["magnification"], abs=0.002)
    errors = np.array([r.jsn_mm - h.truth_jsn_mm[r.name] for r in results])
    assert np.abs(errors).max() < 0.03  # mm, as the joints measured alone


def test_too_few_joints_for_a_hand_magnification_are_measured_once(hand, engine):
    h, base, follow = hand
    names = list(h.joints)[:q.HAND_MAGNIFICATION_MIN_JOINTS - 1]
    results = q.quantify(base, follow, [JointSpec(n, *h.joints[n]) for n in names], engine=engine)
    assert q.hand_magnification(results) is None
    assert all("along_scale" not in r.details for r in results)
    alone = q.quantify(base, follow, [JointSpec(names[0], *h.joints[names[0]])], engine=engine)
    assert alone[0].jsn_mm == results[0].jsn_mm  # the same joint, measured with others or alone


def test_the_hand_magnification_is_the_median_of_the_unflagged_joints(hand, engine):
    h, base, follow = hand
    few = q.quantify(base, follow, [JointSpec(n, *h.joints[n]) for n in list(h.joints)[:3]], engine=engine)
    six = few * 2
    assert q.hand_magnification(six) == pytest.approx(np.median([r.upper.scale for r in six]))
    few[0].flagged = True  # now four unflagged of six: too few
    assert q.hand_magnification(six) is None


@pytest.mark.parametrize("settings", [q.Settings(refine=False), q.Settings(hand_magnification=False)])
def test_without_refinement_or_when_switched_off_nothing_is_held(hand, engine, settings):
    h, base, follow = hand
    joints = [JointSpec(n, *xy) for n, xy in h.joints.items()]
    results = q.quantify(base, follow, joints, engine=engine, settings=settings)
    assert all("along_scale" not in r.details for r in results)


def test_the_command_line_switches_the_second_pass(tmp_path):
    import json

    from jsnreg.cli import main
    from jsnreg.synthetic import write_demo_case

    case = write_demo_case(tmp_path / "case")
    held = {}
    for label, extra in (("on", []), ("off", ["--no-hand-magnification"])):
        out = tmp_path / label
        assert main(["quantify", str(case["baseline"]), str(case["followup"]), "--joints", str(case["joints"]),
                     "--out", str(out), *extra]) == 0
        rows = json.loads((out / "results.json").read_text())["joints"]
        held[label] = {r["details"].get("along_scale") for r in rows}
    assert None not in held["on"] and len(held["on"]) == 1
    assert held["off"] == {None}


def test_a_cancel_in_the_second_pass_says_so_and_returns_nothing(hand, engine):
    h, base, follow = hand
    joints = [JointSpec(n, *xy) for n, xy in h.joints.items()]
    done = []
    with pytest.raises(q.Cancelled, match="again with the hand's magnification"):
        q.quantify(base, follow, joints, engine=engine, on_progress=lambda *e: done.append(e),
                   should_cancel=lambda: len(done) == len(joints))
    assert len(done) == len(joints)  # the first pass had reported every joint


def _same(a, b) -> bool:
    """Two results' numbers and details identical (NaN equal to NaN)."""
    import json

    as_text = lambda r: json.dumps(r.to_dict(), sort_keys=True, default=float)  # noqa: E731
    return as_text(a) == as_text(b)


@pytest.mark.parametrize("size_px, factor", [(128, 1), (256, 2)])
def test_the_second_pass_from_the_first_is_what_measuring_again_gives(engine, size_px, factor):
    from jsnreg import resolution
    from jsnreg.synthetic import make_joint_pair

    rng = np.random.default_rng([5, size_px])
    for _ in range(3):
        p = make_joint_pair(rng, size_px=size_px, varied=True)
        first = resolution.register_roi(engine, p.fixed, p.moving, p.spacing_mm, factor)
        assert first.first_pass is not None and first.first_pass.kept is not None
        scale = first.upper.scale * 1.004  # a hand's magnification, a little off this joint's own
        again = resolution.register_roi(engine, p.fixed, p.moving, p.spacing_mm, factor, along_scale=scale)
        reused = resolution.register_roi(engine, p.fixed, p.moving, p.spacing_mm, factor, along_scale=scale,
                                         first_pass=first.first_pass)
        assert reused.details["along_scale"] == scale
        assert _same(reused, again)
        assert "first_pass" not in reused.to_dict()  # in memory only


def test_quantify_measures_each_joint_again_as_from_scratch(hand, engine):
    from jsnreg import resolution

    h, base, follow = hand
    joints = [JointSpec(n, *xy) for n, xy in h.joints.items()]
    results = q.quantify(base, follow, joints, engine=engine)
    scale = results[0].details["along_scale"]
    placements = q.place_joints(base, follow, joints, q.Settings())
    for joint, place, result in zip(joints, placements, results):
        fixed, moving = q.cut_pair(base, follow, place)
        scratch = resolution.register_roi(engine, fixed, moving, base.spacing_mm, place.work_factor,
                                          name=joint.name, along_scale=scale)
        assert (scratch.upper, scratch.lower, scratch.confidence, scratch.flag_reason) == \
            (result.upper, result.lower, result.confidence, result.flag_reason)


def test_a_first_pass_is_taken_only_to_measure_the_same_joint_again(engine):
    from dataclasses import replace

    from jsnreg.synthetic import make_joint_pair

    p = make_joint_pair(np.random.default_rng(9))
    first = engine.register_roi(p.fixed, p.moving, p.spacing_mm)
    with pytest.raises(ValueError, match="along_scale"):
        engine.register_roi(p.fixed, p.moving, p.spacing_mm, first_pass=first.first_pass)
    marked = replace(first.first_pass, start_info={**first.first_pass.start_info, "kept_start": "given"})
    reused = engine.register_roi(p.fixed, p.moving, p.spacing_mm, along_scale=1.0, first_pass=marked)
    assert reused.details["start_search"]["kept_start"] == "given"  # taken, not redone
    other = make_joint_pair(np.random.default_rng(9), size_px=160)
    with pytest.raises(ValueError, match="grid"):
        engine.register_roi(other.fixed, other.moving, other.spacing_mm, along_scale=1.0, first_pass=first.first_pass)
