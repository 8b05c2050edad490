"""`python -m jsnreg.worker REQUEST.json`: one job (jsnreg.job) in its own process.

stdout carries only JSON lines, one event each:
    {"event": "progress", "done": k, "total": n, "joint": name}   after each joint
    {"event": "finished", "out_dir": path, "joints": n, "flagged": [names]}
    {"event": "error", "message": text}
Exit code 0 = finished, 2 = bad input (the message says what to fix), 1 = any other failure
(the traceback goes to stderr, never to stdout). Cancel = the caller kills the process: the job's
files are written atomically at the end, so a killed run leaves nothing half-written.
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

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2


def read_request(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"request file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read request {path}: {exc}") from None


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
        if len(argv) != 1:
            raise InputError("usage: python -m jsnreg.worker REQUEST.json")
        from . import job

        request = read_request(argv[0])
        summary = job.run(request,
                          on_progress=lambda k, n, name: emit({"event": "progress", "done": k, "total": n,
                                                               "joint": name}))
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
    sys.exit(main())
