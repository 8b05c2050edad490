"""`jsnreg cohort status`: what the store holds for its latest plan, and why anything is missing."""

from __future__ import annotations

from collections import Counter

from .store import Store


def summary(store: Store) -> dict:
    """Counts and reasons for the latest run's plan, settings and model."""
    run = store.latest_run()
    if run is None:
        return {"run": None}
    current = store.current(run["settings_hash"], run["model_hash"])
    planned = store.query("SELECT COUNT(*) FROM plan")[0][0]
    failed = Counter(r["status"] for r in current.values() if r["status"] != "ok")
    return {
        "run": dict(run), "planned": planned,
        "done": sum(r["status"] == "ok" for r in current.values()),
        "flagged": sum(r["status"] == "ok" and bool(r["flagged"]) for r in current.values()),
        "failed": sum(failed.values()), "failed_reasons": failed.most_common(),
        "pending": planned - len(current),
        "stale": store.query("SELECT COUNT(*) FROM measurements")[0][0] - len(current),
        "visits": [dict(r) for r in store.query("SELECT * FROM visits WHERE status != 'ok' OR note != '' "
                                                 "ORDER BY patient, line")],
        "patients": [dict(r) for r in store.query("SELECT * FROM patients WHERE status != 'ok' ORDER BY patient")],
    }


def print_status(path) -> None:
    store = Store(path, must_exist=True)
    try:
        s = summary(store)
    finally:
        store.close()
    if s["run"] is None:
        print(f"{path}: no run yet")
        return
    run = s["run"]
    print(f"store {path}: latest run {run['run_id']} ({run['state']}, {run['cluster']}), settings {run['settings']} "
          f"[{run['settings_hash'][:8]}], model {run['model_hash'][:12]}")
    print(f"joint measurements: {s['planned']} planned, {s['done']} done ({s['flagged']} flagged), "
          f"{s['failed']} failed, {s['pending']} pending; {s['stale']} older rows kept "
          "(other settings, model or inputs)")
    for reason, n in s["failed_reasons"]:
        print(f"  failed x{n}: {reason}")
    for v in s["visits"]:
        text = v["status"] if v["status"] != "ok" else "ok"
        print(f"  visit {v['patient']} {v['visit']} (line {v['line']}): {text}" + (f"; {v['note']}" if v["note"] else ""))
    for p in s["patients"]:
        print(f"  patient {p['patient']}: {p['status']}")
