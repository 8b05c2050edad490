"""`jsnreg cohort report STORE --out DIR`: tables and an HTML summary that opens offline.

Tables (CSV always; Parquet too when pyarrow is installed: typed columns, a tenth of the size,
read as they are by pandas, R's arrow and DuckDB): measurements, trajectory points,
trajectories, transitivity, smallest detectable change, visits, patients. The HTML embeds its
plots as PNG (base64), so the one file is the whole summary.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

import numpy as np

from .store import Store
from .trajectories import smallest_detectable_change, trajectories

MEASUREMENT_FIELDS = ("patient", "joint", "from_visit", "to_visit", "kind", "status", "jsn_mm", "sd_mm",
                      "confidence", "flagged", "flag_reason", "from_sha256", "to_sha256", "settings_hash",
                      "model_hash", "worker", "seconds", "run_id")


def load(store: Store) -> dict:
    """The latest plan's current measurements, visits and patients as lists of dicts."""
    run = store.latest_run()
    if run is None:
        return {"run": None, "measurements": [], "visits": [], "patients": []}
    current = store.current(run["settings_hash"], run["model_hash"])
    ms = [{k: r[k] for k in MEASUREMENT_FIELDS} for r in current.values()]
    for m in ms:
        m["flagged"] = bool(m["flagged"]) if m["flagged"] is not None else False
    ms.sort(key=lambda m: (m["patient"], m["joint"], m["from_visit"], m["to_visit"]))
    return {"run": dict(run), "measurements": ms,
            "visits": [dict(r) for r in store.query("SELECT * FROM visits ORDER BY patient, date, line")],
            "patients": [dict(r) for r in store.query("SELECT * FROM patients ORDER BY patient")],
            "pending": store.query("SELECT COUNT(*) FROM plan")[0][0] - len(current)}


def _write_table(rows: list[dict], path: Path, fields=None) -> list[Path]:
    fields = list(fields or (rows[0].keys() if rows else []))
    with open(path.with_suffix(".csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    out = [path.with_suffix(".csv")]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return out
    if rows:
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in fields} for r in rows]), path.with_suffix(".parquet"))
        out.append(path.with_suffix(".parquet"))
    return out


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plot_trajectories(points: list[dict], trajs: list[dict]):
    """One panel per joint: each patient's narrowing since baseline against years; inconsistent
    visits as red crosses, points left out of the rate as open circles."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..joints import STANDARD_JOINTS

    def order(name):
        base = name.split("-")[-1]
        return (name.split("-")[0] if "-" in name else "", STANDARD_JOINTS.index(base) if base in STANDARD_JOINTS
                else len(STANDARD_JOINTS), name)

    joints = sorted({p["joint"] for p in points}, key=order)
    cols = min(len(joints), 5) or 1
    rows = -(-len(joints) // cols) or 1
    # The axis spans the points used for the rates; a point beyond it (a failed registration can
    # be millimetres off) is drawn at the edge as a triangle, so one bad point does not flatten the rest.
    used = [p["jsn_change_mm"] for p in points if p["used"] and p["jsn_change_mm"] is not None] or [0.0]
    pad = 0.15 * (max(used) - min(used) or 0.1)
    lo, hi = min(used) - pad, max(used) + pad
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False, sharey=True)
    for ax, joint in zip(axes.flat, joints):
        for patient in sorted({p["patient"] for p in points if p["joint"] == joint}):
            pts = [p for p in points if p["joint"] == joint and p["patient"] == patient and p["jsn_change_mm"] is not None]
            pts.sort(key=lambda p: p["years"])
            x = [p["years"] for p in pts]
            y = [min(max(p["jsn_change_mm"], lo), hi) for p in pts]
            line, = ax.plot(x, y, "-", lw=1, alpha=0.8)
            for p, yy in zip(pts, y):
                outside = yy != p["jsn_change_mm"]
                style = dict(color="red", marker="x", ms=7) if p["inconsistent"] else (
                    dict(color=line.get_color(), marker="o", ms=4) if p["used"] else
                    dict(color=line.get_color(), marker="o", ms=5, mfc="none"))
                if outside:
                    style.update(marker="v" if yy == lo else "^", ms=7)
                ax.plot([p["years"]], [yy], ls="none", **style)
        ax.set_title(joint, fontsize=10)
        ax.axhline(0, color="0.6", lw=0.5)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("years since baseline", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("narrowing since baseline (mm)", fontsize=8)
    for ax in list(axes.flat)[len(joints):]:
        ax.axis("off")
    fig.suptitle("JSN trajectories (x: visit in a failed transitivity check; open: not used for the rate; "
                 "triangle: beyond the axis)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_rates(trajs: list[dict]):
    """Rate distribution per joint type: each trajectory a dot with its SE, flagged ones red."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = sorted({t["joint_type"] for t in trajs if t["rate_mm_per_year"] is not None})
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * max(len(types), 1), 3.4))
    rng = np.random.default_rng(0)  # horizontal jitter only, so points do not overlap
    for k, jt in enumerate(types):
        ts = [t for t in trajs if t["joint_type"] == jt and t["rate_mm_per_year"] is not None]
        rates = [t["rate_mm_per_year"] for t in ts]
        ax.boxplot([rates], positions=[k], widths=0.5, showfliers=False)
        for t in ts:
            x = k + rng.uniform(-0.18, 0.18)
            ax.errorbar(x, t["rate_mm_per_year"], yerr=t["rate_se_mm_per_year"], fmt="o", ms=3,
                        color="red" if t["flagged"] else "C0", lw=0.8)
    ax.set_xticks(range(len(types)), types)
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set_ylabel("JSN rate (mm/year, +/- SE)")
    ax.set_title("Rate per joint type (red: visits disagree)", fontsize=10)
    fig.tight_layout()
    return fig


def visit_flags(measurements: list[dict], visits: list[dict], checks: list[dict]) -> list[dict]:
    """Per site and visit number: joints measured to it, flagged by the method, failed, in a
    failed transitivity check, in an unchecked triple (a leg unusable)."""
    where = {(v["patient"], v["visit"]): (v.get("site") or "", v["visit_index"]) for v in visits
             if v.get("status", "ok") == "ok"}
    out: dict[tuple, dict] = {}

    def row(patient, visit):
        site, k = where.get((patient, visit), ("", None))
        return out.setdefault((site, k), {"site": site, "visit_index": k, "measured": 0, "flagged": 0, "failed": 0,
                                          "inconsistent": 0, "unchecked": 0})

    for m in measurements:
        if m["kind"].startswith("baseline"):
            r = row(m["patient"], m["to_visit"])
            r["measured"] += 1
            r["failed"] += m["status"] != "ok"
            r["flagged"] += m["status"] == "ok" and m["flagged"]
    for c in checks:
        if c["status"] == "inconsistent":
            for v in (c["previous"], c["visit"]):
                row(c["patient"], v)["inconsistent"] += 1
        elif c["status"] == "unchecked":
            row(c["patient"], c["visit"])["unchecked"] += 1
    return [out[k] for k in sorted(out, key=lambda k: (k[0], k[1] is None, k[1] or 0))]


def plot_visit_flags(rows: list[dict]):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (("flagged", "C1"), ("failed", "C3"), ("inconsistent", "C4"), ("unchecked", "C7"))
    fig, ax = plt.subplots(figsize=(max(5.5, 0.9 * len(rows) + 1.5), 3.2))
    x = np.arange(len(rows))
    width = 0.8 / len(keys)
    for k, (key, colour) in enumerate(keys):
        ax.bar(x + (k - (len(keys) - 1) / 2) * width, [r[key] for r in rows], width, label=key, color=colour)
    ax.set_xticks(x, [f"{r['site'] or 'no site'}\nvisit {r['visit_index']}" for r in rows], fontsize=8)
    ax.set_ylabel("joints")
    ax.legend(fontsize=8)
    ax.set_title("Flags per site and visit (inconsistent: in a failed transitivity check; "
                 "unchecked: a triple with an unusable leg)", fontsize=9)
    fig.tight_layout()
    return fig


def _table(rows: list[dict], fields, limit: int = 200) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape("" if v is None else str(v))
    head = "".join(f"<th>{html.escape(f)}</th>" for f in fields)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(f))}</td>" for f in fields) + "</tr>" for r in rows[:limit])
    more = f"<p>... {len(rows) - limit} more rows in the CSV</p>" if len(rows) > limit else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def write_report(store_path, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    store = Store(store_path, must_exist=True)
    try:
        data = load(store)
    finally:
        store.close()
    out.mkdir(parents=True, exist_ok=True)
    ms, visits = data["measurements"], data["visits"]
    points, trajs, checks = trajectories(ms, visits)
    sdc = smallest_detectable_change(ms)
    per_visit = visit_flags(ms, visits, checks)
    files = []
    for name, rows, fields in (("measurements", ms, MEASUREMENT_FIELDS), ("trajectory_points", points, None),
                               ("trajectories", trajs, None), ("transitivity", checks, None), ("sdc", sdc, None),
                               ("visits", visits, None), ("patients", data["patients"], None)):
        files += _write_table(rows, out / name, fields)
    figs = {}
    if points:
        for key, make in (("trajectories", lambda: plot_trajectories(points, trajs)), ("rates", lambda: plot_rates(trajs)),
                          ("visit_flags", lambda: plot_visit_flags(per_visit))):
            fig = make()
            figs[key] = _png(fig)
            plt.close(fig)
    run = data["run"] or {}
    unchecked = [c for c in checks if c["status"] == "unchecked"]
    problems = [v for v in visits if v["status"] != "ok" or v["note"]]
    bad_patients = [p for p in data["patients"] if p["status"] != "ok"]
    n_ok = sum(m["status"] == "ok" for m in ms)
    img = lambda k: f'<img src="data:image/png;base64,{figs[k]}" alt="{k}">' if k in figs else "<p>no data</p>"  # noqa: E731
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>JSN cohort summary</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #bbb;padding:2px 6px}} th{{background:#eee}} img{{max-width:100%}} .n{{color:#555}}</style></head><body>
<h1>JSN cohort summary</h1>
<p class="n">Store {html.escape(str(store_path))}; run {run.get('run_id')} ({html.escape(str(run.get('state')))}),
settings {html.escape(str(run.get('settings')))} [{str(run.get('settings_hash'))[:8]}], model {str(run.get('model_hash'))[:12]}.
Positive JSN = narrower at the later visit.</p>
<p><b>{len({v['patient'] for v in visits})}</b> patients, <b>{len(visits)}</b> manifest rows;
<b>{len(ms)}</b> joint measurements ({n_ok} ok, {sum(m['flagged'] for m in ms)} flagged by the method,
{len(ms) - n_ok} failed), {data.get('pending', 0)} pending; {len(trajs)} trajectories,
{sum(t['flagged'] for t in trajs)} with visits that disagree; {len(checks) - len(unchecked)} transitivity checks,
{sum(c['flagged'] for c in checks)} failed (|z| &gt; 3 combined predicted SDs), {len(unchecked)} triples unchecked
(a leg failed, flagged or not measured).</p>
<h2>Trajectories per joint</h2>{img('trajectories')}
<h2>Rate per joint type</h2>{img('rates')}
<h2>Flags per site and visit</h2>{img('visit_flags')}
{_table(per_visit, ['site', 'visit_index', 'measured', 'flagged', 'failed', 'inconsistent', 'unchecked'])}
<h2>Smallest detectable change (same-day repeats)</h2>
{_table(sdc, ['joint_type', 'n_pairs', 'rms_mm', 'sdc95_mm']) if sdc else '<p>No repeat pairs in the manifest.</p>'}
<h2>Failed transitivity checks</h2>
{_table([c for c in checks if c['flagged']], ['patient', 'joint', 'baseline', 'previous', 'visit', 'direct_mm', 'via_previous_mm', 'difference_mm', 'combined_sd_mm', 'z'])}
<h2>Unchecked transitivity triples</h2>
{_table(unchecked, ['patient', 'joint', 'baseline', 'previous', 'visit', 'status', 'note'])}
<h2>Input problems</h2>
{_table(problems, ['patient', 'visit', 'line', 'image', 'status', 'note'])}
{_table(bad_patients, ['patient', 'status', 'n_visits'])}
<h2>Trajectories</h2>
<p class="n">Rate: generalised least squares of the baseline and previous-visit pairs. Its SE counts each
registration's error (the predicted SD x sd_scale) and each image's (image_sd_mm, shared by every pair the image is in:
all baseline pairs share the baseline's), both estimated per joint type from the cohort's pairs and repeats.</p>
{_table(trajs, ['patient', 'joint', 'n_used', 'rate_mm_per_year', 'rate_se_mm_per_year', 'sd_scale', 'image_sd_mm', 'reduced_chi2', 'note'])}
<h2>Failed measurements</h2>
{_table([m for m in ms if m['status'] != 'ok'], ['patient', 'joint', 'from_visit', 'to_visit', 'status'])}
</body></html>
"""
    (out / "summary.html").write_text(page, encoding="utf-8")
    (out / "summary.json").write_text(json.dumps({"trajectories": trajs, "sdc": sdc, "visit_flags": per_visit},
                                                 indent=1, default=str))
    return files + [out / "summary.html", out / "summary.json"]
