"""All-or-nothing outputs of one command: every file is written into a hidden staging folder
inside the output folder and moved into place together at the end (renames only, with Ctrl-C held
off), so an interrupted or failed run leaves the previous run's files as they were and never a mix.

Outputs of an earlier run that this run does not write again (a report.pdf of a run with --report,
the pictures of a joint no longer measured) are removed at the same moment, so the folder always
holds exactly one run. A staging folder left by a killed process (kill -9) is removed by the next run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from .errors import InputError
from .validate import output_dir

STAGING_PREFIX = ".jsnreg-staging-"
# The file recording which files the last run wrote (so the next one can remove what it does not rewrite).
LISTING = ".jsnreg-outputs"


def file_mode() -> int:
    """The mode an ordinary new file gets under the current umask (temporary files are 0600)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def _sigint_held():
    """Defer Ctrl-C while the renames run (main thread only; elsewhere nothing to hold)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = signal.signal(signal.SIGINT, lambda *a: pending.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending and callable(previous):
            previous(*pending[0])


class StagedOutputs:
    """Files of one run, staged in `out_dir/.jsnreg-staging-*` until `commit()`.

    Use as a context manager: leaving it without commit (an error, Ctrl-C) removes the staging
    folder and leaves `out_dir` untouched.
    """

    def __init__(self, out_dir):
        self.out_dir = output_dir(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.out_dir.glob(STAGING_PREFIX + "*"):
                shutil.rmtree(stale, ignore_errors=True)
            self.dir = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out_dir))
        except OSError as exc:
            raise InputError(f"cannot write in the output folder {out_dir}: {exc.strerror or exc}") from None
        self.committed = False

    def path(self, name: str) -> Path:
        """Where to write the output `name` (a plain file name) for now."""
        if Path(name).name != name or name in ("", ".", ".."):
            raise InputError(f"output name {name!r} is not a plain file name")
        return self.dir / name

    def commit(self, owned: tuple[str, ...] = ()) -> list[Path]:
        """Move every staged file into the output folder and drop the earlier run's leftovers
        (files the last run listed, and the `owned` names, when this run does not write them)."""
        names = sorted(p.name for p in self.dir.iterdir())
        listing = self.out_dir / LISTING
        try:
            previous = set(listing.read_text(encoding="utf-8").split("\n")) if listing.is_file() else set()
        except (OSError, UnicodeDecodeError):
            previous = set()
        if listing.is_file() or (self.out_dir / "results.json").is_file():  # a folder jsnreg wrote before:
            previous |= set(owned)  # never a stranger's file of the same name
        mode = file_mode()
        try:
            for name in names:
                os.chmod(self.dir / name, mode)
            (self.dir / LISTING).write_text("\n".join(names), encoding="utf-8")
            with _sigint_held():
                for name in names:
                    os.replace(self.dir / name, self.out_dir / name)
                for name in previous - set(names):
                    if name and Path(name).name == name and not name.startswith("."):
                        with contextlib.suppress(OSError):
                            (self.out_dir / name).unlink()
                os.replace(self.dir / LISTING, listing)
        except OSError as exc:
            raise InputError(f"cannot write the outputs in {self.out_dir}: {exc.strerror or exc}") from None
        self.committed = True
        return [self.out_dir / n for n in names]

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
