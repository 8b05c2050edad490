"""A generated cohort with known per-joint progression, written as DICOM files and a manifest.

Each patient is one generated hand (its own texture and carpus, jsnreg.synthetic's bone model);
each visit renders that hand with the joints narrowed by rate x years so far, its own positioning
(shift, rotation, magnification), blur, processing curve and noise. One patient's second visit
has its index and middle fingers spread at the MCP (a visit positioned unlike the others), the
case the transitivity check is for; a few visits have a same-day repeat (for the smallest
detectable change); and the manifest carries one of each bad input the run must survive.
"""

from __future__ import annotations

import csv
import datetime
import json
from pathlib import Path

import numpy as np

# The hand model's internals are reused as they are: the cohort needs N visits of one hand,
# where make_hand_pair renders two.
from .. import synthetic as syn

DEMO_JOINTS = ("MCP2", "MCP3", "PIP3", "DIP3")
SITES = ("S1", "S2")  # patients in twos from each site in turn; the bad inputs come from the last
MANIFEST_COLUMNS = ("patient", "date", "image", "spacing_mm", "joints", "repeat", "site")
SPREAD_DEG = 9.0  # finger spread of the inconsistent visit (index finger out, middle finger in)


def render_visit(patient_seed: int, narrowing_mm: dict, visit_seed: int, spacing_mm: float = 0.2,
                 spread_deg: float = 0.0) -> tuple[np.ndarray, dict]:
    """One visit of a generated hand: (pixels float32 in [0, 1], joint centres {name: (x, y)} px).

    narrowing_mm: each joint's narrowing since the hand's reference state (mm along its finger
    axis); spread_deg: digits 2 and 3 turned apart at their MCPs by this angle.
    """
    rng = np.random.default_rng(patient_seed)  # the patient: texture and carpus
    pose = np.random.default_rng([patient_seed, visit_seed])  # the visit: positioning, noise
    truth = dict.fromkeys(syn.DEFAULT_NARROWING_MM, 0.0)
    truth.update(narrowing_mm)
    shape = syn.HAND_SHAPE_PX
    scale = 0.2 / spacing_mm
    origin = np.array([0.5 * shape[1] + 10 * scale, shape[0] - 110 * scale])
    bones, joints = syn._hand_bones(spacing_mm, origin)
    shifts = [np.eye(3) for _ in bones]
    for name, (centre, axis, digit, first) in joints.items():
        for i, (_, _, d, k) in enumerate(bones):
            if d == digit and k >= first:
                shifts[i] = syn._translation(-axis * truth[name] / spacing_mm) @ shifts[i]
    if spread_deg:
        for digit, sign in ((1, -1.0), (2, 1.0)):
            centre = next(c for c, _, d, first in joints.values() if d == digit and first == 1)
            turn = syn._rotation_about(np.radians(sign * spread_deg), centre)
            for i, (_, _, d, k) in enumerate(bones):
                if d == digit and k >= 1:
                    shifts[i] = turn @ shifts[i]
    centre_px = np.array([(shape[1] - 1) / 2, (shape[0] - 1) / 2])
    glob = (syn._translation(pose.normal(0, 7, 2) * scale)
            @ syn._rotation_about(np.radians(pose.uniform(-2.5, 2.5)), centre_px, pose.uniform(0.99, 1.01)))
    texture = syn.Texture.random(rng, shape, 16, spacing_mm)
    look = syn.Look(0.022, 0.3, 0.045, 0.5, 0.06)
    carpals = syn._carpals(rng, spacing_mm, origin)
    image = syn._render_hand(bones, [glob @ s for s in shifts], carpals, glob, origin, spacing_mm, texture, look)
    image = syn._detector(pose, image, pose.uniform(0.7, 0.9), 0.01, reprocess=True)

    def where(name):
        centre, _, digit, first = joints[name]
        prox = next(i for i, (_, _, d, k) in enumerate(bones) if d == digit and k == first - 1)
        p = shifts[prox] @ np.array([*centre, 1.0])
        q = glob @ p
        return float(q[0]), float(q[1])

    return np.clip(image, 0, 1).astype(np.float32), {n: where(n) for n in joints}


def _patients(n_patients: int, seed: int) -> list[dict]:
    """Per patient: rates (mm/year) per joint, visit days since baseline, repeat visit indices."""
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n_patients):
        n_visits = 3 + p % 2
        days = [0]
        for _ in range(n_visits - 1):
            days.append(days[-1] + int(rng.integers(300, 420)))
        years = days[-1] / 365.25
        gaps = {n: g for d in syn.DIGITS for n, g in zip(d["joints"], d["gaps"])}
        # Rates up to what the joint space allows by the last visit (0.3 mm left, as synthetic's rule).
        rates = {j: round(float(rng.uniform(0.0, min(0.25, (gaps[j] - syn.MIN_GAP_LEFT_MM - 0.05) / years))), 3)
                 for j in DEMO_JOINTS}
        # The hand and its visits' positioning and noise come from the cohort seed too, so two
        # seeds are two independent cohorts.
        out.append(dict(patient=f"P{p + 1:02d}", seed=1000 * seed + p, days=days, rates=rates, site=SITES[p // 2 % 2],
                        repeat=[1] if p % 3 == 0 else [], spread=[1] if p == 4 else []))
    return out


def _write_visit(path: Path, args) -> dict:
    from ..images import write_dicom

    seed, narrowing, visit_seed, spread, date, patient = args
    pixels, joints = render_visit(seed, narrowing, visit_seed, spread_deg=spread)
    write_dicom(path, pixels, 0.2, meta=dict(patient_id=patient, patient_name=f"Demo^{patient}",
                                             study_date=date.replace("-", ""), laterality="R"))
    return joints


def _render_job(job):
    path, args = job
    return str(path), _write_visit(Path(path), args)


def write_demo_cohort(out_dir, n_patients: int = 12, seed: int = 12, client=None) -> dict:
    """Images, joints files, manifest.csv and truth.json of the demo cohort; returns their paths.
    The images are rendered on the Dask client's workers when one is given."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    start = datetime.date(2021, 3, 1)
    rows, jobs, truth = [], [], {}
    for p in _patients(n_patients, seed):
        truth[p["patient"]] = {"rates_mm_per_year": p["rates"], "spread_visits": p["spread"]}
        for k, day in enumerate(p["days"]):
            date = (start + datetime.timedelta(days=day)).isoformat()
            narrowing = {j: r * day / 365.25 for j, r in p["rates"].items()}
            spread = SPREAD_DEG if k in p["spread"] else 0.0
            name = f"images/{p['patient']}_v{k + 1}.dcm"
            jobs.append((out / name, (p["seed"], narrowing, k, spread, date, p["patient"])))
            rows.append(dict(patient=p["patient"], date=date, image=name, joints="", repeat="", site=p["site"]))
            if k in p["repeat"]:
                rep = f"images/{p['patient']}_v{k + 1}_repeat.dcm"
                jobs.append((out / rep, (p["seed"], narrowing, 100 + k, 0.0, date, p["patient"])))
                rows.append(dict(patient=p["patient"], date=date, image=rep, joints="", repeat="1", site=p["site"]))
    if client is not None:
        located = dict(client.gather(client.map(_render_job, [(str(p), a) for p, a in jobs], pure=False)))
    else:
        located = dict(map(_render_job, jobs))
    for row in rows:
        if row["image"].endswith("_v1.dcm"):
            xy = located[str(out / row["image"])]
            joints_file = row["image"].replace("images/", "joints/").replace(".dcm", ".json")
            (out / "joints").mkdir(exist_ok=True)
            (out / joints_file).write_text(json.dumps(
                {"joints": [{"name": j, "x": xy[j][0], "y": xy[j][1]} for j in DEMO_JOINTS]}, indent=1))
            row["joints"] = joints_file
    rows += _bad_rows(out, rows)
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(MANIFEST_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return {"manifest": str(manifest), "truth": str(out / "truth.json")}


def _bad_rows(out: Path, rows: list[dict]) -> list[dict]:
    """One of each bad input: missing image, unreadable image, no spacing, one-visit patient,
    duplicate row, and a visit listed out of date order (P01's rows are moved below)."""
    from ..images import write_png

    (out / "images" / "broken.dcm").write_bytes(b"DICM this is not a radiograph")
    pixels, _ = render_visit(1000, {}, 7)
    write_png(out / "images" / "P90_v2_nospacing.png", pixels[::2, ::2])
    first = rows[0]
    bad = [
        dict(patient="P90", date="2021-03-01", image=first["image"], joints=first["joints"]),
        dict(patient="P90", date="2022-03-01", image="images/P90_v2_nospacing.png"),
        dict(patient="P91", date="2021-05-01", image="images/P91_v1_missing.dcm"),
        dict(patient="P91", date="2022-05-01", image="images/broken.dcm"),
        dict(patient="P92", date="2021-06-01", image=rows[0]["image"], joints=first["joints"]),
        dict(first),  # a duplicate of P01's baseline row
    ]
    # Out of order: P02's baseline row goes last.
    p02 = next(r for r in rows if r["patient"] == "P02")
    rows.remove(p02)
    return [{k: r.get(k, SITES[-1] if k == "site" else "") for k in MANIFEST_COLUMNS} for r in bad] + [p02]


def compare(truth: dict, trajs: list[dict], checks: list[dict]) -> dict:
    """Measured rates against the known ones, and where the transitivity check fired."""
    errors, z = [], []
    for t in trajs:
        known = truth.get(t["patient"], {}).get("rates_mm_per_year", {}).get(t["joint"])
        if known is None or t["rate_mm_per_year"] is None or truth[t["patient"]]["spread_visits"]:
            continue
        errors.append(t["rate_mm_per_year"] - known)
        z.append(errors[-1] / t["rate_se_mm_per_year"])
    spread = {p for p, v in truth.items() if v["spread_visits"]}
    unchecked = sum(c["status"] == "unchecked" for c in checks)
    checks = [c for c in checks if c["status"] != "unchecked"]
    errors, z = np.array(errors), np.array(z)
    return {"n_rates": len(errors), "unchecked_triples": unchecked, "rate_error_mean": float(errors.mean()), "rate_error_sd": float(errors.std(ddof=1)),
            "rate_error_max_abs": float(np.abs(errors).max()), "coverage_95": float(np.mean(np.abs(z) <= 1.96)),
            "checks_spread_patient": sum(c["patient"] in spread for c in checks),
            "flagged_spread_patient": sum(c["flagged"] and c["patient"] in spread for c in checks),
            "checks_others": sum(c["patient"] not in spread for c in checks),
            "flagged_others": sum(c["flagged"] and c["patient"] not in spread for c in checks),
            "max_abs_z_others": max((abs(c["z"]) for c in checks if c["patient"] not in spread and c["z"] is not None),
                                    default=float("nan"))}


def run_demo(out: Path, workers: int = 2, n_patients: int = 12, seed: int = 12) -> dict:
    """Generate, run (twice: the second run finds nothing to do), report, and compare with the truth."""
    import time

    from .report import load, write_report
    from .run import dask_client, run_cohort
    from .status import print_status
    from .store import Store
    from .trajectories import trajectories

    out = Path(out)
    store = out / "cohort.sqlite"
    with dask_client(workers) as client:
        t0 = time.perf_counter()
        print(f"Generating {n_patients} patients (3-4 visits, known rates) in {out} ...")
        paths = write_demo_cohort(out, n_patients, seed, client=client)
        t1 = time.perf_counter()
        counts = run_cohort(paths["manifest"], store, client=client)
        t2 = time.perf_counter()
        again = run_cohort(paths["manifest"], store, client=client, progress=False)
    print(f"generated in {t1 - t0:.0f} s; measured {counts['measured']} joints ({counts['failed']} failed) in "
          f"{t2 - t1:.0f} s on {workers} workers; a second run measured {again['measured']} "
          f"({again['already']} already stored)")
    print_status(store)
    files = write_report(store, out / "report")
    s = Store(store, must_exist=True)
    data = load(s)
    s.close()
    _, trajs, checks = trajectories(data["measurements"], data["visits"])
    result = compare(json.loads(Path(paths["truth"]).read_text()), trajs, checks)
    print(f"rates vs truth (generated data, {result['n_rates']} trajectories of consistent patients): error mean "
          f"{result['rate_error_mean']:+.4f}, SD {result['rate_error_sd']:.4f}, max |error| "
          f"{result['rate_error_max_abs']:.4f} mm/year; the true rate within 1.96 SE for {result['coverage_95']:.0%}")
    print(f"transitivity: {result['flagged_spread_patient']} of {result['checks_spread_patient']} checks flagged for "
          f"the patient with the spread-finger visit, {result['flagged_others']} of {result['checks_others']} for the "
          f"others (max |z| {result['max_abs_z_others']:.1f}); {result['unchecked_triples']} triples unchecked (a leg failed, "
          "flagged or not measured)")
    print(f"report: {out / 'report' / 'summary.html'} (and {len(files) - 2} tables)")
    (out / "demo_result.json").write_text(json.dumps(dict(result, first_run=counts, second_run=again,
                                                          seconds_generate=t1 - t0, seconds_measure=t2 - t1), indent=1))
    return result
