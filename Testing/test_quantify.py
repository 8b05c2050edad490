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
