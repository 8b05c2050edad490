"""Drives one `python -m jsnreg.worker request.json` process and turns its output into callbacks.

The process object is injected and only needs QProcess's interface: start(program, args), kill(),
readAllStandardOutput(), readAllStandardError(), exitCode(), and the signals
readyReadStandardOutput, finished, errorOccurred (`.connect(callable)`, as in Slicer's PythonQt).
Everything here runs on the thread that owns the process (Slicer's GUI thread), so callbacks may
touch MRML and widgets.
"""

from __future__ import annotations

import enum
import json
from typing import Callable

FAILED_TO_START = 0  # QProcess::FailedToStart
STDERR_TAIL_CHARS = 2000


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
    """One run of the worker: progress, finished, error and cancelled callbacks, and cancel()."""

    def __init__(self, process, on_progress: Callable[[int, int, str], None],
                 on_finished: Callable[[str], None], on_error: Callable[[str], None],
                 on_cancelled: Callable[[], None]):
        self.process = process
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
        if self.running:
            raise RuntimeError("a run is already in progress")
        self.state, self.program = RunState.RUNNING, program
        self._buffer, self._outcome = b"", None
        self.process.start(program, args)

    def cancel(self) -> None:
        """Kill the worker; on_cancelled follows when the process has ended."""
        if self.state == RunState.RUNNING:
            self.state = RunState.CANCELLING
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
        elif event["event"] in ("finished", "error"):
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
        if self.state == RunState.CANCELLING:
            self.state = RunState.CANCELLED
            self.on_cancelled()
        elif self._outcome and self._outcome["event"] == "finished" and self.process.exitCode() == 0:
            self.state = RunState.FINISHED
            self.on_finished(str(self._outcome["out_dir"]))
        elif self._outcome and self._outcome["event"] == "error":
            self.state = RunState.FAILED
            self.on_error(str(self._outcome.get("message", "the worker failed")))
        else:
            self.state = RunState.FAILED
            stderr = _as_bytes(self.process.readAllStandardError()).decode("utf-8", errors="replace")
            self.on_error(f"the worker stopped (exit code {self.process.exitCode()}) without a result"
                          + (f":\n{stderr[-STDERR_TAIL_CHARS:].strip()}" if stderr.strip() else ""))
