"""`jsnreg cohort run`: scan, plan, and measure what the store does not hold yet, on Dask.

The client reads the manifest and the joints files, hands paths to the workers, and writes each
result to the store as it arrives. At most IN_FLIGHT_PER_THREAD tasks per worker thread are
submitted at a time, so neither the client nor the scheduler holds the whole cohort, and each
worker holds one pair of images per thread (its memory limit is the cluster's memory_limit).
The same code runs on a LocalCluster or on any dask.distributed scheduler (`--scheduler`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import deque
from pathlib import Path

from ..errors import InputError
from . import tasks
from .manifest import read_manifest
from .plan import Pair, baselines, build_plan, plan_rows, settings_hash
from .store import Store

IN_FLIGHT_PER_THREAD = 2


@contextlib.contextmanager
def dask_client(workers: int = 2, scheduler: str | None = None, memory_limit: str = "2GB"):
    """A dask.distributed Client: on the scheduler at `scheduler`, else on a new LocalCluster of
    `workers` single-threaded processes (the network's torch uses one thread per process)."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    env = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit,
                      dashboard_address=None, env=env, silence_logs=40) as cluster, Client(cluster) as client:
        yield client


def _threads(client) -> int:
    return max(sum(client.nthreads().values()), 1)


def bounded_map(client, fn, items, on_result, limit: int, key_prefix: str):
    """Submit fn(item) for each item, at most `limit` at a time, calling on_result(item, value or
    exception) as each finishes; on_result may return more items to submit (dependent pairs)."""
    from dask.distributed import as_completed

    queue = deque(items)
    ac = as_completed()
    owner = {}
    count = 0

    def fill():
        nonlocal count
        while queue and ac.count() < limit:
            item = queue.popleft()
            count += 1
            fut = client.submit(fn, item if not isinstance(item, Pair) else item.task,
                                key=f"{key_prefix}-{count}-{time.time_ns()}", pure=False, retries=1)
            owner[fut.key] = item
            ac.add(fut)

    fill()
    while ac.count() or queue:
        if not ac.count():
            fill()
            continue
        fut = next(ac)
        item = owner.pop(fut.key)
        try:
            value = fut.result()
        except Exception as exc:  # a worker died too often, or the task crashed: left pending
            value = exc
        fut.release()
        queue.extend(on_result(item, value) or [])
        fill()


def _stat(path: str):
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return None


def scan_visits(client, store: Store, visits, limit: int) -> dict:
    """{line: scan} for every ok visit; images seen before (same size and mtime) are not read again."""
    scans, todo = {}, []
    for v in visits:
        if not v.ok:
            continue
        given = "" if v.spacing_mm is None else repr(v.spacing_mm)
        st = _stat(v.image)
        cached = store.cached_scan(v.image, given, *st) if st else None
        if cached:
            scans[v.line] = cached
        else:
            todo.append(v)

    def done(v, value):
        if isinstance(value, Exception):
            value = {"sha256": "", "spacing_mm": None, "status": f"unreadable image: {type(value).__name__}: {value}"}
        st = _stat(v.image) or (-1, -1)
        scan = dict(value, path=v.image, spacing_given="" if v.spacing_mm is None else repr(v.spacing_mm),
                    size=st[0], mtime_ns=st[1], joints=None)
        if scan["status"] != "ok" and scan["status"].startswith("missing"):
            scan["size"] = scan["mtime_ns"] = -1
        else:
            store.save_scan(scan)
        scans[v.line] = scan

    by_line = {v.line: v for v in todo}
    if todo:
        bounded_map(client, _scan_task, [(v.line, v.image, v.spacing_mm) for v in todo],
                    lambda item, value: done(by_line[item[0]], value), limit, "scan")
    return scans


def _scan_task(item):
    _, path, spacing = item
    return tasks.scan_image(path, spacing)


def _detect_task(item):
    _, path, spacing = item
    return tasks.detect(path, spacing)


def resolve_joints(client, store: Store, visits, scans: dict, limit: int) -> dict:
    """{patient: {"joints": [...], "source": "file" | "detected"} or {"error": why}} for each baseline."""
    from ..joints import load_joints_json

    out, detect = {}, []
    for patient, b in baselines(visits, scans).items():
        if b.joints:
            try:
                specs = load_joints_json(b.joints)
                out[patient] = {"joints": [{"name": s.name, "x": s.x, "y": s.y} for s in specs], "source": "file"}
            except InputError as exc:
                out[patient] = {"error": f"joints file: {exc}"}
            continue
        cached = scans[b.line].get("joints")
        if cached:
            out[patient] = json.loads(cached)
        else:
            detect.append((patient, b))

    def done(item, value):
        patient, b = item
        if isinstance(value, Exception):
            value = {"error": f"joint detection failed: {type(value).__name__}: {value}"}
        if "joints" in value:
            value["source"] = "detected"
            scan = dict(scans[b.line], joints=json.dumps(value))
            store.save_scan(scan)
        out[patient] = value

    if detect:
        try:
            import jsnreg.detect  # noqa: F401  (only to know whether detection exists at all)
        except ImportError:
            for patient, _ in detect:
                out[patient] = {"error": tasks.NO_DETECTION}
            detect = []
    if detect:
        bounded_map(client, _detect_task, [((p, b), b.image, b.spacing_mm) for p, b in detect],
                    lambda item, value: done(item[0], value), limit, "detect")
    return out


def _progress(total: int, disable: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="joint", desc="measuring", file=sys.stderr, disable=disable, smoothing=0.1)


def run_cohort(manifest, store_path, workers: int = 2, scheduler: str | None = None, settings=None,
               memory_limit: str = "2GB", progress: bool = True, client=None) -> dict:
    """Measure every planned joint the store does not hold for these settings and this model.

    Returns counts: planned, already (held before), measured, failed, pending (left undone)."""
    from ..quantify import Settings

    settings = settings or Settings()
    visits = read_manifest(manifest)
    store = Store(store_path)
    s_hash, m_hash = settings_hash(settings.to_dict()), tasks.model_hash()
    run_id = store.begin_run(str(Path(manifest).resolve()), settings.to_dict(), s_hash, m_hash,
                             scheduler or f"LocalCluster({workers} workers)")
    counts = {}
    try:
        with (contextlib.nullcontext(client) if client is not None else
              dask_client(workers, scheduler, memory_limit)) as c:
            limit = IN_FLIGHT_PER_THREAD * _threads(c)
            t_scan = time.perf_counter()
            scans = scan_visits(c, store, visits, limit)
            t_scan = time.perf_counter() - t_scan
            joints = resolve_joints(c, store, visits, scans, limit)
            visit_rows, patient_rows, pairs = build_plan(visits, scans, joints)
            store.write_plan(run_id, visit_rows, patient_rows, plan_rows(pairs))
            counts = measure(c, store, pairs, settings, s_hash, m_hash, run_id, limit, progress)
            counts.update(scan_seconds=t_scan, images=sum(v.ok for v in visits))
        store.end_run(run_id, "done" if counts["pending"] == 0 else "incomplete")
    except BaseException:
        store.end_run(run_id, "stopped")
        raise
    finally:
        store.close()
    return counts


def measure(client, store: Store, pairs: list[Pair], settings, s_hash: str, m_hash: str, run_id: int,
            limit: int, progress: bool) -> dict:
    """Submit the pairs with joints still missing; a dependent pair once its parent is in."""
    have = store.current(s_hash, m_hash)
    planned = sum(len(p.joints) for p in pairs)
    counts = {"planned": planned, "already": len(have), "measured": 0, "failed": 0, "pending": 0, "errors": []}
    children: dict[tuple, list[Pair]] = {}
    ready = []
    for p in pairs:
        missing = [j for j in p.joints if (p.patient, j["name"], p.from_visit.key, p.to_visit.key) not in have]
        if not missing:
            continue
        p.missing = missing
        if p.parent is not None and any((p.patient, j["name"], *p.parent) not in have for j in missing):
            children.setdefault((p.patient, *p.parent), []).append(p)
        else:
            ready.append(p)
    bar = _progress(planned - len(have), not progress)

    def prepare(p: Pair) -> list[Pair]:
        """Joint positions on the from-visit; joints whose parent failed are stored as failed."""
        joints, failed = [], []
        for j in p.missing:
            if p.parent is None:
                joints.append(j)
                continue
            row = have.get((p.patient, j["name"], *p.parent))
            if row is None or row["status"] != "ok":
                failed.append(_failed_row(p, j["name"], "failed: no position on the from-visit (its baseline pair: "
                                          + (row["status"] if row is not None else "not measured") + ")"))
            else:
                joints.append({"name": j["name"], "x": row["to_x"], "y": row["to_y"]})
        if failed:
            save(p, failed)
        if not joints:
            return []
        p.task = {"from_image": p.from_visit.image, "to_image": p.to_visit.image,
                  "from_spacing_given": p.from_visit.spacing_mm, "to_spacing_given": p.to_visit.spacing_mm,
                  "joints": joints, "settings": settings.to_dict(),
                  "from_sha256": p.from_sha256, "to_sha256": p.to_sha256}
        return [p]

    def _failed_row(p: Pair, joint: str, status: str) -> dict:
        return {"joint": joint, "status": status}

    def save(p: Pair, rows: list[dict], worker: str = "", from_sha="", to_sha="") -> None:
        now = time.time()
        full = []
        for r in rows:
            full.append({
                "patient": p.patient, "joint": r["joint"], "from_visit": p.from_visit.key,
                "to_visit": p.to_visit.key, "settings_hash": s_hash, "model_hash": m_hash,
                "input_hash": p.input_hash[r["joint"]], "from_sha256": from_sha or p.from_sha256,
                "to_sha256": to_sha or p.to_sha256, "kind": p.kind, "status": r["status"],
                "jsn_mm": r.get("jsn_mm"), "sd_mm": r.get("sd_mm"), "confidence": r.get("confidence"),
                "flagged": r.get("flagged"), "flag_reason": r.get("flag_reason", ""), "to_x": r.get("to_x"),
                "to_y": r.get("to_y"), "seconds": r.get("seconds"),
                "cpu_seconds": r.get("cpu_seconds"), "worker": worker, "run_id": run_id,
                "finished": now, "result": json.dumps(r["result"]) if "result" in r else None})
        store.save_measurements(full, run_id)
        for row in full:
            have[(row["patient"], row["joint"], row["from_visit"], row["to_visit"])] = row
            counts["measured" if row["status"] == "ok" else "failed"] += 1
        bar.update(len(full))

    def done(p: Pair, value) -> list[Pair]:
        if isinstance(value, Exception):
            counts["errors"].append(f"{p.patient} {p.from_visit.key} -> {p.to_visit.key}: "
                                    f"{type(value).__name__}: {value}")
            return []
        if value.get("changed"):
            counts["errors"].append(f"{p.patient} {p.from_visit.key} -> {p.to_visit.key}: an image changed "
                                    "during the run (run again)")
            return []
        if value["model_hash"] != m_hash:
            counts["errors"].append(f"worker {value['worker']} has other network weights: not stored")
            return []
        save(p, value["rows"], value["worker"], value["from_sha256"], value["to_sha256"])
        nxt = []
        for child in children.pop((p.patient, p.from_visit.key, p.to_visit.key), []):
            nxt += prepare(child)
        return nxt

    sha = {r["line"]: r["sha256"] for r in store.query("SELECT line, sha256 FROM visits")}
    for p in pairs:
        p.from_sha256, p.to_sha256 = sha[p.from_visit.line], sha[p.to_visit.line]
    first = [q for p in ready for q in prepare(p)]
    t0 = time.perf_counter()
    try:
        bounded_map(client, tasks.measure_pair, first, done, limit, "measure")
    finally:
        bar.close()
    counts["seconds"] = time.perf_counter() - t0
    # Children whose parent never came in (its task failed) stay pending for the next run.
    counts["pending"] = planned - len(store.current(s_hash, m_hash))
    return counts
