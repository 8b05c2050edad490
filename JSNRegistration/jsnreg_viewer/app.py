"""`jsnreg-viewer [BASELINE FOLLOWUP] [--demo] [--screenshot FILE.png [--run]]`."""

from __future__ import annotations

import argparse
import sys

WINDOW_SIZE = (1600, 1000)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jsnreg-viewer",
        description="Measure joint space narrowing between two hand radiographs: open them, click "
                    "the joints on the baseline, register, review.")
    parser.add_argument("baseline", nargs="?", help="baseline radiograph (DICOM, PNG, TIFF, NRRD)")
    parser.add_argument("followup", nargs="?", help="follow-up radiograph")
    parser.add_argument("--demo", action="store_true",
                        help="open the built-in synthetic hand pair with its ten joints placed")
    parser.add_argument("--session", help="open a saved session (.json)")
    parser.add_argument("--screenshot", metavar="FILE.png",
                        help="render the window to a PNG and exit (for documentation and checks)")
    parser.add_argument("--run", action="store_true", help="with --screenshot: register all joints first")
    args = parser.parse_args(argv)
    if (args.baseline is None) != (args.followup is None) and not args.session:
        parser.error("give both BASELINE and FOLLOWUP, or neither")
    if args.run and not args.screenshot:
        parser.error("--run goes with --screenshot (in the window, press F5)")
    return args


def make_window(args: argparse.Namespace):
    """The main window with what the arguments ask for opened."""
    from .main_window import MainWindow

    window = MainWindow()
    window.resize(*WINDOW_SIZE)
    if args.demo:
        window.open_demo()
    elif args.session:
        window.open_session(args.session)
    elif args.baseline:
        if window.open_image("baseline", args.baseline):
            window.open_image("followup", args.followup)
    return window


def screenshot(window, path: str, run: bool) -> int:
    """Render the window to `path` (after registering every joint when `run`); exit status."""
    from PyQt5 import QtCore, QtWidgets

    window.show()
    if run:
        loop = QtCore.QEventLoop()
        window.runFinished.connect(loop.quit)
        if window.run():
            loop.exec_()
        if window.last_outcome != "succeeded":
            return 1
    for _ in range(3):  # let layouts and pyqtgraph settle before grabbing
        QtWidgets.QApplication.processEvents()
    if not window.grab().save(str(path), "PNG"):
        print(f"jsnreg-viewer: cannot write {path}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from PyQt5 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("JSNRegistration")
    window = make_window(args)
    if args.screenshot:
        return screenshot(window, args.screenshot, args.run)
    window.show()
    return app.exec_()


if __name__ == "__main__":
    sys.exit(main())
