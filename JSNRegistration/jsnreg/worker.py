"""`python -m jsnreg.worker`: one job (jsnreg.job) or one report in its own process.

    python -m jsnreg.worker REQUEST.json [--cancel-file PATH]    measure (jsnreg.job.run)
    python -m jsnreg.worker --report RUN_DIR OUT.pdf              the PDF report of a finished run

stdout carries only JSON lines, one event each:
    {"event": "progress", "done": k, "total": n, "joint": name}   after each joint
    {"event": "finished", "out_dir": path, "joints": n, "flagged": [names]}
    {"event": "finished", "report": path}                          (report)
    {"event": "cancelled"}
    {"event": "error", "message": text}
Exit code 0 = finished, 2 = bad input (the message says what to fix), 3 = cancelled, 1 = any other
failure (the traceback goes to stderr, never to stdout).

Cancel is cooperative: the caller creates the cancel file and the job stops before the next joint,
writing nothing (its files are written atomically at the end). Killing the process is the
caller's last resort: under 3D Slicer the process started is the `PythonSlicer` launcher, and
killing it does not stop the Python child that does the work.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

# Before numpy loads, as in cli.py: the joints' small matrix products are faster on one BLAS thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .errors import InputError  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_CANCELLED = 0, 1, 2, 3
USAGE = "usage: python -m jsnreg.worker REQUEST.json [--cancel-file PATH] | --report RUN_DIR OUT.pdf"


def read_request(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"request file not found: {path}") from None
    except (OSError, ValueError, RecursionError) as exc:  # also 5000-digit numbers and deep nesting
        raise InputError(f"cannot read request {path}: {' '.join(str(exc).split())[:200]}") from None


def write_report(run_dir: str, pdf_path: str) -> str:
    """The session report of a finished run as PDF (radiographs read again); returns its path."""
    from . import report
    from .job import session_from_run

    if not pdf_path.lower().endswith(".pdf"):
        raise InputError(f"the report is a PDF: {pdf_path} should end in .pdf")
    report.write_report_pdf(session_from_run(run_dir), pdf_path)
    return str(Path(pdf_path).resolve())


def main(argv: list[str] | None = None, out=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Events go to the real stdout; anything a library prints goes to stderr instead, so the
    # caller's line parser only ever sees events.
    out = out or sys.stdout
    saved_stdout, sys.stdout = sys.stdout, sys.stderr

    def emit(event: dict) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    try:
        if len(argv) == 3 and argv[0] == "--report":
            emit({"event": "finished", "report": write_report(argv[1], argv[2])})
            return EXIT_OK
        if len(argv) == 3 and argv[1] == "--cancel-file":
            cancel_file = Path(argv[2])
        elif len(argv) == 1 and not argv[0].startswith("--"):
            cancel_file = None
        else:
            raise InputError(USAGE)
        from . import job
        from .forked import default_workers
        from .quantify import Cancelled

        request = read_request(argv[0])
        try:
            summary = job.run(request,
                              on_progress=lambda k, n, name: emit({"event": "progress", "done": k, "total": n,
                                                                   "joint": name}),
                              should_cancel=None if cancel_file is None else cancel_file.exists,
                              workers=default_workers())
        except Cancelled:
            emit({"event": "cancelled"})
            return EXIT_CANCELLED
        emit({"event": "finished", "out_dir": str(Path(request["out_dir"]).resolve()),
              "joints": len(summary["results"]),
              "flagged": [r["name"] for r in summary["results"] if r["flagged"]]})
        return EXIT_OK
    except InputError as exc:
        emit({"event": "error", "message": str(exc)})
        return EXIT_INPUT
    except Exception as exc:  # any other failure: a message for the user, the traceback for us
        traceback.print_exc(file=sys.stderr)
        emit({"event": "error", "message": f"{type(exc).__name__}: {exc}"})
        return EXIT_FAILED
    finally:
        sys.stdout = saved_stdout


if __name__ == "__main__":
    from .heap import keep_freed_memory

    keep_freed_memory()
    sys.exit(main())
