"""Cohort manifest statuses, the plan of pairs, the store's keys, and the trajectory maths (no Dask)."""

import numpy as np
import pytest

from jsnreg.cohort.manifest import read_manifest
from jsnreg.cohort.plan import build_plan, plan_rows
from jsnreg.cohort.store import Store
from jsnreg.cohort.trajectories import (TRANSITIVITY_Z, fit_rate, joint_type, pair_covariance,
                                        smallest_detectable_change, trajectories, transitivity)
from jsnreg.errors import InputError


def _manifest(tmp_path, text):
    p = tmp_path / "m.csv"
    p.write_text(text)
    return p


def test_manifest_statuses(tmp_path):
    visits = read_manifest(_manifest(tmp_path, """patient,date,image,spacing_mm,joints,repeat
A,2020-01-01,a1.dcm,,a.json,
A,2021-01-01,a2.dcm,0.2,,
A,2020-01-01,a1.dcm,,a.json,
A,2021-01-01,a2r.dcm,,,1
B,2020-13-01,b1.dcm,,,
B,2021-01-01,b2.dcm,-1,,
C,2021-01-01,c2.dcm,,,
C,2020-01-01,c1.dcm,,c.json,
D,2020-01-01,d1.dcm,,,
D,2020-01-01,d1other.dcm,,,
"""))
    by_line = {v.line: v for v in visits}
    assert by_line[2].ok and by_line[2].joints.endswith("a.json") and by_line[3].spacing_mm == 0.2
    assert by_line[4].status.startswith("duplicate row") and "line 2" in by_line[4].status
    assert by_line[5].ok and by_line[5].repeat and by_line[5].key == "2021-01-01+repeat"
    assert "not YYYY-MM-DD" in by_line[6].status
    assert "positive number" in by_line[7].status
    assert by_line[9].ok and "out of order" in by_line[9].note
    assert "without a repeat mark" in by_line[10].status and "without a repeat mark" in by_line[11].status


def test_manifest_unusable_file(tmp_path):
    with pytest.raises(InputError, match="lacks the column"):
        read_manifest(_manifest(tmp_path, "patient,image\nA,a.dcm\n"))
    with pytest.raises(InputError, match="cannot read"):
        read_manifest(tmp_path / "absent.csv")


def _scans(visits, bad=()):
    return {v.line: {"status": "ok" if v.line not in bad else "missing image: no such file",
                     "sha256": f"sha{v.line}", "spacing_mm": 0.2} for v in visits if v.ok}


JOINTS = {"joints": [{"name": "MCP2", "x": 10.0, "y": 20.0}, {"name": "PIP3", "x": 30.0, "y": 40.0}]}


def test_plan_pairs(tmp_path):
    visits = read_manifest(_manifest(tmp_path, """patient,date,image,joints,repeat
A,2020-01-01,a1.dcm,a.json,
A,2021-01-01,a2.dcm,,
A,2022-01-01,a3.dcm,,
A,2023-01-01,a4.dcm,,
A,2021-01-01,a2r.dcm,,1
B,2020-01-01,b1.dcm,b.json,
C,2019-01-01,c0.dcm,,
C,2020-01-01,c1.dcm,c.json,
C,2021-01-01,c2.dcm,,
"""))
    scans = _scans(visits, bad={8})  # C's first visit is missing: its second one is the baseline
    visit_rows, patients, pairs = build_plan(visits, scans, {"A": JOINTS, "B": JOINTS, "C": {"error": "joints file: x"}})
    got = {(p.patient, p.from_visit.key, p.to_visit.key): (p.kind, p.parent) for p in pairs}
    a = ("2020-01-01", "2021-01-01", "2022-01-01", "2023-01-01")
    assert got == {
        ("A", a[0], a[1]): ("baseline+previous", None), ("A", a[0], a[2]): ("baseline", None),
        ("A", a[1], a[2]): ("previous", (a[0], a[1])), ("A", a[0], a[3]): ("baseline", None),
        ("A", a[2], a[3]): ("previous", (a[0], a[2])),
        ("A", a[1], a[1] + "+repeat"): ("repeat", (a[0], a[1])),
    }
    status = {p["patient"]: p["status"] for p in patients}
    assert status["B"] == "one visit only: nothing to register"
    assert status["C"] == "joints file: x"
    assert {p["patient"]: p["baseline"] for p in patients}["C"] == "2020-01-01"
    rows = plan_rows(pairs)
    assert len(rows) == 6 * 2 and len({(r["patient"], r["joint"], r["from_visit"], r["to_visit"]) for r in rows}) == 12
    # A changed image changes exactly the input hashes of the pairs that use it (and of the pairs placed from it).
    scans2 = dict(scans)
    scans2[3] = dict(scans[3], sha256="changed")
    _, _, pairs2 = build_plan(visits, scans2, {"A": JOINTS, "B": JOINTS})
    changed = {(p.from_visit.key, p.to_visit.key) for p, q in zip(pairs, pairs2) if p.input_hash != q.input_hash}
    assert changed == {(a[0], a[1]), (a[1], a[2]), (a[1], a[1] + "+repeat")}


def test_store_is_wal_and_keyed(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"
    run = store.begin_run("m.csv", {}, "s", "m", "local")
    row = dict.fromkeys(("jsn_mm", "sd_mm", "confidence", "flagged", "flag_reason", "to_x", "to_y", "seconds", "cpu_seconds",
                         "worker", "finished", "result"))
    row.update(patient="A", joint="MCP2", from_visit="v1", to_visit="v2", settings_hash="s", model_hash="m",
               input_hash="h1", from_sha256="", to_sha256="", kind="baseline", status="ok", run_id=run)
    store.save_measurements([row], run)
    store.save_measurements([dict(row, input_hash="h2", jsn_mm=0.1)], run)
    store.save_measurements([dict(row, settings_hash="other")], run)
    rows = store.query("SELECT settings_hash, input_hash, jsn_mm FROM measurements ORDER BY settings_hash")
    assert [tuple(r) for r in rows] == [("other", "h1", None), ("s", "h2", 0.1)]
    store.close()
    with pytest.raises(InputError, match="no such cohort store"):
        Store(tmp_path / "absent.sqlite", must_exist=True)


def test_pair_covariance_and_fit_rate():
    # Pairs v1->v2, v1->v3 (both carry the baseline image's error: +), v2->v3 (v2's error enters v1->v2 with +,
    # v2->v3 with -; v3's enters v1->v3 and v2->v3 with +).
    images = np.array([["v1", "v2"], ["v1", "v3"], ["v2", "v3"]])
    cov = pair_covariance(images, np.array([0.01, 0.02, 0.03]), 2.0, 0.1)
    assert cov == pytest.approx(np.diag([0.02, 0.04, 0.06]) ** 2 + 0.01 * np.array([[2, 1, -1], [1, 2, 1], [-1, 1, 2]]))
    years = np.array([1.0, 2.0, 1.0])
    rate, se, chi2 = fit_rate(images, years, 0.2 * years, np.full(3, 0.01))
    assert rate == pytest.approx(0.2) and se == pytest.approx(0.01 / np.sqrt(6)) and chi2 == pytest.approx(0)
    # A shared baseline error: the two baseline pairs tell less than two independent ones.
    _, se_shared, _ = fit_rate(images[:2], years[:2], 0.2 * years[:2], np.full(2, 0.01), 1.0, 0.01)
    assert se_shared == pytest.approx(np.sqrt(1 / (years[:2] @ np.linalg.inv(
        0.0001 * np.array([[3, 1], [1, 3]])) @ years[:2])))
    assert se_shared > 0.01 * np.sqrt(3) / np.sqrt(5)  # independent pairs of SD sqrt(0.01^2 + 2 x 0.01^2)
    assert [joint_type(n) for n in ("MCP2", "L-PIP3", "IP1", "R-DIP5")] == ["MCP", "PIP", "IP", "DIP"]


def _simulated_cohort(rng, n_patients, image_sd_mm, sd_scale):
    """Measurements as the model has them: each image an error of image_sd_mm shared by every pair it is in
    (the baseline's by all baseline pairs), each registration an error of sd_scale x its predicted SD;
    baseline and previous-visit pairs, a same-day repeat for every third patient."""
    ms, visits, truth = [], [], {}
    for p in range(n_patients):
        patient = f"P{p}"
        days = np.cumsum([0, *rng.integers(300, 420, 2 + p % 2)])
        dates = [str(np.datetime64("2020-01-01") + int(d)) for d in days]
        rate = rng.uniform(0, 0.25)
        truth[patient] = rate
        err = {d: rng.normal(0, image_sd_mm) for d in dates + [dates[1] + "+repeat"]}
        visits += [dict(patient=patient, visit=d, date=d, visit_index=k + 1) for k, d in enumerate(dates)]

        def pair(a, b, kind, change):
            sd = rng.uniform(0.003, 0.007)
            ms.append(_m(patient, "MCP2", a, b, kind, change + err[b] - err[a] + rng.normal(0, sd_scale * sd), sd=sd))

        for k in range(1, len(dates)):
            pair(dates[0], dates[k], "baseline+previous" if k == 1 else "baseline", rate * (days[k] - days[0]) / 365.25)
            if k >= 2:
                pair(dates[k - 1], dates[k], "previous", rate * (days[k] - days[k - 1]) / 365.25)
        if p % 3 == 0:
            pair(dates[1], dates[1] + "+repeat", "repeat", 0.0)
    return ms, visits, truth


@pytest.mark.parametrize("image_sd_mm, sd_scale", [(0.006, 1.0), (0.004, 2.0)])
def test_rate_se_covers_the_true_rate(image_sd_mm, sd_scale):
    """Simulated with a shared baseline error (and, second case, registrations twice as bad as
    predicted): the true rate lies within 1.96 SE in about 95 % of trajectories."""
    ms, visits, truth = _simulated_cohort(np.random.default_rng(7), 400, image_sd_mm, sd_scale)
    _, trajs, _ = trajectories(ms, visits)
    z = np.array([(t["rate_mm_per_year"] - truth[t["patient"]]) / t["rate_se_mm_per_year"] for t in trajs])
    assert len(z) == 400 and 0.92 <= np.mean(np.abs(z) <= 1.96) <= 0.98
    assert trajs[0]["image_sd_mm"] == pytest.approx(image_sd_mm, rel=0.25)
    assert trajs[0]["sd_scale"] == pytest.approx(sd_scale, rel=0.25)
    # The same pairs taken as independent, with the predicted SDs: far too sure.
    naive = []
    for t in trajs:
        pairs = [m for m in ms if m["patient"] == t["patient"] and m["kind"] != "repeat"]
        d = {v["visit"]: v["date"] for v in visits if v["patient"] == t["patient"]}
        rate, se, _ = fit_rate(np.array([[m["from_visit"], m["to_visit"]] for m in pairs]),
                               np.array([(np.datetime64(d[m["to_visit"]]) - np.datetime64(d[m["from_visit"]])).astype(int)
                                         / 365.25 for m in pairs]),
                               np.array([m["jsn_mm"] for m in pairs]), np.array([m["sd_mm"] for m in pairs]))
        naive.append(abs(rate - truth[t["patient"]]) <= 1.96 * se)
    assert np.mean(naive) < 0.8


def _m(patient, joint, a, b, kind, jsn, sd=0.01, status="ok", flagged=False):
    return dict(patient=patient, joint=joint, from_visit=a, to_visit=b, kind=kind, status=status, jsn_mm=jsn,
                sd_mm=sd, flagged=flagged, flag_reason="")


def test_transitivity_flags_only_the_inconsistent_triple():
    d = ("2020-01-01", "2021-01-01", "2022-01-01")
    ms = [_m("A", "MCP2", d[0], d[1], "baseline+previous", 0.10), _m("A", "MCP2", d[0], d[2], "baseline", 0.20),
          _m("A", "MCP2", d[1], d[2], "previous", 0.11),  # 0.21 vs 0.20: 0.6 combined SDs
          _m("B", "MCP2", d[0], d[1], "baseline+previous", 0.10), _m("B", "MCP2", d[0], d[2], "baseline", 0.20),
          _m("B", "MCP2", d[1], d[2], "previous", 0.20)]  # 0.30 vs 0.20: 5.8 combined SDs
    visits = [dict(patient=p, visit=v, date=v, visit_index=k + 1) for p in "AB" for k, v in enumerate(d)]
    checks = {c["patient"]: c for c in transitivity(ms, visits)}
    assert not checks["A"]["flagged"] and checks["A"]["z"] == pytest.approx(0.01 / (0.01 * np.sqrt(3)))
    assert checks["A"]["status"] == "consistent" and checks["B"]["status"] == "inconsistent"
    assert checks["B"]["flagged"] and abs(checks["B"]["z"]) > TRANSITIVITY_Z
    points, trajs, _ = trajectories(ms, visits)
    t = {x["patient"]: x for x in trajs}
    assert not t["A"]["flagged"] and t["B"]["flagged"] and t["B"]["inconsistent_visits"] == f"{d[1]};{d[2]}"
    assert t["A"]["rate_mm_per_year"] == pytest.approx(0.1, abs=0.002)
    assert len([p for p in points if p["patient"] == "A"]) == 3  # baseline (0) and two follow-ups


def test_flagged_and_failed_points_left_out_and_sdc():
    d = ("2020-01-01", "2021-01-01", "2022-01-01")
    ms = [_m("A", "PIP3", d[0], d[1], "baseline+previous", 0.5, flagged=True),
          _m("A", "PIP3", d[0], d[2], "baseline", 0.2), _m("A", "PIP3", d[1], d[2], "previous", None, status="failed: x"),
          *[_m(f"R{k}", "PIP2", d[0], d[0] + "+repeat", "repeat", v) for k, v in enumerate((0.01, -0.02, 0.02))]]
    (sdc,) = smallest_detectable_change(ms)
    assert sdc["joint_type"] == "PIP" and sdc["n_pairs"] == 3
    assert sdc["sdc95_mm"] == pytest.approx(1.96 * np.sqrt((0.01 ** 2 + 0.02 ** 2 + 0.02 ** 2) / 3))
    visits = [dict(patient="A", visit=v, date=v, visit_index=k + 1) for k, v in enumerate(d)]
    points, trajs, checks = trajectories(ms, visits)
    (t,) = [x for x in trajs if x["patient"] == "A"]
    assert t["n_used"] == 1 and t["rate_mm_per_year"] == pytest.approx(0.2 / (731 / 365.25))  # 2020 is a leap year
    why = {p["visit"]: p["why_not"] for p in points if p["patient"] == "A"}
    assert why[d[1]].startswith("flagged")
    # Without the repeats nothing tells the errors apart from one pair: the predicted SD alone, said so.
    (alone,) = [x for x in trajectories(ms[:3], visits)[1] if x["patient"] == "A"]
    assert alone["rate_se_mm_per_year"] == pytest.approx(0.01 / (731 / 365.25)) and "predicted SDs alone" in alone["note"]
    # A point's SD: its registration's (the predicted 0.01, scaled) and its two images' errors.
    assert [p["sd_mm"] for p in points if p["visit"] == d[2]][0] == pytest.approx(
        np.hypot(t["sd_scale"] * 0.01, np.sqrt(2) * t["image_sd_mm"]))


def test_transitivity_reports_unchecked_triples():
    """A triple with a failed, flagged or missing leg is listed as unchecked, saying which leg and why."""
    d = ("2020-01-01", "2021-01-01", "2022-01-01", "2023-01-01")
    ms = [_m("A", "PIP3", d[0], d[1], "baseline+previous", 0.5, flagged=True),
          _m("A", "PIP3", d[0], d[2], "baseline", 0.2), _m("A", "PIP3", d[1], d[2], "previous", None, status="failed: x"),
          _m("A", "PIP3", d[0], d[3], "baseline", 0.3)]  # d[2] -> d[3] never measured
    visits = [dict(patient="A", visit=v, date=v, visit_index=k + 1) for k, v in enumerate(d)]
    first, second = transitivity(ms, visits)
    assert (first["previous"], first["visit"], first["status"]) == (d[1], d[2], "unchecked")
    assert first["note"] == "baseline->previous flagged by the method (); previous->visit failed: x"
    assert (second["previous"], second["visit"], second["status"]) == (d[2], d[3], "unchecked")
    assert second["note"] == "previous->visit not measured" and not second["flagged"] and second["z"] is None
    from jsnreg.cohort.report import visit_flags

    (row,) = [r for r in visit_flags(ms, visits, [first, second]) if r["visit_index"] == 4]
    assert (row["unchecked"], row["inconsistent"], row["measured"]) == (1, 0, 1)


def test_previous_pair_placed_from_a_flagged_pair_is_left_out_of_the_rate():
    d = ("2020-01-01", "2021-01-01", "2022-01-01")
    visits = [dict(patient="A", visit=v, date=v, visit_index=k + 1) for k, v in enumerate(d)]
    for flagged, n_used in ((False, 3), (True, 1)):
        ms = [_m("A", "PIP3", d[0], d[1], "baseline+previous", 0.1, flagged=flagged),
              _m("A", "PIP3", d[0], d[2], "baseline", 0.2), _m("A", "PIP3", d[1], d[2], "previous", 0.1)]
        (t,) = trajectories(ms, visits)[1]
        assert t["n_used"] == n_used


def test_repeat_sd_floors_the_transitivity_sd():
    d = ("2020-01-01", "2021-01-01", "2022-01-01")
    triple = [_m("A", "MCP2", d[0], d[1], "baseline+previous", 0.10, sd=0.001),
              _m("A", "MCP2", d[0], d[2], "baseline", 0.20, sd=0.001),
              _m("A", "MCP2", d[1], d[2], "previous", 0.11, sd=0.001)]
    visits = [dict(patient="A", visit=v, date=v, visit_index=k + 1) for k, v in enumerate(d)]
    (alone,) = transitivity(triple, visits)
    assert alone["flagged"]  # 0.01 mm apart at 0.0017 combined
    repeats = [_m(f"R{k}", "MCP3", d[0], d[0] + "+repeat", "repeat", v) for k, v in enumerate((0.01, -0.01, 0.01))]
    (floored,) = transitivity(triple + repeats, visits)
    assert floored["combined_sd_mm"] == pytest.approx(0.01 * np.sqrt(3)) and not floored["flagged"]


def test_visit_flags_per_site_and_visit():
    from jsnreg.cohort.report import visit_flags

    d = ("2020-01-01", "2021-01-01", "2022-01-01")
    visits = [dict(patient=p, visit=v, date=v, visit_index=k + 1, site=site, status="ok")
              for p, site in (("A", "S1"), ("B", "S2"), ("C", "S2")) for k, v in enumerate(d)]
    visits.append(dict(patient="C", visit=d[1], date=d[1], visit_index=2, site="S9", status="duplicate row"))
    ms = [_m(p, "MCP2", d[0], v, "baseline", 0.1, flagged=(p == "B" and v == d[1])) for p in "ABC" for v in d[1:]]
    ms[-1] = _m("C", "MCP2", d[0], d[2], "baseline", None, status="failed: x")
    checks = [dict(patient="A", previous=d[1], visit=d[2], status="inconsistent"),
              dict(patient="C", previous=d[1], visit=d[2], status="unchecked")]
    rows = {(r["site"], r["visit_index"]): r for r in visit_flags(ms, visits, checks)}
    assert list(rows) == [("S1", 2), ("S1", 3), ("S2", 2), ("S2", 3)]  # the duplicate row's site is not a site
    assert [rows[("S1", 2)][k] for k in ("measured", "flagged", "failed", "inconsistent", "unchecked")] == [1, 0, 0, 1, 0]
    assert [rows[("S2", 2)][k] for k in ("measured", "flagged", "failed", "inconsistent", "unchecked")] == [2, 1, 0, 0, 0]
    assert [rows[("S2", 3)][k] for k in ("measured", "flagged", "failed", "inconsistent", "unchecked")] == [2, 0, 1, 0, 1]
