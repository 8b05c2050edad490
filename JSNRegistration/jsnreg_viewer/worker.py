"""Registration in a background thread: jsnreg.quantify with progress and cancel, as Qt signals."""

from __future__ import annotations

import threading

from PyQt5 import QtCore

from jsnreg.errors import InputError
from jsnreg.images import Radiograph
from jsnreg.joints import JointSpec
from jsnreg.quantify import Cancelled, Settings, quantify
from jsnreg.register import Engine


class QuantifyWorker(QtCore.QObject):
    """Runs one quantify call; emits exactly one of succeeded / cancelled / failed, then done.

    Lives in its own QThread (see `start_worker`); the signals reach the GUI thread queued.
    """

    progress = QtCore.pyqtSignal(int, int, str)  # done, total, joint just finished
    succeeded = QtCore.pyqtSignal(object)  # list[JointResult]
    cancelled = QtCore.pyqtSignal(str)
    failed = QtCore.pyqtSignal(str)  # message for the user
    done = QtCore.pyqtSignal()

    def __init__(self, baseline: Radiograph, followup: Radiograph, joints: list[JointSpec],
                 settings: Settings | None = None):
        super().__init__()
        self.baseline, self.followup, self.joints = baseline, followup, joints
        self.settings = settings
        self._stop = threading.Event()

    def cancel(self) -> None:
        """Ask the run to stop; quantify checks between joints."""
        self._stop.set()

    @QtCore.pyqtSlot()
    def run(self) -> None:
        try:
            results = quantify(self.baseline, self.followup, self.joints, self.settings,
                               engine=Engine.load(), on_progress=self.progress.emit,
                               should_cancel=self._stop.is_set)
        except Cancelled as exc:
            self.cancelled.emit(str(exc))
        except InputError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # any engine failure reaches the user as a message, not a crash
            self.failed.emit(f"The registration failed ({type(exc).__name__}): {exc}")
        else:
            self.succeeded.emit(results)
        finally:
            # Freed in the GUI thread, not this one: destroyed here, the worker would disconnect from the
            # QThread's `started`, whose disconnectNotify (a PyQt virtual) waits for the GIL while holding
            # Qt's connection lock, which the GUI thread, holding the GIL, may be waiting for (a deadlock
            # seen once in a test run: the GUI thread connecting a new marker's signals).
            self.moveToThread(QtCore.QCoreApplication.instance().thread())
            self.done.emit()


def start_worker(worker: QuantifyWorker, parent: QtCore.QObject) -> QtCore.QThread:
    """Move `worker` to a new thread and start it; the thread quits and both are freed (in the GUI thread)
    when done."""
    thread = QtCore.QThread(parent)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    # direct: quit must also reach a thread the GUI thread is blocked waiting for (closing)
    worker.done.connect(thread.quit, QtCore.Qt.DirectConnection)
    worker.done.connect(worker.deleteLater)
    thread.finished.connect(thread.deleteLater)
    thread.start()
    return thread
