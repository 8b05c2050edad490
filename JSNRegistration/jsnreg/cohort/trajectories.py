"""Per patient and joint: JSN against time, its rate, and whether the visits agree with each other.

Inputs are the store's current measurements (dicts with patient, joint, from_visit, to_visit,
kind, status, jsn_mm, sd_mm, flagged) and visits (patient, visit, date, visit_index). Pure numpy.

- Trajectory: narrowing since the baseline at each visit (the baseline -> visit pairs; 0 at the
  baseline), rate in mm/year by least squares through the origin weighted by 1 / SD^2. A point's SD
  is its predicted SD, but never below the repeat-pair SD of its joint type when the cohort has
  repeats (the predicted SD leaves out errors that come with the image: positioning, processing);
  the rate's uncertainty is scaled up by the fit's own scatter when it exceeds those SDs.
- Transitivity: baseline -> previous + previous -> visit against baseline -> visit; the three
  SDs combined (sqrt of the sum of squares; each the predicted SD, floored by the repeat-pair SD
  of its joint type as above); beyond TRANSITIVITY_Z of them the joint's two later visits are
  flagged. Errors a visit's image carries alone cancel in this sum (they
  enter both sides), so it sees the errors of one registration, which its predicted SD describes.
- Smallest detectable change (95 %) per joint type from same-day repeat pairs (true change 0):
  1.96 x the RMS of their measured JSN.
"""

from __future__ import annotations

import datetime
import re

import numpy as np

TRANSITIVITY_Z = 3.0  # 0.3 % of consistent triples flagged if the predicted SDs hold
MIN_REPEATS = 3  # repeat pairs of a joint type needed before their SD is used
DAYS_PER_YEAR = 365.25


def joint_type(name: str) -> str:
    """'MCP2' -> 'MCP', 'L-PIP3' -> 'PIP', 'IP1' -> 'IP'."""
    m = re.match(r"(?:[LR]-)?([A-Za-z]+)", name)
    return m.group(1).upper() if m else name


def _years(a: str, b: str) -> float:
    return (datetime.date.fromisoformat(b[:10]) - datetime.date.fromisoformat(a[:10])).days / DAYS_PER_YEAR


def _usable(m: dict) -> bool:
    return m["status"] == "ok" and not m["flagged"] and m["jsn_mm"] is not None


def smallest_detectable_change(measurements: list[dict]) -> list[dict]:
    """[{joint_type, n_pairs, rms_mm, sdc95_mm}] from the usable repeat pairs."""
    by_type: dict[str, list[float]] = {}
    for m in measurements:
        if m["kind"] == "repeat" and _usable(m):
            by_type.setdefault(joint_type(m["joint"]), []).append(m["jsn_mm"])
    out = []
    for t, d in sorted(by_type.items()):
        rms = float(np.sqrt(np.mean(np.square(d))))
        out.append({"joint_type": t, "n_pairs": len(d), "rms_mm": rms, "sdc95_mm": 1.96 * rms})
    return out


def fit_rate(years: np.ndarray, jsn_mm: np.ndarray, sd_mm: np.ndarray) -> tuple[float, float, float]:
    """(rate mm/year, its SE, reduced chi^2) of jsn = rate * years, weights 1 / sd^2."""
    w = 1.0 / np.square(sd_mm)
    sxx = float(np.sum(w * years * years))
    rate = float(np.sum(w * years * jsn_mm) / sxx)
    se = float(np.sqrt(1.0 / sxx))
    dof = len(years) - 1
    chi2 = float(np.sum(w * (jsn_mm - rate * years) ** 2) / dof) if dof > 0 else float("nan")
    if dof > 0 and chi2 > 1.0:
        se *= np.sqrt(chi2)
    return rate, se, chi2


def sd_floors(measurements: list[dict]) -> dict[str, float]:
    """{joint type: repeat-pair RMS} where there are at least MIN_REPEATS repeat pairs: the
    scatter of one registration whose true change is 0, a floor for any pair's SD."""
    return {s["joint_type"]: s["rms_mm"] for s in smallest_detectable_change(measurements) if s["n_pairs"] >= MIN_REPEATS}


def transitivity(measurements: list[dict]) -> list[dict]:
    """Every (baseline, previous, visit) triple of a joint with all three pairs usable."""
    floor = sd_floors(measurements)
    pairs = {(m["patient"], m["joint"], m["from_visit"], m["to_visit"]): m for m in measurements if _usable(m)}
    out = []
    for (patient, joint, prev, visit), step in sorted(pairs.items()):
        if step["kind"] != "previous":
            continue
        base = next((m for (p, j, f, t), m in pairs.items() if p == patient and j == joint and t == prev
                     and m["kind"].startswith("baseline")), None)
        if base is None:
            continue
        direct = pairs.get((patient, joint, base["from_visit"], visit))
        if direct is None:
            continue
        row = {"patient": patient, "joint": joint, "baseline": base["from_visit"], "previous": prev, "visit": visit,
               "direct_mm": direct["jsn_mm"], "via_previous_mm": base["jsn_mm"] + step["jsn_mm"]}
        row["difference_mm"] = row["via_previous_mm"] - row["direct_mm"]
        sds = [m["sd_mm"] for m in (base, step, direct)]
        if any(s is None for s in sds):
            row.update(combined_sd_mm=None, z=None, flagged=False, note="not checked: a pair has no predicted SD")
        else:
            sd = float(np.sqrt(np.sum(np.square(np.maximum(sds, floor.get(joint_type(joint), 0.0))))))
            z = row["difference_mm"] / sd
            row.update(combined_sd_mm=sd, z=z, flagged=bool(abs(z) > TRANSITIVITY_Z),
                       note=f"inconsistent: {abs(z):.1f} combined SDs apart" if abs(z) > TRANSITIVITY_Z else "")
        out.append(row)
    return out


def trajectories(measurements: list[dict], visits: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(points, trajectories, transitivity rows)."""
    dates = {(v["patient"], v["visit"]): v["date"] for v in visits}
    index = {(v["patient"], v["visit"]): v["visit_index"] for v in visits}
    floor = sd_floors(measurements)
    checks = transitivity(measurements)
    inconsistent: dict[tuple, list[str]] = {}
    for c in checks:
        if c["flagged"]:
            for v in (c["previous"], c["visit"]):
                inconsistent.setdefault((c["patient"], c["joint"]), []).append(v)
    points, trajs = [], []
    groups: dict[tuple, list[dict]] = {}
    for m in measurements:
        if m["kind"].startswith("baseline"):
            groups.setdefault((m["patient"], m["joint"]), []).append(m)
    for (patient, joint), ms in sorted(groups.items()):
        base = ms[0]["from_visit"]
        bad = set(inconsistent.get((patient, joint), []))
        points.append({"patient": patient, "joint": joint, "visit": base, "visit_index": index.get((patient, base)),
                       "date": dates[(patient, base)], "years": 0.0, "jsn_change_mm": 0.0, "sd_mm": 0.0,
                       "used": True, "why_not": "", "inconsistent": False})
        used = []
        for m in sorted(ms, key=lambda m: m["to_visit"]):
            years = _years(dates[(patient, base)], dates[(patient, m["to_visit"])])
            why = ("" if _usable(m) else (m["status"] if m["status"] != "ok" else f"flagged: {m['flag_reason']}"))
            sd = m["sd_mm"]
            if not why and sd is None:
                why = "no predicted SD (network estimate only)"
            if sd is not None:
                sd = max(sd, floor.get(joint_type(joint), 0.0))
            points.append({"patient": patient, "joint": joint, "visit": m["to_visit"],
                           "visit_index": index.get((patient, m["to_visit"])), "date": dates[(patient, m["to_visit"])],
                           "years": years, "jsn_change_mm": m["jsn_mm"], "sd_mm": sd, "used": not why,
                           "why_not": why, "inconsistent": m["to_visit"] in bad})
            if not why and years > 0:
                used.append((years, m["jsn_mm"], sd))
        t = {"patient": patient, "joint": joint, "joint_type": joint_type(joint), "baseline": base,
             "n_followups": len(ms), "n_used": len(used), "rate_mm_per_year": None, "rate_se_mm_per_year": None,
             "reduced_chi2": None, "inconsistent_visits": ";".join(sorted(bad)), "flagged": bool(bad),
             "note": "" if used else "no usable follow-up"}
        if used:
            y, j, s = (np.array(c, dtype=float) for c in zip(*used))
            t["rate_mm_per_year"], t["rate_se_mm_per_year"], chi2 = fit_rate(y, j, s)
            t["reduced_chi2"] = None if np.isnan(chi2) else chi2
        if bad:
            t["note"] = "visits disagree (transitivity): " + ", ".join(sorted(bad))
        trajs.append(t)
    return points, trajs, checks
