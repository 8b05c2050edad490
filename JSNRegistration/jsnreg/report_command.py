"""The `jsnreg report` subcommand's arguments, apart from report.py so that building the command
line parser imports nothing heavy (the report stack loads only when the command runs)."""

from __future__ import annotations

import argparse


def _run(args) -> int:
    from .report import run_report_command

    return run_report_command(args)


def add_report_command(subparsers) -> argparse.ArgumentParser:
    """Register `jsnreg report SESSION --out report.pdf [--html] [--csv] [--deidentify]`."""
    p = subparsers.add_parser("report", help="write the PDF/HTML report and results table of a session")
    p.add_argument("session", help="session file (.json)")
    p.add_argument("--out", help="PDF report")
    p.add_argument("--html", help="self-contained HTML report")
    p.add_argument("--csv", help="results table (CSV)")
    p.add_argument("--deidentify", action="store_true",
                   help="leave out names, IDs, birth date, dates and file names (the interval is kept)")
    p.set_defaults(func=_run)
    return p
