"""The desktop viewer over the real engine: clicks, background runs, cancel, errors, review, files."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("pytestqt")
from PyQt5 import QtCore, QtGui, QtWidgets  # noqa: E402

from jsnreg.images import write_png  # noqa: E402
from jsnreg.quantify import quantify  # noqa: E402
from jsnreg.report import read_results_csv  # noqa: E402
from jsnreg.session import save_session  # noqa: E402
from jsnreg_viewer import app, model  # noqa: E402
from jsnreg_viewer.main_window import MainWindow  # noqa: E402

RUN_JOINTS = ("MCP2", "PIP3")  # two joints (in placement order) keep the runs short
RUN_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def demo():
    """The demo workspace (synthetic pair written as DICOM, ten joints placed)."""
    return model.demo_workspace()


@pytest.fixture(scope="module")
def core_results(demo, engine):
    """What the core gives for RUN_JOINTS, called directly."""
    return quantify(demo.baseline, demo.followup, demo.specs(list(RUN_JOINTS)), engine=engine)


@pytest.fixture
def window(qtbot, demo):
    ws = model.Workspace()
    ws.set_image("baseline", demo.baseline)
    ws.set_image("followup", demo.followup)
    w = MainWindow(ws)
    w.resize(1400, 900)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


@pytest.fixture
def messages(monkeypatch):
    """Message boxes the viewer shows, captured instead of blocking."""
    shown = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning", lambda parent, title, text, *a: shown.append(text))
    return shown


def click_image(qtbot, view, x, y):
    """A real mouse click on the view's widget at image pixel (x, y)."""
    scene_pos = view.viewbox.mapViewToScene(QtCore.QPointF(x, y))
    widget_pos = view.graphics.mapFromScene(scene_pos)
    qtbot.mouseClick(view.graphics.viewport(), QtCore.Qt.LeftButton, pos=widget_pos)


def run_and_wait(qtbot, window, names=None):
    with qtbot.waitSignal(window.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        assert window.run(names)
    return blocker.args[0]


def table_column(window, header):
    col = [h for _, h in model.COLUMNS].index(header)
    return {window.table.item(r, 0).text(): window.table.item(r, col).text()
            for r in range(window.table.rowCount())}


def test_clicks_place_joints_and_run_matches_core(qtbot, window, demo, core_results, messages):
    view = window.views["baseline"]
    for name in RUN_JOINTS:
        window.next_name.setCurrentText(name)
        click_image(qtbot, view, demo.joint(name).x, demo.joint(name).y)
    assert window.ws.names() == list(RUN_JOINTS)
    for name in RUN_JOINTS:  # a click lands within a screen pixel of the aimed position
        placed, aimed = window.ws.joint(name), demo.joint(name)
        assert abs(placed.x - aimed.x) < 2 and abs(placed.y - aimed.y) < 2
    # put them exactly where the core run had them (a drag ends with this same call)
    for name in RUN_JOINTS:
        view.markerMoved.emit(name, demo.joint(name).x, demo.joint(name).y)
    assert window.next_name.currentText() not in RUN_JOINTS  # the next default moved on

    assert run_and_wait(qtbot, window) == "succeeded"
    assert messages == []
    jsn_cells = table_column(window, "JSN (mm)")
    for expected in core_results:
        got = window.ws.results[expected.name]
        assert got.table_row() == pytest.approx(expected.table_row())
        assert jsn_cells[expected.name] == model.format_value("jsn_mm", expected.jsn_mm)
        # the follow-up marker sits where the engine found the joint
        marker = window.views["followup"].markers[expected.name]
        assert tuple(marker.pos()) == pytest.approx(tuple(expected.position["followup_xy"]))
    assert window.run_all_action.isEnabled() and not window.cancel_action.isEnabled()
    assert window.progress.value() == len(RUN_JOINTS)


def test_the_worker_is_freed_in_the_gui_thread(qtbot, demo):
    """Freed in its own thread it could deadlock with the GUI thread (see worker.QuantifyWorker.run)."""
    import threading

    from PyQt5 import sip

    from jsnreg_viewer.worker import QuantifyWorker, start_worker

    parent = QtCore.QObject()
    worker = QuantifyWorker(demo.baseline, demo.followup, demo.specs(["MCP2"]))
    freed_in_main = []
    worker.destroyed.connect(lambda: freed_in_main.append(threading.current_thread() is threading.main_thread()),
                             QtCore.Qt.DirectConnection)
    with qtbot.waitSignal(worker.succeeded, timeout=RUN_TIMEOUT_MS):
        thread = start_worker(worker, parent)
    qtbot.waitUntil(lambda: bool(freed_in_main) and sip.isdeleted(thread), timeout=10_000)  # the thread freed too
    assert freed_in_main == [True]


def test_review_shows_the_results_images_on_one_scale(qtbot, window, demo, core_results):
    ws = window.ws
    ws.set_joints(demo.specs(list(RUN_JOINTS)))
    ws.set_results(core_results, demo.specs(list(RUN_JOINTS)))
    result = core_results[0]
    window.table.select_joint(result.name)
    window.table.jointSelected.emit(result.name)
    review = window.review
    assert review.result is result
    review.tile.setValue(8)
    np.testing.assert_allclose(review.compare_image.image, result.images.checkerboard(8))
    assert review.before_image.levels is not None
    np.testing.assert_allclose(review.before_image.getLevels(), review.after_image.getLevels())
    assert f"{result.mse_after:.5f}" in review.heading.text()
    review.mode.setCurrentText("Blend")
    review.alpha.setValue(0)
    np.testing.assert_allclose(review.compare_image.image, result.images.fixed)
    review.bone.setCurrentText("Upper bone")
    upper = result.images.loss_map("upper", after=True)
    np.testing.assert_array_equal(np.isnan(review.after_image.image), np.isnan(upper))
    x, y = review.split_lines[0].getData()
    assert len(x) == result.images.fixed.shape[1] and 0 < np.mean(y) < result.images.fixed.shape[0]


def test_cancel_mid_run_leaves_a_consistent_state(qtbot, window, demo, core_results, messages):
    ws = window.ws
    ws.set_joints(demo.specs(list(RUN_JOINTS) + ["PIP4"]))
    ws.set_results(core_results[:1], demo.specs(list(RUN_JOINTS[:1])))
    before = dict(ws.results)
    done = []

    def cancel_after_first(value):  # the progress bar advances in the GUI thread per joint
        if value > 0:
            done.append(value)
            window.cancel()

    window.progress.valueChanged.connect(cancel_after_first)
    assert run_and_wait(qtbot, window) == "cancelled"
    assert 1 <= len(done) < 3  # stopped between joints, before the last
    assert ws.results == before  # nothing partial stored, nothing lost
    assert window.worker is None and window.run_all_action.isEnabled()
    assert not window.cancel_action.isEnabled()
    assert messages == []  # a cancel is not an error
    assert "Cancelled" in window.statusBar().currentMessage()


def test_bad_files_and_missing_spacing_are_handled(qtbot, window, tmp_path, messages, monkeypatch):
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    assert not window.open_image("baseline", str(bad))
    assert len(messages) == 1 and "broken.dcm" in messages[0]
    assert window.ws.baseline.meta.get("path") != str(bad)  # the open image stays

    png = tmp_path / "nospacing.png"
    write_png(png, np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(64, 48))
    asked = []
    monkeypatch.setattr(window, "ask_spacing_mm", lambda path: asked.append(path) or 0.15)
    assert window.open_image("followup", str(png))
    assert asked and window.ws.followup.spacing_mm == pytest.approx(0.15)
    monkeypatch.setattr(window, "ask_spacing_mm", lambda path: None)  # the user gives up
    assert not window.open_image("baseline", str(png))
    assert len(messages) == 1

    window.ws.set_joints([])
    assert not window.run()
    assert "joint" in messages[-1].lower()


def test_joint_edits_drop_stale_results(demo, core_results):
    ws = model.Workspace()
    specs = demo.specs(list(RUN_JOINTS))
    ws.set_joints(specs)
    ws.set_results(core_results, specs)
    first, second = RUN_JOINTS
    ws.rename_joint(first, "DIP2")
    assert ws.results["DIP2"].name == "DIP2" and first not in ws.results
    with pytest.raises(model.InputError):
        ws.rename_joint("DIP2", second)
    ws.set_followup_xy(second, (10.0, 20.0))
    assert second not in ws.results and ws.followup_xy(second) == (10.0, 20.0)
    assert ws.specs([second])[0].followup_xy == (10.0, 20.0)
    ws.move_joint("DIP2", 1.0, 2.0)
    assert ws.results == {}
    # a result whose joint moved while it ran is not stored
    ws.set_results(core_results[:1], specs[:1])
    assert ws.results == {}
    assert [row["joint"] for row in ws.table_rows()] == ["DIP2", second]


def test_session_csv_and_clipboard_round_trip(qtbot, window, demo, core_results, tmp_path, messages,
                                              monkeypatch):
    ws = window.ws
    specs = demo.specs(list(RUN_JOINTS))
    ws.set_joints(specs)
    ws.set_results(core_results, specs)
    path = tmp_path / "case.session.json"
    save_session(model.to_core_session(ws, window.settings), path)
    window.open_session(str(path))
    assert messages == []
    assert window.ws is not ws and window.ws.names() == list(RUN_JOINTS)
    for expected in core_results:
        got = window.ws.results[expected.name]
        assert got.table_row() == pytest.approx(expected.table_row())
        assert got.images is not None  # rebuilt for review without registering again

    csv_path = tmp_path / "table.csv"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: (str(csv_path), ""))
    window.export_csv()
    rows = read_results_csv(csv_path)
    assert [r["joint"] for r in rows] == list(RUN_JOINTS)
    assert rows[0]["jsn_mm"] == pytest.approx(core_results[0].jsn_mm)

    text = window.copy_table()
    assert QtWidgets.QApplication.clipboard().text() == text
    lines = text.strip().split("\n")
    assert len(lines) == 1 + len(RUN_JOINTS) and lines[0].startswith("joint\tjsn_mm")


def test_screenshot_writes_a_picture_of_the_demo(qtbot, tmp_path):
    out = tmp_path / "viewer.png"
    assert app.main(["--demo", "--screenshot", str(out)]) == 0
    image = QtGui.QImage(str(out))
    assert image.width() >= 1000 and image.height() >= 600
    grey = np.array([QtGui.qGray(image.pixel(x, y)) for x in range(0, image.width(), 25)
                     for y in range(0, image.height(), 25)])
    assert grey.std() > 20  # not blank: radiographs, markers, panels
    for widget in QtWidgets.QApplication.topLevelWidgets():
        widget.close()


def test_command_line_is_checked():
    with pytest.raises(SystemExit):
        app.parse_args(["only_one.dcm"])
    with pytest.raises(SystemExit):
        app.parse_args(["--demo", "--run"])
    assert app.parse_args(["a.dcm", "b.dcm"]).followup == "b.dcm"


def test_detect_joints_action_places_editable_markers(qtbot, window, messages):
    from jsnreg.joints import STANDARD_JOINTS

    window.detect_action.trigger()
    assert messages == []
    assert window.ws.names() == list(STANDARD_JOINTS)
    assert {j.source for j in window.ws.joints} == {"detected"}
    assert set(window.views["baseline"].markers) == set(STANDARD_JOINTS)
    confidences = {j.name: j.detect_confidence for j in window.ws.joints}
    assert table_column(window, "Placed") == {n: f"detected {c:.2f}" for n, c in confidences.items()}
    mcp2 = window.ws.joint("MCP2")
    window.views["baseline"].markerMoved.emit("MCP2", mcp2.x + 4.0, mcp2.y)  # what a drag sends
    assert window.ws.joint("MCP2").moved and table_column(window, "Placed")["MCP2"] == "detected, moved"
    moved_to = (window.ws.joint("MCP2").x, window.ws.joint("MCP2").y)
    window.ws.remove_joint("PIP3")
    window.detect_action.trigger()  # again: the user's move stays, the deleted joint comes back
    assert (window.ws.joint("MCP2").x, window.ws.joint("MCP2").y) == moved_to
    assert "PIP3" in window.ws.names()
    assert model.to_core_session(window.ws, window.settings).joints[0].source == "detected"


def test_opening_a_baseline_detects_its_joints(qtbot, demo, tmp_path, messages, monkeypatch):
    w = MainWindow(model.Workspace())
    qtbot.addWidget(w)
    assert w.open_image("baseline", demo.baseline.meta["path"])
    assert len(w.ws.joints) == 14 and "14 joints detected" in w.statusBar().currentMessage()
    noise = tmp_path / "noise.png"
    write_png(noise, np.random.default_rng(0).random((400, 300)))
    w2 = MainWindow(model.Workspace())
    qtbot.addWidget(w2)
    monkeypatch.setattr(w2, "ask_spacing_mm", lambda path: 0.2)
    assert w2.open_image("baseline", str(noise))  # opened; detection says why it found nothing
    assert w2.ws.joints == [] and messages == [] and "no hand" in w2.statusBar().currentMessage()
    w2.detect_action.trigger()
    assert len(messages) == 1 and "no hand" in messages[0]
