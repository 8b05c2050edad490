"""The main window: composes the views over one Workspace and runs the engine in the background.

Every user action becomes a Workspace call; views are redrawn from the workspace when it reports
a change. Errors reach the user as message boxes (InputError's message as it is).
"""

from __future__ import annotations

from pathlib import Path

from PyQt5 import QtCore, QtGui, QtWidgets

from jsnreg.errors import InputError
from jsnreg.joints import STANDARD_JOINTS, load_joints_json, next_joint_name
from jsnreg.quantify import Settings
from jsnreg.report import write_report_html, write_report_pdf, write_results_csv
from jsnreg.session import load_session, save_session

from . import model
from .image_view import RadiographView, dicom_info_html
from .model import IMAGES, JOINTS, RESULTS, Workspace
from .review import ReviewPanel
from .table import ResultsTable
from .worker import QuantifyWorker, start_worker

IMAGE_FILTER = "Radiographs (*.dcm *.dicom *.png *.tif *.tiff *.bmp *.nrrd *.mha *.mhd);;All files (*)"
APP_TITLE = "JSNRegistration"


class MainWindow(QtWidgets.QMainWindow):
    runFinished = QtCore.pyqtSignal(str)  # "succeeded", "cancelled" or "failed"

    def __init__(self, workspace: Workspace | None = None):
        super().__init__()
        self.setWindowTitle(APP_TITLE)
        self.setAcceptDrops(True)
        self.settings = Settings()
        self.selected: str | None = None
        self.worker: QuantifyWorker | None = None
        self.thread: QtCore.QThread | None = None
        self.last_outcome = ""

        self.views = {"baseline": RadiographView("Baseline", "#00e0ff"),
                      "followup": RadiographView("Follow-up", "#ffa000")}
        self.table = ResultsTable()
        self.review = ReviewPanel()
        self.progress = QtWidgets.QProgressBar()
        self.progress.setFormat("%v / %m joints")
        self.progress.setMaximumWidth(220)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)  # until a run gives it a count
        self.next_name = QtWidgets.QComboBox()
        self.next_name.setEditable(True)
        self.next_name.addItems(STANDARD_JOINTS)
        self.next_name.setToolTip("Name of the joint the next click on the baseline places")
        self.link = QtWidgets.QCheckBox("Link zoom/pan")
        self.link.setChecked(True)
        self._build_layout()
        self._build_actions()

        self.views["baseline"].clicked.connect(self.add_joint)
        self.views["baseline"].markerMoved.connect(self._move_joint)
        self.views["followup"].markerMoved.connect(self._move_followup)
        for view in self.views.values():
            view.markerMenu.connect(self._marker_menu)
            view.markerSelected.connect(self.select)
        self.table.jointSelected.connect(self.select)
        self.link.toggled.connect(self._link_views)
        self._link_views(True)
        self.set_workspace(workspace or Workspace())
        self._set_running(False)

    # -- layout ---------------------------------------------------------------------------
    def _build_layout(self) -> None:
        images = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        images.addWidget(self.views["baseline"])
        images.addWidget(self.views["followup"])
        lower = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        lower.addWidget(self.table)
        lower.addWidget(self.review)
        lower.setSizes([780, 820])
        main = QtWidgets.QSplitter(QtCore.Qt.Vertical)
        main.addWidget(images)
        main.addWidget(lower)
        main.setSizes([540, 460])
        self.setCentralWidget(main)

    def _build_actions(self) -> None:
        def action(menu, text, slot, shortcut=None):
            a = menu.addAction(text)
            a.triggered.connect(lambda *_: slot())
            if shortcut:
                a.setShortcut(shortcut)
            return a

        bar = self.menuBar()
        f = bar.addMenu("&File")
        action(f, "Open &baseline…", lambda: self.choose_image("baseline"), "Ctrl+O")
        action(f, "Open &follow-up…", lambda: self.choose_image("followup"), "Ctrl+Shift+O")
        action(f, "Open &demo pair", self.open_demo)
        f.addSeparator()
        action(f, "Open &session…", self.choose_session)
        action(f, "&Save session…", self.save_session_as, "Ctrl+S")
        action(f, "Export &report…", self.export_report)
        action(f, "Export table as &CSV…", self.export_csv)
        f.addSeparator()
        action(f, "&Quit", self.close, "Ctrl+Q")
        j = bar.addMenu("&Joints")
        action(j, "&Load joints file…", self.choose_joints_file)
        self.detect_action = action(j, "&Detect joints", self.detect_joints, "Ctrl+D")
        action(j, "&Rename selected…", lambda: self.rename(self.selected))
        action(j, "&Delete selected", lambda: self.delete(self.selected), "Del")
        action(j, "Let the engine &find the follow-up position", lambda: self.reset_followup(self.selected))
        r = bar.addMenu("&Run")
        self.run_all_action = action(r, "Register &all joints", self.run, "F5")
        self.run_sel_action = action(r, "Register &selected joints", self.run_selected, "Shift+F5")
        self.cancel_action = action(r, "&Cancel", self.cancel, "Esc")

        tools = self.addToolBar("Run")
        tools.setMovable(False)
        tools.addWidget(QtWidgets.QLabel(" Next joint: "))
        tools.addWidget(self.next_name)
        tools.addSeparator()
        for a in (self.run_all_action, self.run_sel_action, self.cancel_action):
            tools.addAction(a)
        tools.addWidget(self.progress)
        tools.addSeparator()
        tools.addWidget(self.link)
        copy = QtWidgets.QPushButton("Copy table")
        copy.setToolTip("Copy the measured joints (the selected ones, if any) as tab-separated text")
        copy.clicked.connect(self.copy_table)
        copy_shortcut = QtWidgets.QShortcut(QtGui.QKeySequence.Copy, self.table)
        copy_shortcut.activated.connect(self.copy_table)
        tools.addWidget(copy)

    def _link_views(self, on: bool) -> None:
        self.views["followup"].link_to(self.views["baseline"] if on else None)

    # -- messages -------------------------------------------------------------------------
    def show_error(self, message: str) -> None:
        QtWidgets.QMessageBox.warning(self, APP_TITLE, message)

    def ask_spacing_mm(self, path: str) -> float | None:
        value, ok = QtWidgets.QInputDialog.getDouble(
            self, "Pixel spacing needed", f"{Path(path).name} records no pixel spacing.\n"
            "Enter it in mm per pixel (from the detector or the DICOM header):", 0.1, 0.001, 5.0, 4)
        return value if ok else None

    def _save_name(self, title: str, suffix: str, filters: str) -> str | None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, title, f"jsnreg{suffix}", filters)
        return path or None

    # -- workspace ------------------------------------------------------------------------
    def set_workspace(self, workspace: Workspace) -> None:
        self.ws = workspace
        self.selected = None
        self.ws.subscribe(self._on_change)
        for what in (IMAGES, JOINTS, RESULTS):
            self._on_change(what)

    def _on_change(self, what: str) -> None:
        if what == IMAGES:
            self._show_images()
        if self.selected is not None and self.selected not in self.ws.names():
            self.selected = None
        if what in (JOINTS, RESULTS):
            self._show_joints()

    def _show_images(self) -> None:
        for side in model.SIDES:
            image = self.ws.images[side]
            if image is None:
                continue
            shown = self.ws.followup_view() if side == "followup" else image
            info = dicom_info_html(image.meta.get("path", ""), image.spacing_mm, image.meta)
            if shown is not image and shown.spacing_mm != image.spacing_mm:
                info += f" · shown at the baseline's {shown.spacing_mm:.4f} mm"
            self.views[side].set_image(shown.pixels, info)

    def _show_joints(self) -> None:
        names = self.ws.names()
        self.views["baseline"].set_markers({j.name: (j.x, j.y) for j in self.ws.joints}, self.selected)
        follow = {n: xy for n in names if (xy := self.ws.followup_xy(n)) is not None}
        self.views["followup"].set_markers(follow, self.selected)
        self.table.set_rows(self.ws.table_rows(), self.selected)
        self.review.show_result(self.ws.results.get(self.selected) if self.selected else None)
        if self.next_name.currentText() in names or not self.next_name.currentText().strip():
            self.next_name.setCurrentText(next_joint_name(names))

    def select(self, name: str | None) -> None:
        self.selected = name
        self._show_joints()

    def _guard(self, call, *args) -> bool:
        """Run a workspace edit; an InputError becomes a message. True when it went through."""
        try:
            call(*args)
            return True
        except InputError as exc:
            self.show_error(str(exc))
            self._show_joints()  # put a refused drag back where it was
            return False

    # -- joints ---------------------------------------------------------------------------
    def add_joint(self, x: float, y: float) -> None:
        name = self.next_name.currentText().strip()
        if self._guard(self.ws.add_joint, x, y, name):
            self.select(name)

    def _move_joint(self, name: str, x: float, y: float) -> None:
        self._guard(self.ws.move_joint, name, x, y)

    def _move_followup(self, name: str, x: float, y: float) -> None:
        self._guard(self.ws.set_followup_xy, name, (x, y))

    def rename(self, name: str | None) -> None:
        if name is None:
            return
        free = [n for n in STANDARD_JOINTS if n not in self.ws.names()]
        new, ok = QtWidgets.QInputDialog.getItem(self, "Rename joint", f"New name for {name}:",
                                                 [name] + free, 0, True)
        if ok and self._guard(self.ws.rename_joint, name, new):
            self.select(new.strip())

    def delete(self, name: str | None) -> None:
        if name is not None:
            self._guard(self.ws.remove_joint, name)

    def reset_followup(self, name: str | None) -> None:
        if name is not None:
            self._guard(self.ws.set_followup_xy, name, None)

    def _marker_menu(self, name: str, screen_pos) -> None:
        self.select(name)
        menu = QtWidgets.QMenu(self)
        menu.addAction(f"Rename {name}…", lambda: self.rename(name))
        menu.addAction(f"Delete {name}", lambda: self.delete(name))
        if self.ws.joint(name).followup_xy is not None:
            menu.addAction("Let the engine find it in the follow-up", lambda: self.reset_followup(name))
        menu.exec_(screen_pos)

    # -- files ----------------------------------------------------------------------------
    def open_image(self, side: str, path: str) -> bool:
        try:
            image = model.open_radiograph(path, self.ask_spacing_mm)
        except InputError as exc:
            self.show_error(str(exc))
            return False
        except Exception as exc:  # an unreadable file must not take the viewer down
            self.show_error(f"Cannot open {path} ({type(exc).__name__}): {exc}")
            return False
        if image is None:
            return False
        self.ws.set_image(side, image)
        if side == "baseline" and not self.ws.joints:
            self.detect_joints(quiet=True)
        return True

    def detect_joints(self, quiet: bool = False) -> bool:
        """Place the detected joints on the baseline (the user's own joints stay). When `quiet`
        (on opening) a failure goes to the status bar instead of a message box."""
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.WaitCursor)
        try:
            added = self.ws.detect_joints()
        except InputError as exc:
            self.statusBar().showMessage(f"Joint detection: {exc}")
            if not quiet:
                self.show_error(f"Joint detection: {exc}")
            return False
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
        self.statusBar().showMessage(f"{len(added)} joints detected" + (f": {', '.join(added)}" if added else "")
                                     + " (drag a marker to correct it)")
        return True

    def choose_image(self, side: str) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, f"Open {side}", "", IMAGE_FILTER)
        if path:
            self.open_image(side, path)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if len(paths) >= 2:
            if self.open_image("baseline", paths[0]):
                self.open_image("followup", paths[1])
        elif paths:
            over = self.views["followup"].rect().contains(self.views["followup"].mapFrom(self, event.pos()))
            self.open_image("followup" if over else "baseline", paths[0])

    def open_demo(self) -> None:
        try:
            self.set_workspace(model.demo_workspace())
        except InputError as exc:
            self.show_error(str(exc))

    def choose_session(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open session", "", "Sessions (*.json)")
        if path:
            self.open_session(path)

    def open_session(self, path: str) -> None:
        try:
            workspace, warnings = model.from_core_session(load_session(path))
        except InputError as exc:
            self.show_error(str(exc))
            return
        self.set_workspace(workspace)
        if warnings:
            self.show_error("Opened with warnings:\n" + "\n".join(warnings))

    def save_session_as(self) -> None:
        path = self._save_name("Save session", ".session.json", "Sessions (*.json)")
        if path:
            self._guard(lambda: save_session(model.to_core_session(self.ws, self.settings), path))

    def export_report(self) -> None:
        path = self._save_name("Export report", ".pdf", "PDF report (*.pdf);;HTML report (*.html)")
        if path:
            write = write_report_html if path.lower().endswith((".html", ".htm")) else write_report_pdf
            self._guard(lambda: write(model.to_core_session(self.ws, self.settings), path))

    def export_csv(self) -> None:
        path = self._save_name("Export table", ".csv", "CSV (*.csv)")
        if path:
            self._guard(write_results_csv, self.ws.measured(), path)

    def copy_table(self) -> str:
        return self.table.copy_to_clipboard(self.ws.measured())

    def choose_joints_file(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Load joints", "", "Joints (*.json)")
        if path:
            self._guard(lambda: self.ws.set_joints(load_joints_json(path)))

    # -- running --------------------------------------------------------------------------
    def run_selected(self) -> None:
        self.run(self.table.selected_names() or ([self.selected] if self.selected else []))

    def run(self, names: list[str] | None = None) -> bool:
        """Register the named joints (all when None) in the background; False if it cannot start."""
        if self.worker is not None:
            return False
        if not self.ws.ready():
            self.show_error("Open a baseline and a follow-up radiograph first.")
            return False
        specs = self.ws.specs(names)
        if not specs:
            self.show_error("Place a joint first: click on it in the baseline." if names is None
                            else "Select the joints to register in the table.")
            return False
        self.run_specs = specs
        self.worker = QuantifyWorker(self.ws.baseline, self.ws.followup, specs, self.settings)
        self.worker.progress.connect(self._progress)
        self.worker.succeeded.connect(self._succeeded)
        self.worker.cancelled.connect(lambda message: self._ended("cancelled", f"Cancelled: {message}"))
        self.worker.failed.connect(self._failed)
        self.worker.done.connect(self._done)
        self.progress.setRange(0, len(specs))
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self._set_running(True)
        self.statusBar().showMessage(f"Registering {len(specs)} joint(s)…")
        self.thread = start_worker(self.worker, self)
        return True

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.statusBar().showMessage("Cancelling after the current joint…")

    def _progress(self, done: int, total: int, name: str) -> None:
        self.progress.setValue(done)
        self.statusBar().showMessage(f"Registered {name} ({done} of {total})")

    def _succeeded(self, results) -> None:
        self.ws.set_results(results, self.run_specs)
        if self.selected is None and results:
            self.select(results[0].name)
        self._ended("succeeded", f"Registered {len(results)} joint(s).")

    def _failed(self, message: str) -> None:
        self._ended("failed", "Registration failed.")
        self.show_error(message)

    def _ended(self, outcome: str, message: str) -> None:
        self.last_outcome = outcome
        self.statusBar().showMessage(message)

    def _done(self) -> None:
        self.worker = self.thread = None
        self._set_running(False)
        self.runFinished.emit(self.last_outcome)

    def _set_running(self, running: bool) -> None:
        self.run_all_action.setEnabled(not running)
        self.run_sel_action.setEnabled(not running)
        self.detect_action.setEnabled(not running)
        self.cancel_action.setEnabled(running)

    def closeEvent(self, event) -> None:
        if self.thread is not None:
            self.worker.cancel()
            self.thread.wait()
        super().closeEvent(event)
