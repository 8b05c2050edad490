"""Which pairs to register: per patient, the baseline (first usable visit) to every later visit,
each visit to the one before it, and each same-day repeat to its visit. Pure functions.

A pair not from the baseline places its joints where the baseline pair found them in its
from-visit, so it waits for that pair (its `parent`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from .manifest import OK, Visit


@dataclass
class Pair:
    patient: str
    from_visit: Visit
    to_visit: Visit
    kind: str  # "baseline", "previous", "baseline+previous" (the second visit), "repeat"
    parent: tuple[str, str] | None  # (from, to) keys of the pair that places this pair's joints
    joints: list[dict]  # [{name, x, y}] on the baseline
    input_hash: dict[str, str] = field(default_factory=dict)  # per joint

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.patient, self.from_visit.key, self.to_visit.key)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


def settings_hash(settings: dict) -> str:
    return _hash(settings)


def usable(visit: Visit, scan: dict | None) -> bool:
    return visit.ok and scan is not None and scan["status"] == OK


def baselines(visits: list[Visit], scans: dict) -> dict[str, Visit]:
    """Each patient's baseline: the earliest usable visit that is not a repeat."""
    out: dict[str, Visit] = {}
    for v in sorted(visits, key=lambda v: v.date):
        if not v.repeat and usable(v, scans.get(v.line)) and v.patient not in out:
            out[v.patient] = v
    return out


def build_plan(visits: list[Visit], scans: dict, joints: dict[str, dict]) -> tuple[list[dict], list[dict], list[Pair]]:
    """(visit rows, patient rows, pairs). scans: {line: scan}; joints: {patient: {"joints": [...],
    "source": ...} or {"error": why}} for each patient with a baseline."""
    base = baselines(visits, scans)
    by_patient: dict[str, list[Visit]] = {}
    for v in visits:
        by_patient.setdefault(v.patient, []).append(v)
    visit_rows, patient_rows, pairs = [], [], []
    for patient, rows in by_patient.items():
        primaries = sorted((v for v in rows if not v.repeat and usable(v, scans.get(v.line))), key=lambda v: v.date)
        index = {v.key: k + 1 for k, v in enumerate(primaries)}
        for v in rows:
            scan = scans.get(v.line) or {}
            status = v.status if not v.ok else scan.get("status", "not scanned")
            visit_rows.append(dict(patient=patient, visit=v.key, date=v.date, line=v.line, image=v.image,
                                   site=v.site, is_repeat=int(v.repeat), status=status, note=v.note,
                                   sha256=scan.get("sha256", ""), spacing_mm=scan.get("spacing_mm"),
                                   visit_index=index.get(v.date)))
        repeats = [v for v in rows if v.repeat and usable(v, scans.get(v.line))]
        row = dict(patient=patient, status=OK, baseline=base[patient].key if patient in base else "",
                   n_visits=len(primaries), joints_source="")
        patient_rows.append(row)
        if not primaries:
            row["status"] = "no usable visit"
            continue
        given = joints.get(patient, {"error": "no joints"})
        if "error" in given:
            row["status"] = given["error"]
            continue
        row["joints_source"] = given.get("source", "file")
        if len(primaries) == 1 and not repeats:
            row["status"] = "one visit only: nothing to register"
            continue
        earlier = [v for v in rows if not v.repeat and v.date < primaries[0].date]
        if earlier:
            row["status"] = f"ok (baseline {primaries[0].date}: the earlier visit is unusable)"
        b = primaries[0]
        pj = given["joints"]
        for k, v in enumerate(primaries[1:], start=1):
            pairs.append(Pair(patient, b, v, "baseline+previous" if k == 1 else "baseline", None, pj))
            if k >= 2:
                prev = primaries[k - 1]
                pairs.append(Pair(patient, prev, v, "previous", (b.key, prev.key), pj))
        for r in repeats:
            same = [v for v in primaries if v.date == r.date]
            if not same:
                for vr in visit_rows:
                    if vr["line"] == r.line:
                        vr["status"] = "repeat without its visit (no usable visit of that date)"
                continue
            pairs.append(Pair(patient, same[0], r, "repeat", None if same[0] is b else (b.key, same[0].key), pj))
    for p in pairs:
        sf, st = scans[p.from_visit.line], scans[p.to_visit.line]
        anchor = [] if p.parent is None else [scans[base[p.patient].line]["sha256"], base[p.patient].spacing_mm]
        for j in p.joints:
            p.input_hash[j["name"]] = _hash([sf["sha256"], st["sha256"], p.from_visit.spacing_mm,
                                             p.to_visit.spacing_mm, j["name"], round(j["x"], 3), round(j["y"], 3),
                                             anchor])
    return visit_rows, patient_rows, pairs


def plan_rows(pairs: list[Pair]) -> list[dict]:
    return [dict(patient=p.patient, joint=j["name"], from_visit=p.from_visit.key, to_visit=p.to_visit.key,
                 kind=p.kind, input_hash=p.input_hash[j["name"]]) for p in pairs for j in p.joints]
