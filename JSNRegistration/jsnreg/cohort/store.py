"""The cohort store: one SQLite file in WAL mode, written by the run's client as each task ends.

Why SQLite: one file the researcher can copy, open from any language, and query with SQL; WAL
lets `status` and `report` read while a run writes; each finished pair is one transaction, so a
kill at any moment leaves whole pairs or nothing. Only the client writes (workers return their
results), so no network file system has to carry SQLite's locks.

measurements: one row per (patient, joint, from_visit, to_visit, settings_hash, model_hash).
input_hash covers everything else the number depends on (both images' SHA-256, their spacings,
the joint's baseline position and, for a pair not from the baseline, the baseline's image): a row
whose input_hash differs from the current plan's is stale and is measured again (replaced).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from ..errors import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY, started REAL, finished REAL, manifest TEXT, settings TEXT,
    settings_hash TEXT, model_hash TEXT, cluster TEXT, planned INTEGER, measured INTEGER, state TEXT);
CREATE TABLE IF NOT EXISTS scans (
    path TEXT, spacing_given TEXT, size INTEGER, mtime_ns INTEGER, sha256 TEXT, spacing_mm REAL,
    status TEXT, joints TEXT, PRIMARY KEY (path, spacing_given));
CREATE TABLE IF NOT EXISTS visits (
    patient TEXT, visit TEXT, date TEXT, line INTEGER, image TEXT, site TEXT, is_repeat INTEGER,
    status TEXT, note TEXT, sha256 TEXT, spacing_mm REAL, visit_index INTEGER);
CREATE TABLE IF NOT EXISTS patients (
    patient TEXT PRIMARY KEY, status TEXT, baseline TEXT, n_visits INTEGER, joints_source TEXT);
CREATE TABLE IF NOT EXISTS plan (
    patient TEXT, joint TEXT, from_visit TEXT, to_visit TEXT, kind TEXT, input_hash TEXT,
    PRIMARY KEY (patient, joint, from_visit, to_visit));
CREATE TABLE IF NOT EXISTS measurements (
    patient TEXT, joint TEXT, from_visit TEXT, to_visit TEXT, settings_hash TEXT, model_hash TEXT,
    input_hash TEXT, from_sha256 TEXT, to_sha256 TEXT, kind TEXT, status TEXT, jsn_mm REAL,
    sd_mm REAL, confidence REAL, flagged INTEGER, flag_reason TEXT, to_x REAL, to_y REAL,
    seconds REAL, cpu_seconds REAL, worker TEXT, run_id INTEGER, finished REAL, result TEXT,
    PRIMARY KEY (patient, joint, from_visit, to_visit, settings_hash, model_hash));
"""
MEASUREMENT_COLUMNS = ("patient", "joint", "from_visit", "to_visit", "settings_hash", "model_hash",
                       "input_hash", "from_sha256", "to_sha256", "kind", "status", "jsn_mm", "sd_mm",
                       "confidence", "flagged", "flag_reason", "to_x", "to_y", "seconds", "cpu_seconds", "worker",
                       "run_id", "finished", "result")


class Store:
    def __init__(self, path, must_exist: bool = False):
        self.path = Path(path)
        if must_exist and not self.path.is_file():
            raise InputError(f"{self.path}: no such cohort store (create it with `jsnreg cohort run`)")
        try:
            self.db = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a power cut loses at most the last commits
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path}: not a cohort store ({exc})") from None
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    def query(self, sql: str, args=()) -> list[sqlite3.Row]:
        return self.db.execute(sql, args).fetchall()

    def transaction(self):
        return _Transaction(self.db)

    # --- runs ---
    def begin_run(self, manifest: str, settings: dict, settings_hash: str, model_hash: str, cluster: str) -> int:
        cur = self.db.execute(
            "INSERT INTO runs (started, manifest, settings, settings_hash, model_hash, cluster, measured, state) "
            "VALUES (?, ?, ?, ?, ?, ?, 0, 'running')",
            (time.time(), manifest, json.dumps(settings, sort_keys=True), settings_hash, model_hash, cluster))
        return int(cur.lastrowid)

    def end_run(self, run_id: int, state: str) -> None:
        self.db.execute("UPDATE runs SET finished = ?, state = ? WHERE run_id = ?", (time.time(), state, run_id))

    def latest_run(self) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM runs ORDER BY run_id DESC LIMIT 1")
        return rows[0] if rows else None

    # --- scans (cached by path, spacing given, size and mtime) ---
    def cached_scan(self, path: str, spacing_given: str, size: int, mtime_ns: int) -> dict | None:
        rows = self.query("SELECT * FROM scans WHERE path = ? AND spacing_given = ? AND size = ? AND mtime_ns = ?",
                          (path, spacing_given, size, mtime_ns))
        return dict(rows[0]) if rows else None

    def save_scan(self, scan: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO scans VALUES (:path, :spacing_given, :size, :mtime_ns, :sha256, "
                        ":spacing_mm, :status, :joints)", scan)

    # --- the current plan: replaced as a whole by each run ---
    def write_plan(self, run_id: int, visits: list[dict], patients: list[dict], plan: list[dict]) -> None:
        with self.transaction():
            for table in ("visits", "patients", "plan"):
                self.db.execute(f"DELETE FROM {table}")
            self.db.executemany("INSERT INTO visits VALUES (:patient, :visit, :date, :line, :image, :site, "
                                ":is_repeat, :status, :note, :sha256, :spacing_mm, :visit_index)", visits)
            self.db.executemany("INSERT INTO patients VALUES (:patient, :status, :baseline, :n_visits, "
                                ":joints_source)", patients)
            self.db.executemany("INSERT INTO plan VALUES (:patient, :joint, :from_visit, :to_visit, :kind, "
                                ":input_hash)", plan)
            self.db.execute("UPDATE runs SET planned = ? WHERE run_id = ?", (len(plan), run_id))

    def current(self, settings_hash: str, model_hash: str) -> dict[tuple, sqlite3.Row]:
        """Measurements valid for the current plan: {(patient, joint, from, to): row}."""
        rows = self.query(
            "SELECT m.* FROM measurements m JOIN plan p ON m.patient = p.patient AND m.joint = p.joint "
            "AND m.from_visit = p.from_visit AND m.to_visit = p.to_visit AND m.input_hash = p.input_hash "
            "WHERE m.settings_hash = ? AND m.model_hash = ?", (settings_hash, model_hash))
        return {(r["patient"], r["joint"], r["from_visit"], r["to_visit"]): r for r in rows}

    def save_measurements(self, rows: list[dict], run_id: int) -> None:
        """One pair's joints in one transaction (a replaced stale row keeps its key)."""
        cols = ", ".join(MEASUREMENT_COLUMNS)
        marks = ", ".join(":" + c for c in MEASUREMENT_COLUMNS)
        with self.transaction():
            self.db.executemany(f"INSERT OR REPLACE INTO measurements ({cols}) VALUES ({marks})", rows)
            self.db.execute("UPDATE runs SET measured = measured + ? WHERE run_id = ?", (len(rows), run_id))


class _Transaction:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, tb):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        return False
