"""Joints measured in forked worker processes: the same results as in one process, errors and
cancels carried back to the caller."""

import multiprocessing
import os

import numpy as np
import pytest

from jsnreg import quantify as q
from jsnreg.errors import InputError
from jsnreg.forked import worker_map
from jsnreg.images import Radiograph
from jsnreg.joints import JointSpec
from jsnreg.synthetic import make_hand_pair

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                                reason="this platform cannot fork")

NAMES = ("MCP2", "PIP3", "DIP4", "IP1")


@pytest.fixture(scope="module")
def hand():
    h = make_hand_pair(seed=3)
    return h, Radiograph(h.baseline, 0.2, {}), Radiograph(h.followup, 0.2, {})


def _pid_and(offset, _b, _c, _d, task):
    return os.getpid(), offset + task


def test_the_map_keeps_task_order_and_runs_in_other_processes():
    with worker_map((10, None, None, None), 2) as map_:
        out = list(map_(_pid_and, range(8)))
    assert [v for _, v in out] == list(range(10, 18))
    assert os.getpid() not in {pid for pid, _ in out}
    with worker_map((10, None, None, None), 1) as map_:
        assert {pid for pid, _ in map_(_pid_and, range(3))} == {os.getpid()}


def test_two_workers_measure_what_one_does(hand, engine):
    h, base, follow = hand
    joints = [JointSpec(n, *h.joints[n]) for n in NAMES]
    one = q.quantify(base, follow, joints, engine=engine, workers=1)
    progress = []
    two = q.quantify(base, follow, joints, engine=engine, workers=2,
                     on_progress=lambda k, n, name: progress.append((k, name)))
    assert [r.name for r in two] == list(NAMES)
    assert progress == [(k + 1, n) for k, n in enumerate(NAMES)]
    for a, b in zip(one, two):
        assert b.jsn_mm == a.jsn_mm and b.confidence == a.confidence and b.position == a.position
        np.testing.assert_array_equal(b.images.warped(), a.images.warped())


def test_a_bad_joint_fails_in_the_caller_before_any_registration(hand, engine):
    h, base, follow = hand
    rows, cols = h.baseline.shape
    joints = [JointSpec("MCP2", *h.joints["MCP2"]), JointSpec("EDGE", 1.0, rows / 2)]
    with pytest.raises(InputError, match="EDGE .*too close to the image edge"):
        q.quantify(base, follow, joints, engine=engine, workers=2)


def test_a_cancel_stops_the_workers(hand, engine):
    h, base, follow = hand
    joints = [JointSpec(n, *h.joints[n]) for n in NAMES]
    done = []
    with pytest.raises(q.Cancelled, match="after 1 of 4"):
        q.quantify(base, follow, joints, engine=engine, workers=2,
                   on_progress=lambda *e: done.append(e), should_cancel=lambda: len(done) >= 1)
    assert multiprocessing.active_children() == []


def test_a_cancel_after_the_last_joint_still_wins(hand, engine):
    """The workers measure ahead: a cancel that arrives as the last joint is reported returns nothing."""
    h, base, follow = hand
    joints = [JointSpec(n, *h.joints[n]) for n in NAMES[:2]]
    done = []
    with pytest.raises(q.Cancelled, match="after 2 of 2"):
        q.quantify(base, follow, joints, engine=engine, workers=2,
                   on_progress=lambda *e: done.append(e), should_cancel=lambda: len(done) >= 2)
    assert len(done) == 2 and multiprocessing.active_children() == []


def test_a_worker_that_dies_is_an_error_not_a_hang(hand, engine):
    import signal

    from jsnreg.forked import WorkerDied

    h, base, follow = hand
    joints = [JointSpec(n, *h.joints[n]) for n in h.joints]

    def kill_one(k, n, name):
        if k == 1:
            os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)

    def hung(signum, frame):
        raise TimeoutError("quantify hung after its worker died")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        with pytest.raises(WorkerDied, match="--workers 1"):
            q.quantify(base, follow, joints, engine=engine, workers=2, on_progress=kill_one)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert multiprocessing.active_children() == []
