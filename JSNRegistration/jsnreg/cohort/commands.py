"""The `jsnreg cohort ...` subcommands (argparse only: dask is imported by the commands that run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..measure_options import add_measure_options


def cmd_run(args) -> int:
    from ..measure_options import measure_settings
    from .run import run_cohort
    from .status import print_status

    counts = run_cohort(args.manifest, args.store, workers=args.workers, scheduler=args.scheduler,
                        settings=measure_settings(args),
                        memory_limit=args.memory_limit, progress=not args.no_progress)
    for e in counts["errors"]:
        print(f"not stored: {e}")
    print(f"{counts['planned']} joint measurements planned: {counts['already']} already in the store, "
          f"{counts['measured']} measured now, {counts['failed']} failed with a reason, "
          f"{counts['pending']} left pending")
    print_status(args.store)
    return 0


def cmd_status(args) -> int:
    from .status import print_status

    print_status(args.store)
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    files = write_report(args.store, Path(args.out))
    print("written: " + ", ".join(str(f) for f in files))
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), workers=args.workers, n_patients=args.patients, seed=args.seed)
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench

    run_bench(Path(args.out), n_patients=args.patients)
    return 0


def add_cohort_command(sub) -> None:
    c = sub.add_parser("cohort", help="many patients and visits on Dask: run, status, report, demo, bench")
    cs = c.add_subparsers(dest="cohort_command", required=True)

    r = cs.add_parser("run", help="measure a cohort manifest into a resumable store")
    r.add_argument("manifest", help="CSV: patient, date, image[, spacing_mm, joints, repeat, site]")
    r.add_argument("--store", required=True, help="the SQLite store (created if absent; a rerun resumes)")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=2, help="local Dask worker processes (default 2)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing dask.distributed scheduler, "
                       "e.g. tcp://10.0.0.5:8786 (workers must see the images at the manifest's paths)")
    r.add_argument("--memory-limit", default="2GB", help="per local worker (default 2GB)")
    add_measure_options(r)
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    s = cs.add_parser("status", help="done / pending / failed (with reasons) in a store")
    s.add_argument("store")
    s.set_defaults(func=cmd_status)

    rep = cs.add_parser("report", help="tables (CSV, Parquet) and an offline HTML summary of a store")
    rep.add_argument("store")
    rep.add_argument("--out", required=True)
    rep.set_defaults(func=cmd_report)

    d = cs.add_parser("demo", help="generate a small cohort with known progression and run it end to end")
    d.add_argument("--out", default="cohort-demo")
    d.add_argument("--workers", type=int, default=2)
    d.add_argument("--patients", type=int, default=12)
    d.add_argument("--seed", type=int, default=12, help="the generated cohort's seed (rates, visit dates)")
    d.set_defaults(func=cmd_demo)

    b = cs.add_parser("bench", help="joints per second with 1 and 2 workers, overhead per task, extrapolation")
    b.add_argument("--out", default="cohort-bench")
    b.add_argument("--patients", type=int, default=3)
    b.set_defaults(func=cmd_bench)
