"""Drives one `python -m jsnreg.worker ...` process and turns its output into callbacks.

The process object is injected and only needs QProcess's interface: start(program, args), kill(),
readAllStandardOutput(), readAllStandardError(), exitCode(), and the signals
readyReadStandardOutput, finished, errorOccurred (`.connect(callable)`, as in Slicer's PythonQt).
So is `schedule(seconds, callback)`, a single-shot timer (qt.QTimer.singleShot in Slicer).
Everything here runs on the thread that owns the process (Slicer's GUI thread), so callbacks may
touch MRML and widgets.

Cancel is cooperative: the runner creates the worker's cancel file, the worker stops before the
next joint. The process is killed only when it has not ended `kill_after_s` later: Slicer starts
the `PythonSlicer` launcher, and killing it leaves its Python child running (that child still
sees the cancel file and stops at the next joint).
"""

from __future__ import annotations

import enum
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

FAILED_TO_START = 0  # QProcess::FailedToStart
STDERR_TAIL_CHARS = 2000
KILL_AFTER_S = 20.0  # one joint takes about a second; loading the network a few
CANCEL_FILE = "cancel"


def new_run_folder(base: str) -> str:
    """A new, unique folder for one run (two runs in the same second never share one)."""
    os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix="run-", dir=base)


def measure_arguments(request_path: str) -> list:
    """The worker's arguments for a measurement; its cancel file sits beside the request."""
    return ["-m", "jsnreg.worker", str(request_path), "--cancel-file",
            str(Path(request_path).parent / CANCEL_FILE)]


def report_arguments(run_dir: str, pdf_path: str) -> list:
    return ["-m", "jsnreg.worker", "--report", str(run_dir), str(pdf_path)]


def python_path_with(folder: str, python_path: str) -> str:
    """PYTHONPATH with `folder` (the one holding the core package) first, for the worker process."""
    return os.pathsep.join([str(folder)] + [p for p in (python_path or "").split(os.pathsep) if p and p != str(folder)])


class RunState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    CANCELLING = "cancelling"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _as_bytes(data) -> bytes:
    """QByteArray (PythonQt: .data()) or bytes -> bytes."""
    return data.data() if hasattr(data, "data") else bytes(data)


def parse_event(line: str) -> dict | None:
    """One worker event, or None for a line that is not one (the worker promises there are none)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


class WorkerRunner:
    """One run of the worker: progress, finished (the run folder, or the report's path), error and
    cancelled callbacks, and cancel()."""

    def __init__(self, process, on_progress: Callable[[int, int, str], None],
                 on_finished: Callable[[str], None], on_error: Callable[[str], None],
                 on_cancelled: Callable[[], None], schedule: Callable[[float, Callable], None] | None = None,
                 kill_after_s: float = KILL_AFTER_S):
        self.process = process
        self.schedule, self.kill_after_s = schedule, kill_after_s
        self.cancel_file: Path | None = None
        self.on_progress, self.on_finished = on_progress, on_finished
        self.on_error, self.on_cancelled = on_error, on_cancelled
        self.state = RunState.IDLE
        self.program = ""
        self._buffer = b""
        self._outcome: dict | None = None  # the worker's finished or error event
        self.ignored_lines: list[str] = []
        process.readyReadStandardOutput.connect(self._read_output)
        process.finished.connect(self._process_finished)
        process.errorOccurred.connect(self._process_error)

    @property
    def running(self) -> bool:
        return self.state in (RunState.RUNNING, RunState.CANCELLING)

    def start(self, program: str, args: list[str]) -> None:
        """Start the worker; a `--cancel-file PATH` among args is what cancel() creates."""
        if self.running:
            raise RuntimeError("a run is already in progress")
        args = list(args)
        self.cancel_file = Path(args[args.index("--cancel-file") + 1]) if "--cancel-file" in args else None
        if self.cancel_file is not None and self.cancel_file.exists():
            self.cancel_file.unlink()  # left by an earlier cancelled run in the same folder
        self.state, self.program = RunState.RUNNING, program
        self._buffer, self._outcome = b"", None
        self.process.start(program, args)

    def cancel(self) -> None:
        """Ask the worker to stop (cancel file), kill it only if it has not ended in time;
        on_cancelled follows when the process has ended."""
        if self.state != RunState.RUNNING:
            return
        self.state = RunState.CANCELLING
        if self.cancel_file is None or self.schedule is None:
            self.process.kill()  # nothing cooperative to ask for
            return
        self.cancel_file.touch()
        self.schedule(self.kill_after_s, self._kill_if_still_cancelling)

    def _kill_if_still_cancelling(self) -> None:
        if self.state == RunState.CANCELLING:
            self.process.kill()

    def _read_output(self, *_signal_args) -> None:
        self._buffer += _as_bytes(self.process.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            self._handle_line(raw.decode("utf-8", errors="replace").strip())

    def _handle_line(self, line: str) -> None:
        if not line:
            return
        event = parse_event(line)
        if event is None:
            self.ignored_lines.append(line)
        elif event["event"] == "progress" and self.state == RunState.RUNNING:
            self.on_progress(int(event["done"]), int(event["total"]), str(event.get("joint", "")))
        elif event["event"] in ("finished", "error", "cancelled"):
            self._outcome = event

    def _process_error(self, error, *_signal_args) -> None:
        # Only a failed start has no `finished` signal after it; other errors end in `finished`.
        if int(error) == FAILED_TO_START and self.running:
            self.state = RunState.FAILED
            self.on_error(f"could not start the worker ({self.program}): is it installed?")

    def _process_finished(self, *_signal_args) -> None:
        if not self.running:
            return
        self._read_output()
        self._handle_line(self._buffer.decode("utf-8", errors="replace").strip())
        self._buffer = b""
        outcome = (self._outcome or {}).get("event")
        if self.state == RunState.CANCELLING or outcome == "cancelled":
            # Also when the worker ended its last joint before it saw the cancel file: the
            # user asked to stop, so nothing is shown.
            self.state = RunState.CANCELLED
            self.on_cancelled()
        elif outcome == "finished" and self.process.exitCode() == 0:
            self.state = RunState.FINISHED
            self.on_finished(str(self._outcome.get("out_dir") or self._outcome.get("report")))
        elif outcome == "error":
            self.state = RunState.FAILED
            self.on_error(str(self._outcome.get("message", "the worker failed")))
        else:
            self.state = RunState.FAILED
            stderr = _as_bytes(self.process.readAllStandardError()).decode("utf-8", errors="replace")
            self.on_error(f"the worker stopped (exit code {self.process.exitCode()}) without a result"
                          + (f":\n{stderr[-STDERR_TAIL_CHARS:].strip()}" if stderr.strip() else ""))
