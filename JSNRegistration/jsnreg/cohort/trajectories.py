"""Per patient and joint: JSN against time, its rate, and whether the visits agree with each other.

Inputs are the store's current measurements (dicts with patient, joint, from_visit, to_visit,
kind, status, jsn_mm, sd_mm, flagged) and visits (patient, visit, date, visit_index). Pure numpy.

- Trajectory: narrowing since the baseline at each visit (the baseline -> visit pairs; 0 at the
  baseline) and the rate in mm/year through the origin by generalised least squares of all usable
  baseline -> visit and previous -> visit pairs. The error model (pair_covariance): each
  registration adds its own error, its predicted SD times a scale, and each image adds one error
  to every pair it is in, so the baseline pairs share the baseline image's error and are not
  independent. The scale and the image SD are estimated per joint type by restricted maximum
  likelihood from the cohort's own pairs and repeats (error_model); the SE follows from them.
- Transitivity: baseline -> previous + previous -> visit against baseline -> visit; the three
  SDs combined (sqrt of the sum of squares; each the predicted SD, floored by the repeat-pair RMS
  of its joint type when the cohort has MIN_REPEATS repeats); beyond TRANSITIVITY_Z of them the
  joint's two later visits are flagged. Errors a visit's image carries alone cancel in this sum
  (they enter both sides), so it sees the errors of one registration, which its predicted SD
  describes. A triple with a failed, flagged or unmeasured leg is listed as "unchecked", with why.
- Smallest detectable change (95 %) per joint type from same-day repeat pairs (true change 0):
  1.96 x the RMS of their measured JSN.
"""

from __future__ import annotations

import datetime
import re

import numpy as np

TRANSITIVITY_Z = 3.0  # 0.3 % of consistent triples flagged if the predicted SDs hold
MIN_REPEATS = 3  # repeat pairs of a joint type needed before their SD is used
MODEL_TRAJECTORIES = 500  # per joint type, enough for its two error SDs (a few ms each on the likelihood grid)
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


def _shared_images(images: np.ndarray) -> np.ndarray:
    """(n, n): how pair p's error moves with pair q's through the images they share (+1 per image
    both have on the same side, -1 per image on opposite sides). images: (n, 2) ids (from, to)."""
    a, b = images[:, :1], images[:, 1:]
    return (b == b.T).astype(float) - (b == a.T) - (a == b.T) + (a == a.T)


def pair_covariance(images: np.ndarray, sd_mm: np.ndarray, sd_scale: float, image_sd_mm: float) -> np.ndarray:
    """Covariance of pairs' JSN errors: each its registration's (sd_scale x its predicted SD,
    independent) plus the to-image's error minus the from-image's (image_sd_mm each), so pairs
    sharing an image covary: all baseline pairs share the baseline image."""
    return np.diag(np.square(sd_scale * sd_mm)) + image_sd_mm ** 2 * _shared_images(images)


def fit_rate(images: np.ndarray, years: np.ndarray, jsn_mm: np.ndarray, sd_mm: np.ndarray,
             sd_scale: float = 1.0, image_sd_mm: float = 0.0) -> tuple[float, float, float]:
    """(rate mm/year, its SE, reduced chi^2) of jsn = rate * years between each pair's visits by
    generalised least squares with pair_covariance."""
    inv = np.linalg.inv(pair_covariance(np.asarray(images), np.asarray(sd_mm, dtype=float), sd_scale, image_sd_mm))
    info = float(years @ inv @ years)
    rate = float(years @ inv @ jsn_mm) / info
    r = jsn_mm - rate * years
    dof = len(years) - 1
    return rate, float(np.sqrt(1.0 / info)), float(r @ inv @ r) / dof if dof > 0 else float("nan")


# The grid the error model is chosen on: registration SD scale x image SD (mm).
SD_SCALES = np.geomspace(0.3, 6.0, 28)
IMAGE_SDS_MM = np.concatenate([[0.0], np.geomspace(2e-4, 0.1, 45)])


def _reml_grid(images: np.ndarray, years: np.ndarray, jsn_mm: np.ndarray, sd_mm: np.ndarray) -> np.ndarray:
    """REML log-likelihood of one trajectory's pairs on the SD_SCALES x IMAGE_SDS_MM grid (the
    rate profiled out, so it does not bias the variances)."""
    k2 = np.square(SD_SCALES)[:, None, None, None]
    s2 = np.square(IMAGE_SDS_MM)[None, :, None, None]
    cov = k2 * np.diag(np.square(sd_mm)) + s2 * _shared_images(images)  # (scales, image sds, n, n)
    inv = np.linalg.inv(cov)
    info = np.einsum("i,...ij,j->...", years, inv, years)
    rate = np.einsum("i,...ij,j->...", years, inv, jsn_mm) / info
    r = jsn_mm - rate[..., None] * years
    return -0.5 * (np.linalg.slogdet(cov)[1] + np.log(info) + np.einsum("...i,...ij,...j->...", r, inv, r))


def error_model(trajectory_pairs: list[tuple], repeats: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(registration SD scale, image SD mm) of one joint type, by maximum (restricted) likelihood
    over its consistent trajectories' pairs and its repeat pairs. The previous-visit pairs tell
    the two apart: an image's error cancels in baseline->previous + previous->visit -
    baseline->visit, a registration's does not. trajectory_pairs: (images, years, jsn, sd) arrays;
    repeats: (jsn, sd) of pairs whose true change is 0 (their variance: registration + 2 images).
    None when nothing tells (no repeat and no trajectory of two pairs or more)."""
    informative = [f for f in trajectory_pairs if len(f[1]) > 1]
    if not informative and not repeats:
        return None
    ll = np.zeros((len(SD_SCALES), len(IMAGE_SDS_MM)))
    for images, years, jsn, sd in informative:
        ll += _reml_grid(images, years, jsn, sd)
    for jsn, sd in repeats:
        var = np.square(SD_SCALES * sd)[:, None] + 2 * np.square(IMAGE_SDS_MM)[None, :]
        ll += -0.5 * (np.log(var) + jsn ** 2 / var)
    i, j = np.unravel_index(np.argmax(ll), ll.shape)
    return float(SD_SCALES[i]), float(IMAGE_SDS_MM[j])


def sd_floors(measurements: list[dict]) -> dict[str, float]:
    """{joint type: repeat-pair RMS} where there are at least MIN_REPEATS repeat pairs: the
    scatter of one registration whose true change is 0, a floor for any pair's SD."""
    return {s["joint_type"]: s["rms_mm"] for s in smallest_detectable_change(measurements) if s["n_pairs"] >= MIN_REPEATS}


def _leg_problem(m: dict | None, leg: str) -> str:
    """Why a pair cannot enter the transitivity check ("" when it can)."""
    if m is None:
        return f"{leg} not measured"
    if m["status"] != "ok" or m["jsn_mm"] is None:
        return f"{leg} {m['status']}"
    if m["flagged"]:
        return f"{leg} flagged by the method ({m['flag_reason']})"
    if m["sd_mm"] is None:
        return f"{leg} has no predicted SD"
    return ""


def transitivity(measurements: list[dict], visits: list[dict]) -> list[dict]:
    """Every (baseline, previous, visit) triple of each measured joint, in visit order: status
    "consistent" or "inconsistent" (flagged), or "unchecked" with the unusable legs in the note."""
    floor = sd_floors(measurements)
    pairs = {(m["patient"], m["joint"], m["from_visit"], m["to_visit"]): m for m in measurements}
    joints: dict[str, set] = {}
    for m in measurements:
        joints.setdefault(m["patient"], set()).add(m["joint"])
    order: dict[str, list[tuple[int, str]]] = {}
    for v in visits:
        # The usable primary visits (a repeat or a duplicate row carries its visit's index too).
        if v["visit_index"] is not None and not v.get("is_repeat") and v.get("status", "ok") == "ok":
            order.setdefault(v["patient"], []).append((v["visit_index"], v["visit"]))
    out = []
    for patient, seq in sorted(order.items()):
        keys = [k for _, k in sorted(seq)]
        for joint in sorted(joints.get(patient, ())):
            for prev, visit in zip(keys[1:], keys[2:]):
                legs = [pairs.get((patient, joint, a, b)) for a, b in ((keys[0], prev), (prev, visit), (keys[0], visit))]
                base, step, direct = legs
                row = {"patient": patient, "joint": joint, "baseline": keys[0], "previous": prev, "visit": visit,
                       "direct_mm": None, "via_previous_mm": None, "difference_mm": None, "combined_sd_mm": None,
                       "z": None, "flagged": False}
                why = [w for w in (_leg_problem(m, leg) for m, leg in zip(legs, (
                    "baseline->previous", "previous->visit", "baseline->visit"))) if w]
                if why:
                    row.update(status="unchecked", note="; ".join(why))
                    out.append(row)
                    continue
                row.update(direct_mm=direct["jsn_mm"], via_previous_mm=base["jsn_mm"] + step["jsn_mm"])
                row["difference_mm"] = row["via_previous_mm"] - row["direct_mm"]
                sds = np.maximum([m["sd_mm"] for m in legs], floor.get(joint_type(joint), 0.0))
                sd = float(np.sqrt(np.sum(np.square(sds))))
                z = row["difference_mm"] / sd
                bad = bool(abs(z) > TRANSITIVITY_Z)
                row.update(combined_sd_mm=sd, z=z, flagged=bad, status="inconsistent" if bad else "consistent",
                           note=f"{abs(z):.1f} combined SDs apart" if bad else "")
                out.append(row)
    return out


def trajectories(measurements: list[dict], visits: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(points, trajectories, transitivity rows)."""
    dates = {(v["patient"], v["visit"]): v["date"] for v in visits}
    index = {(v["patient"], v["visit"]): v["visit_index"] for v in visits}
    checks = transitivity(measurements, visits)
    inconsistent: dict[tuple, list[str]] = {}
    for c in checks:
        if c["flagged"]:
            for v in (c["previous"], c["visit"]):
                inconsistent.setdefault((c["patient"], c["joint"]), []).append(v)
    points, trajs, fits = [], [], []
    groups: dict[tuple, list[dict]] = {}
    for m in measurements:
        if m["kind"] != "repeat":
            groups.setdefault((m["patient"], m["joint"]), []).append(m)
    for (patient, joint), ms in sorted(groups.items()):
        base = next((m["from_visit"] for m in ms if m["kind"].startswith("baseline")), None)
        if base is None:
            continue
        bad = set(inconsistent.get((patient, joint), []))
        points.append({"patient": patient, "joint": joint, "visit": base, "visit_index": index.get((patient, base)),
                       "date": dates[(patient, base)], "years": 0.0, "jsn_change_mm": 0.0, "sd_mm": 0.0,
                       "used": True, "why_not": "", "inconsistent": False})
        used = []  # (from visit, to visit, years between, jsn, predicted sd): baseline and previous pairs
        for m in sorted(ms, key=lambda m: (m["to_visit"], m["from_visit"])):
            why = ("" if _usable(m) else (m["status"] if m["status"] != "ok" else f"flagged: {m['flag_reason']}"))
            if not why and m["sd_mm"] is None:
                why = "no predicted SD (network estimate only)"
            if not why and m["from_visit"] != base and not any(
                    _usable(q) for q in ms if (q["from_visit"], q["to_visit"]) == (base, m["from_visit"])):
                why = "placed from a baseline pair that failed or was flagged"  # its joint position is not trusted
            years = _years(dates[(patient, m["from_visit"])], dates[(patient, m["to_visit"])])
            if not why and years > 0:
                used.append((m["from_visit"], m["to_visit"], years, m["jsn_mm"], m["sd_mm"]))
            if m["from_visit"] == base:
                points.append({"patient": patient, "joint": joint, "visit": m["to_visit"],
                               "visit_index": index.get((patient, m["to_visit"])),
                               "date": dates[(patient, m["to_visit"])], "years": years, "jsn_change_mm": m["jsn_mm"],
                               "predicted_sd_mm": m["sd_mm"], "used": not why, "why_not": why,
                               "inconsistent": m["to_visit"] in bad})
        t = {"patient": patient, "joint": joint, "joint_type": joint_type(joint), "baseline": base,
             "n_followups": sum(m["from_visit"] == base for m in ms), "n_used": len(used),
             "rate_mm_per_year": None, "rate_se_mm_per_year": None, "reduced_chi2": None, "sd_scale": None,
             "image_sd_mm": None, "inconsistent_visits": ";".join(sorted(bad)), "flagged": bool(bad),
             "note": "" if used else "no usable follow-up"}
        if bad:
            t["note"] = "visits disagree (transitivity): " + ", ".join(sorted(bad))
        trajs.append(t)
        if used:
            frm, to, y, j, s = zip(*used)
            fits.append((t, (np.array([frm, to]).T, np.array(y), np.array(j), np.array(s))))
    repeats: dict[str, list] = {}
    for m in measurements:
        if m["kind"] == "repeat" and _usable(m) and m["sd_mm"] is not None:
            repeats.setdefault(joint_type(m["joint"]), []).append((m["jsn_mm"], m["sd_mm"]))
    model = {}
    for jt in sorted({t["joint_type"] for t, _ in fits}):
        consistent = [f for t, f in fits if t["joint_type"] == jt and not t["flagged"]]
        model[jt] = error_model(consistent[::max(1, len(consistent) // MODEL_TRAJECTORIES)], repeats.get(jt, []))
    for t, f in fits:
        if model[t["joint_type"]] is None:
            t["note"] = (t["note"] + "; " if t["note"] else "") + ("SE from the predicted SDs alone (no repeats and "
                                                                 "no trajectory of 2+ pairs to estimate the errors)")
        t["sd_scale"], t["image_sd_mm"] = model[t["joint_type"]] or (1.0, 0.0)
        t["rate_mm_per_year"], t["rate_se_mm_per_year"], chi2 = fit_rate(*f, t["sd_scale"], t["image_sd_mm"])
        t["reduced_chi2"] = None if np.isnan(chi2) else chi2
    for p in points:  # a point's SD as the fit models it: its registration and its two images
        k, s_img = model.get(joint_type(p["joint"])) or (1.0, 0.0)
        sd = p.pop("predicted_sd_mm", None)
        if p["years"] > 0:
            p["sd_mm"] = None if sd is None else float(np.sqrt((k * sd) ** 2 + 2 * s_img ** 2))
    return points, trajs, checks
