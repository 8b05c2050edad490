"""The Slicer side of the Logic: MRML nodes <-> the core's request and results, the worker process.

The one part of the Lib that needs Slicer (slicer, qt, vtk); imported only by the module file's
Logic, inside Slicer. Every decision it takes is a pure function in the other Lib modules,
tested without Slicer; this file only moves data between them and the scene.
"""

import json
import logging
import os
import shutil
from functools import partial
from pathlib import Path

import qt
import slicer
import vtk
from slicer.i18n import tr as _

from . import conversions, display
from .dependencies import missing_requirements
from .detection import detected_points, detected_record, joint_sources
from .naming import auto_joint_label
from .runner import WorkerRunner, measure_arguments, new_run_folder, python_path_with, report_arguments

MODULE_DIR = str(Path(__file__).resolve().parents[1])  # holds the core package `jsnreg`
DETECTED_ATTRIBUTE = "JSNRegistration.detected"  # on the point list: {name: RAS} as the detector placed them


def not_ready_reason(p) -> str:
    """Why Run is not possible yet with parameter node `p` ("" when it is)."""
    if not p.baselineVolume or not p.followupVolume:
        return _("Select the baseline and the follow-up radiograph")
    if p.baselineVolume == p.followupVolume:
        return _("Baseline and follow-up must be different radiographs")
    if not p.joints or p.joints.GetNumberOfControlPoints() == 0:
        return _("Place at least one joint on the baseline")
    return ""


def ensure_dependencies(requirements_file: str) -> bool:
    """Install what the core needs on first use, after asking; True when everything is there.
    No torch: the core runs its network in numpy (torch only trains it)."""
    if hasattr(slicer, "packaging") and hasattr(slicer.packaging, "pip_ensure"):  # Slicer 5.12+ asks itself
        slicer.packaging.pip_ensure(slicer.packaging.load_requirements(requirements_file), requester="JSNRegistration")
        return True
    missing = missing_requirements(Path(requirements_file).read_text(encoding="utf-8"))
    question = _("JSN Registration needs the Python packages {names}. Install them now?")
    if missing:
        if not slicer.util.confirmOkCancelDisplay(question.format(names=", ".join(missing))):
            return False
        slicer.util.pip_install(missing)
    return True


def matrix(volume_node, getter: str):
    m = vtk.vtkMatrix4x4()
    getattr(volume_node, getter)(m)
    return slicer.util.arrayFromVTKMatrix(m)


def joint_labels(markups_node) -> list:
    return [markups_node.GetNthControlPointLabel(i) for i in range(markups_node.GetNumberOfControlPoints())]


def placing_into(markups_node) -> bool:
    """True while the user places points into this node with the mouse."""
    interaction = slicer.app.applicationLogic().GetInteractionNode()
    return (interaction.GetCurrentInteractionMode() == interaction.Place and
            slicer.app.applicationLogic().GetSelectionNode().GetActivePlaceNodeID() == markups_node.GetID())


def name_defined_joint(markups_node, index: int) -> None:
    """Label point `index` (the event's call data) with the first standard joint not yet used,
    if the user placed it."""
    label = auto_joint_label(joint_labels(markups_node), index, markups_node.GetName(), placing_into(markups_node),
                             markups_node.GetControlPointLabelFormat())
    if label is not None:
        markups_node.SetNthControlPointLabel(index, label)


def joint_entries(markups_node, baseline_volume, zoom_xy) -> list:
    """The request's joints: control point labels and RAS positions -> the core's baseline pixels."""
    if baseline_volume.GetParentTransformNode() is not None:
        raise ValueError(_("The baseline radiograph is under a transform: harden or remove it first."))
    names = joint_labels(markups_node)
    points_ras = slicer.util.arrayFromMarkupsControlPoints(markups_node, world=True)
    image = conversions.volume_to_image(slicer.util.arrayFromVolume(baseline_volume))
    xy = conversions.joint_xy(points_ras, matrix(baseline_volume, "GetRASToIJKMatrix"), image.shape, names, zoom_xy)
    detected = json.loads(markups_node.GetAttribute(DETECTED_ATTRIBUTE) or "{}")
    return conversions.joint_entries(names, xy, joint_sources(names, points_ras, detected))


def detect_joints(baseline_volume, markups_node, spacing_given_mm: float) -> list:
    """Put the joints found on the baseline into the point list (after asking, when it has points),
    named and marked as detected; returns the points. The baseline is read as the core reads it
    (bone bright, its grid). Detection needs no torch and took 0.65 s on the demo hand (1200 x 960 px,
    generated), so it runs here, on the GUI thread, under the wait cursor."""
    from jsnreg.images import read_radiograph

    if baseline_volume is None:
        raise ValueError(_("Select the baseline radiograph first."))
    image = read_radiograph(volume_file(baseline_volume, slicer.app.temporaryPath), spacing_mm=spacing_given_mm or None)
    points = detected_points(image.pixels, image.spacing_mm, conversions.core_zoom_xy(baseline_volume.GetSpacing(),
                                                                                      spacing_given_mm),
                             matrix(baseline_volume, "GetIJKToRASMatrix"))
    if markups_node.GetNumberOfControlPoints() and not slicer.util.confirmOkCancelDisplay(
            _("Replace the {count} points of {name} with the {found} joints detected?").format(
                count=markups_node.GetNumberOfControlPoints(), name=markups_node.GetName(), found=len(points))):
        return []
    markups_node.RemoveAllControlPoints()
    markups_node.SetAttribute(DETECTED_ATTRIBUTE, json.dumps(detected_record(points)))
    for point in points:  # added from here, so auto-naming leaves the detector's names alone
        index = markups_node.AddControlPoint(vtk.vtkVector3d(*point["ras"]), point["name"])
        description = _("detected, confidence {c:.2f}").format(c=point["confidence"])
        markups_node.SetNthControlPointDescription(index, description)
    return points


def volume_file(volume_node, folder: str) -> str:
    """A file holding the volume's pixels: its own file or DICOM instance, else an export."""
    storage = volume_node.GetStorageNode()
    uids = (volume_node.GetAttribute("DICOM.instanceUIDs") or "").split()
    dicom_files = [slicer.dicomDatabase.fileForInstance(uid) for uid in uids] if slicer.dicomDatabase else []
    path = conversions.source_file(storage.GetFileName() if storage else None, volume_node.GetModifiedSinceRead(),
                                   dicom_files)
    if path is None:
        path = os.path.join(folder, volume_node.GetID() + ".nrrd")
        # exportNode (5.2+) leaves the node's own storage untouched; saveNode repoints it.
        if not getattr(slicer.util, "exportNode", slicer.util.saveNode)(volume_node, path):
            raise RuntimeError(_("Could not write {name} to {path}").format(name=volume_node.GetName(), path=path))
    return path


def start_worker(args: list, on_progress, on_finished, on_error, on_cancelled) -> WorkerRunner:
    """Start `PythonSlicer <args>` with the core importable; callbacks arrive on the GUI thread."""
    program = shutil.which("PythonSlicer") or shutil.which("PythonSlicer.exe")
    if program is None:
        raise RuntimeError(_("PythonSlicer was not found next to Slicer: cannot start the worker"))
    process = qt.QProcess()
    env = qt.QProcessEnvironment.systemEnvironment()
    env.insert("PYTHONPATH", python_path_with(MODULE_DIR, env.value("PYTHONPATH")))
    process.setProcessEnvironment(env)
    runner = WorkerRunner(process, on_progress, on_finished, on_error, on_cancelled,
                          schedule=lambda seconds, f: qt.QTimer.singleShot(int(seconds * 1000), f))
    runner.start(program, args)
    logging.info(f"JSNRegistration: worker started: {' '.join(args)}")
    return runner


def start_run(p, on_progress, on_finished, on_error, on_cancelled) -> WorkerRunner:
    """Write the request of parameter node `p` into a new run folder, start the worker."""
    folder = new_run_folder(os.path.join(slicer.app.temporaryPath, "JSNRegistration"))
    zoom_xy = conversions.core_zoom_xy(p.baselineVolume.GetSpacing(), p.spacingMm)
    request = conversions.build_request(
        volume_file(p.baselineVolume, folder), volume_file(p.followupVolume, folder),
        joint_entries(p.joints, p.baselineVolume, zoom_xy), os.path.join(folder, "result"), p.roiMm, p.refine,
        p.spacingMm)
    request_path = os.path.join(folder, "request.json")
    with open(request_path, "w", encoding="utf-8") as f:
        json.dump(request, f, indent=1)
    return start_worker(measure_arguments(request_path), on_progress, on_finished, on_error, on_cancelled)


def run_zoom_xy(baseline_volume, run_dir: str):
    """The baseline volume's pixel grid -> the core's, as it was for this run (see core_zoom_xy)."""
    from jsnreg.job import read_summary

    return conversions.core_zoom_xy(baseline_volume.GetSpacing(), read_summary(run_dir).get("spacing_mm_given"))


def start_report(run_dir: str, pdf_path: str, on_finished, on_error, on_cancelled) -> WorkerRunner:
    """The PDF report of a finished run, written by the worker (no torch in Slicer's process)."""
    return start_worker(report_arguments(run_dir, pdf_path), lambda *a: None, on_finished, on_error, on_cancelled)


def fill_table(table_node, results) -> None:
    table = vtk.vtkTable()
    for name, kind, values in display.table_columns(results):
        column = vtk.vtkStringArray() if kind == "text" else vtk.vtkDoubleArray()
        column.SetName(name)
        for v in values:
            column.InsertNextValue(v)
        table.AddColumn(column)
    table_node.SetAndObserveTable(table)
    table_node.SetUseColumnTitleAsColumnHeader(True)
    table_node.SetLocked(True)


def wait_for_run(start, timeout_s: float) -> str:
    """Block in a local event loop until the worker that start(on_finished, on_error, on_cancelled)
    starts has ended; returns the run folder (RuntimeError otherwise). Cancels after timeout_s."""
    outcome, loop = {}, qt.QEventLoop()

    def finish(key, value=None):
        outcome[key] = value
        loop.quit()

    runner = start(lambda d: finish("out_dir", d), lambda m: finish("error", m), lambda: finish("cancelled"))
    qt.QTimer.singleShot(int(timeout_s * 1000), runner.cancel)
    if runner.running:
        loop.exec_()
    if "out_dir" not in outcome:
        raise RuntimeError(_("The run did not finish: {outcome}").format(outcome=outcome))
    return outcome["out_dir"]


def show_results(table_node, markups_node, results) -> None:
    fill_table(table_node, results)
    mark_flagged(markups_node, results)
    show_table_layout(table_node)


def mark_flagged(markups_node, results) -> None:
    """Flagged joints drawn unselected (another colour), their reason as the point's description."""
    marks = display.flag_marks(results)
    for i, label in enumerate(joint_labels(markups_node)):
        markups_node.SetNthControlPointSelected(i, label not in marks)
        markups_node.SetNthControlPointDescription(i, marks.get(label, ""))


def show_table_layout(table_node) -> None:
    """A slice view above the table, as SegmentStatistics shows its table."""
    layout_manager = slicer.app.layoutManager()
    layout_node = layout_manager.layoutLogic().GetLayoutNode()
    if not layout_node.IsLayoutDescription(display.TABLE_LAYOUT_ID):
        layout_node.AddLayoutDescription(display.TABLE_LAYOUT_ID, display.TABLE_LAYOUT_XML)
    layout_manager.setLayout(display.TABLE_LAYOUT_ID)
    slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table_node.GetID())
    slicer.app.applicationLogic().PropagateTableSelection()


def overlay_volume(name: str, image, ijk_to_ras):
    """Create or update the scalar volume `name` from a 2-D image placed by ijk_to_ras."""
    node = slicer.mrmlScene.GetFirstNodeByName(name)
    if node is None:
        node = slicer.util.addVolumeFromArray(conversions.image_to_volume(image), name=name)
    else:
        slicer.util.updateVolumeFromArray(node, conversions.image_to_volume(image))
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras))
    return node


def show_joint(baseline_volume, result, overlay: str, zoom_xy) -> None:
    """A joint's overlays as volumes placed over the baseline where its ROI was cut, composed in
    the slice views (the ROI sits on the core's grid; zoom_xy leads back to the volume's)."""
    from jsnreg import rois

    pos = result.position
    roi_to_image = partial(rois.roi_to_image, centre_xy=pos["baseline_xy"], size_px=pos["roi_size_px"],
                           angle_rad=pos["baseline_angle_rad"])
    affine = conversions.roi_affine_xy(roi_to_image, pos["roi_size_px"])
    ijk_to_ras = conversions.roi_ijk_to_ras(matrix(baseline_volume, "GetIJKToRASMatrix"), affine, zoom_xy)
    images, layers, nodes = display.overlay_images(result.images), display.slice_layers(overlay), {}
    for key in filter(None, (layers["background"], layers["foreground"])):
        node = overlay_volume(f"JSN {result.name} {key}", images[key], ijk_to_ras)
        display_node = node.GetDisplayNode()
        display_node.SetAutoWindowLevel(False)
        display_node.SetWindowLevelMinMax(*display.display_range(result.images, key))
        if key in display.LOSS_OVERLAYS:
            display_node.SetAndObserveColorNodeID(display.LOSS_COLOR_NODE_ID)
        nodes[key] = node
    slicer.util.setSliceViewerLayers(background=nodes[layers["background"]], foreground=nodes.get(layers["foreground"]),
                                     foregroundOpacity=layers["foreground_opacity"], fit=True, rotateToVolumePlane=True)
