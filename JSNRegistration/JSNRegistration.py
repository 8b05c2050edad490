"""3D Slicer module JSNRegistration: joint space narrowing between two hand radiographs.

A thin face over the core package `jsnreg`: the registration runs in a worker subprocess
(`PythonSlicer -m jsnreg.worker request.json`), so Slicer never freezes; everything that can be
tested without Slicer lives in JSNRegistrationLib and in the core. Heavy imports (the core, torch)
happen inside Logic methods, never when Slicer loads the module.
"""

import importlib
import importlib.util
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

# The folder this module file sits in holds the core package too (<root>/JSNRegistration/jsnreg).
REPOSITORY_ROOT = Path(__file__).resolve().parent
LOSS_COLOR_NODE_ID = "vtkMRMLColorTableNodeFileViridis.txt"  # the core's figures use viridis too
TABLE_LAYOUT_ID = 17301  # a slice view above the per-joint table
TABLE_LAYOUT_XML = """<layout type="vertical" split="true">
 <item splitSize="700"><view class="vtkMRMLSliceNode" singletontag="Red">
  <property name="orientation" action="default">Axial</property>
  <property name="viewlabel" action="default">R</property>
  <property name="viewcolor" action="default">#F34A33</property></view></item>
 <item splitSize="300"><view class="vtkMRMLTableViewNode" singletontag="TableView1">
  <property name="viewlabel" action="default">T</property></view></item>
</layout>"""


def ensureCoreImportable():
    """Make `jsnreg` importable: when it is not installed, use the repository's copy next to us."""
    if importlib.util.find_spec("jsnreg") is None and (REPOSITORY_ROOT / "jsnreg").is_dir():
        sys.path.insert(0, str(REPOSITORY_ROOT))


ensureCoreImportable()


class JSNRegistration(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "JSN Registration"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = ["Markups"]
        self.parent.contributors = ["JSNRegistration developers"]
        self.parent.helpText = f"""
Joint space narrowing (JSN) in rheumatoid arthritis from a baseline and a follow-up hand radiograph,
by per-bone registration of each joint.<br>
1. Load both radiographs (DICOM module or drag and drop) and pick them as Baseline and Follow-up.<br>
2. Click the joints on the baseline; each point's label is the joint's name (IP1, MCP1-5, PIP2-5 by
default).<br>
3. Run: the registration runs in the background; Cancel stops it.<br>
4. Read the table (JSN in mm, positive = narrower at follow-up; flagged joints need a look), pick a
joint to see its checkerboard and before/after difference maps; export the report or save the scene.<br>
The module uses the Python package <code>jsnreg</code>. When it is not installed in Slicer's Python,
the module uses the copy in its repository ({REPOSITORY_ROOT}), added to the Python path.
Missing Python packages are installed on the first Run, after asking.
"""
        self.parent.acknowledgementText = """
Method after Wang et al., Computerized Medical Imaging and Graphics 108 (2023) 102273, and Ou et al.,
IEEE JBHI 27(1) 2023. Module structure after Slicer's scripted module template.
"""


@parameterNodeWrapper
class JSNRegistrationParameterNode:
    baselineVolume: vtkMRMLScalarVolumeNode
    followupVolume: vtkMRMLScalarVolumeNode
    joints: vtkMRMLMarkupsFiducialNode
    spacingMm: Annotated[float, WithinRange(0.0, 5.0)] = 0.0  # 0 = the files' own spacing
    roiMm: Annotated[float, WithinRange(8.0, 60.0)] = 22.0
    refine: bool = True
    resultTable: vtkMRMLTableNode
    resultFolder: str = ""


class JSNRegistrationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Wires the panel to the Logic; holds the run state (through the runner) and nothing else."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedJoints = None
        self._runner = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/JSNRegistration.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = JSNRegistrationLogic()

        from JSNRegistrationLib.display import OVERLAYS
        for key, label in OVERLAYS.items():
            self.ui.overlayComboBox.addItem(label, key)
        self.ui.placeWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.placeWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceMultipleMarkups

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.jointComboBox.connect("currentIndexChanged(int)", self.onShowJoint)
        self.ui.overlayComboBox.connect("currentIndexChanged(int)", self.onShowJoint)
        self.ui.showTableButton.connect("clicked(bool)", self.onShowTable)
        self.ui.exportReportButton.connect("clicked(bool)", self.onExportReport)
        self.ui.saveSceneButton.connect("clicked(bool)", lambda: slicer.util.openSaveDataDialog())
        self.initializeParameterNode()

    def cleanup(self):
        if self._runner is not None:
            self._runner.cancel()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)

    def onSceneStartClose(self, caller, event):
        if self._runner is not None:
            self._runner.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.joints:
            self._parameterNode.joints = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Joints")

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
        self._updateGUI()

    def _observeJoints(self, markupsNode):
        """New control points get the next standard joint name as their label."""
        if self._observedJoints is markupsNode:
            return
        if self._observedJoints is not None:
            self.removeObserver(self._observedJoints, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                                self._onPointDefined)
        self._observedJoints = markupsNode
        if markupsNode is not None:
            self.addObserver(markupsNode, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                             self._onPointDefined)

    def _onPointDefined(self, caller, event):
        self.logic.nameNewestJoint(caller)

    def _updateGUI(self, caller=None, event=None):
        """Buttons and their tooltips from the parameter node and the run state."""
        p = self._parameterNode
        self._observeJoints(p.joints if p else None)
        self.ui.placeWidget.setCurrentNode(p.joints if p else None)
        running = self._runner is not None and self._runner.running
        reason = self.logic.notReadyReason(p) if p else "no parameter node"
        self.ui.applyButton.text = "Cancel" if running else "Run"
        self.ui.applyButton.enabled = running or not reason
        self.ui.applyButton.toolTip = ("Stop the registration" if running
                                       else reason or "Measure the joints (runs in the background)")
        self.ui.inputsCollapsibleButton.enabled = not running
        self.ui.progressBar.visible = running
        hasResults = bool(p and p.resultFolder and self.logic.results)
        for button in (self.ui.exportReportButton, self.ui.showTableButton):
            button.enabled = hasResults and not running
            button.toolTip = "" if hasResults else "Run first"

    def onApplyButton(self):
        if self._runner is not None and self._runner.running:
            self._runner.cancel()
            self.ui.statusLabel.text = "Cancelling..."
            return
        with slicer.util.tryWithErrorDisplay("Could not start the registration.", waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = "Reading the radiographs and loading the network..."
            self._runner = self.logic.start(self._parameterNode, self._onProgress, self._onFinished,
                                            self._onError, self._onCancelled)
        self._updateGUI()

    def _onProgress(self, done, total, joint):
        self.ui.progressBar.maximum = total
        self.ui.progressBar.value = done
        self.ui.statusLabel.text = f"Measured {joint} ({done} of {total})"

    def _onFinished(self, outDir):
        with slicer.util.tryWithErrorDisplay("Could not show the results.", waitCursor=True):
            results = self.logic.showResults(self._parameterNode, outDir)
            flagged = sum(r.flagged for r in results)
            self.ui.statusLabel.text = f"{len(results)} joints measured, {flagged} flagged"
            self.ui.resultsTableView.setMRMLTableNode(self._parameterNode.resultTable)
            self.ui.jointComboBox.clear()
            for r in results:
                self.ui.jointComboBox.addItem(r.name + ("  (flagged)" if r.flagged else ""), r.name)
        self._updateGUI()

    def _onError(self, message):
        self.ui.statusLabel.text = "Failed"
        slicer.util.errorDisplay(message, windowTitle="JSN Registration")
        self._updateGUI()

    def _onCancelled(self):
        self.ui.statusLabel.text = "Cancelled: nothing was changed"
        self._updateGUI()

    def onShowJoint(self, _index=None):
        name = self.ui.jointComboBox.currentData
        overlay = self.ui.overlayComboBox.currentData
        if name and overlay:
            with slicer.util.tryWithErrorDisplay("Could not show the joint.", waitCursor=True):
                self.logic.showJoint(self._parameterNode, name, overlay)

    def onShowTable(self):
        self.logic.showTableLayout(self._parameterNode.resultTable)

    def onExportReport(self):
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), "Export report", "jsn_report.pdf",
                                              "PDF (*.pdf)")
        if path:
            with slicer.util.tryWithErrorDisplay("Could not export the report.", waitCursor=True):
                self.logic.exportReport(self._parameterNode.resultFolder, path)
                slicer.util.infoDisplay(f"Report written to {path}", windowTitle="JSN Registration")


class JSNRegistrationLogic(ScriptedLoadableModuleLogic):
    """All the work, usable from Slicer's Python console without the panel."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.results = []  # JointResults of the last finished run, with images

    def getParameterNode(self):
        return JSNRegistrationParameterNode(super().getParameterNode())

    @staticmethod
    def notReadyReason(p):
        """Why Run is not possible yet ("" when it is)."""
        if not p.baselineVolume or not p.followupVolume:
            return "Select the baseline and the follow-up radiograph"
        if p.baselineVolume == p.followupVolume:
            return "Baseline and follow-up must be different radiographs"
        if not p.joints or p.joints.GetNumberOfControlPoints() == 0:
            return "Place at least one joint on the baseline"
        return ""

    # --- dependencies -------------------------------------------------------------------------

    def ensureDependencies(self):
        """Install what the core needs on first use, after asking; True when everything is there."""
        requirements = self.resourcePath("requirements.txt")
        pydeps = next((m for m in map(self._optionalModule, ("slicer.pydeps", "slicer.packaging"))
                       if m is not None and hasattr(m, "pip_ensure")), None)
        if pydeps is not None:  # Slicer 5.11+: asks the user itself, skipped in --testing
            pydeps.pip_ensure(pydeps.load_requirements(requirements), requester="JSNRegistration")
        else:
            names = [line.split(">")[0].split("=")[0].strip() for line in Path(requirements).read_text().splitlines()
                     if line.strip() and not line.startswith("#")]
            missing = [n for n in names if importlib.util.find_spec(n) is None]
            if missing:
                if not slicer.util.confirmOkCancelDisplay(
                        f"JSN Registration needs the Python packages {', '.join(missing)}. Install them now?"):
                    return False
                slicer.util.pip_install(" ".join(missing))
        if importlib.util.find_spec("torch") is None:
            pyTorchUtils = self._optionalModule("PyTorchUtils")
            if pyTorchUtils is None:
                raise RuntimeError("PyTorch is needed: install the PyTorch extension from the Extensions "
                                   "Manager, restart Slicer and run again.")
            if not pyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True):
                return False
        return True

    @staticmethod
    def _optionalModule(name):
        try:
            return importlib.import_module(name)
        except ImportError:
            return None

    def resourcePath(self, relativePath):
        # Installed: Resources/ beside the module file; source tree: Resources/ at the repository root.
        here = Path(__file__).resolve().parent
        folder = here / "Resources" if (here / "Resources").is_dir() else here.parent / "Resources"
        return str(folder / relativePath)

    # --- joints -------------------------------------------------------------------------------

    @staticmethod
    def jointLabels(markupsNode):
        return [markupsNode.GetNthControlPointLabel(i) for i in range(markupsNode.GetNumberOfControlPoints())]

    def nameNewestJoint(self, markupsNode):
        """Label the point just placed with the first standard joint not yet used."""
        from jsnreg.joints import next_joint_name

        labels = self.jointLabels(markupsNode)
        if labels:
            markupsNode.SetNthControlPointLabel(len(labels) - 1, next_joint_name(labels[:-1]))

    @staticmethod
    def _matrix(volumeNode, getter):
        m = vtk.vtkMatrix4x4()
        getattr(volumeNode, getter)(m)
        return slicer.util.arrayFromVTKMatrix(m)

    def jointEntries(self, markupsNode, baselineVolume):
        """The request's joints: control point labels and RAS positions -> baseline pixels."""
        from jsnreg.errors import InputError
        from JSNRegistrationLib import conversions

        if baselineVolume.GetParentTransformNode() is not None:
            raise InputError("the baseline radiograph is under a transform: harden or remove it first")
        names = self.jointLabels(markupsNode)
        pointsRas = slicer.util.arrayFromMarkupsControlPoints(markupsNode, world=True)
        image = conversions.volume_to_image(slicer.util.arrayFromVolume(baselineVolume))
        xy = conversions.joint_xy(pointsRas, self._matrix(baselineVolume, "GetRASToIJKMatrix"), image.shape, names)
        return conversions.joint_entries(names, xy)

    # --- the run ------------------------------------------------------------------------------

    def volumeFile(self, volumeNode, folder):
        """A file holding the volume's pixels: its own file or DICOM instance, else an export."""
        from JSNRegistrationLib.conversions import source_file

        storage = volumeNode.GetStorageNode()
        uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        dicomFiles = [slicer.dicomDatabase.fileForInstance(uid) for uid in uids] if slicer.dicomDatabase else []
        path = source_file(storage.GetFileName() if storage else None, volumeNode.GetModifiedSinceRead(),
                           dicomFiles)
        if path is None:
            path = os.path.join(folder, volumeNode.GetID() + ".nrrd")
            # exportNode (5.2+) leaves the node's own storage untouched; saveNode repoints it.
            getattr(slicer.util, "exportNode", slicer.util.saveNode)(volumeNode, path)
        return path

    @staticmethod
    def workerProgram():
        """Slicer's Python interpreter for the worker subprocess."""
        program = shutil.which("PythonSlicer") or shutil.which("PythonSlicer.exe")
        if program is None:
            raise RuntimeError("PythonSlicer was not found next to Slicer: cannot start the worker")
        return program

    def start(self, p, onProgress, onFinished, onError, onCancelled):
        """Write the request, start the worker; returns its runner (callbacks arrive on this thread)."""
        import json

        import jsnreg
        from JSNRegistrationLib.conversions import build_request
        from JSNRegistrationLib.runner import WorkerRunner

        folder = os.path.join(slicer.app.temporaryPath, "JSNRegistration", time.strftime("run-%Y%m%d-%H%M%S"))
        os.makedirs(folder, exist_ok=True)
        request = build_request(self.volumeFile(p.baselineVolume, folder), self.volumeFile(p.followupVolume, folder),
                                self.jointEntries(p.joints, p.baselineVolume), os.path.join(folder, "result"),
                                p.roiMm, p.refine, p.spacingMm)
        requestPath = os.path.join(folder, "request.json")
        with open(requestPath, "w", encoding="utf-8") as f:
            json.dump(request, f, indent=1)

        process = qt.QProcess()
        env = qt.QProcessEnvironment.systemEnvironment()
        corePath = str(Path(jsnreg.__file__).resolve().parents[1])
        env.insert("PYTHONPATH", os.pathsep.join(filter(None, [corePath, env.value("PYTHONPATH")])))
        process.setProcessEnvironment(env)
        runner = WorkerRunner(process, onProgress, onFinished, onError, onCancelled)
        runner.start(self.workerProgram(), ["-m", "jsnreg.worker", requestPath])
        logging.info(f"JSNRegistration: worker started on {requestPath}")
        return runner

    # --- results ------------------------------------------------------------------------------

    def showResults(self, p, outDir):
        """Load a finished run: table node, flagged joints marked, the first joint shown."""
        from jsnreg.job import load_result
        from JSNRegistrationLib.display import flag_marks

        self.results = load_result(outDir)
        p.resultFolder = outDir
        if not p.resultTable:
            p.resultTable = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "JSN results")
        self.updateTable(p.resultTable, self.results)
        marks = flag_marks(self.results)
        for i, label in enumerate(self.jointLabels(p.joints)):
            p.joints.SetNthControlPointSelected(i, label not in marks)  # flagged = unselected colour
            p.joints.SetNthControlPointDescription(i, marks.get(label, ""))
        p.joints.GetDisplayNode().SetColor(1.0, 0.55, 0.0)
        self.showTableLayout(p.resultTable)
        if self.results:
            self.showJoint(p, self.results[0].name, "checkerboard")
        return self.results

    @staticmethod
    def updateTable(tableNode, results):
        from JSNRegistrationLib.display import table_columns

        table = vtk.vtkTable()
        for name, kind, values in table_columns(results):
            column = vtk.vtkStringArray() if kind == "text" else vtk.vtkDoubleArray()
            column.SetName(name)
            for v in values:
                column.InsertNextValue(v)
            table.AddColumn(column)
        tableNode.SetAndObserveTable(table)
        tableNode.SetUseColumnTitleAsColumnHeader(True)
        tableNode.SetLocked(True)

    @staticmethod
    def showTableLayout(tableNode):
        """A slice view above the table, as SegmentStatistics shows its table."""
        layoutManager = slicer.app.layoutManager()
        layoutNode = layoutManager.layoutLogic().GetLayoutNode()
        if not layoutNode.IsLayoutDescription(TABLE_LAYOUT_ID):
            layoutNode.AddLayoutDescription(TABLE_LAYOUT_ID, TABLE_LAYOUT_XML)
        layoutManager.setLayout(TABLE_LAYOUT_ID)
        appLogic = slicer.app.applicationLogic()
        appLogic.GetSelectionNode().SetActiveTableID(tableNode.GetID())
        appLogic.PropagateTableSelection()

    def overlayVolume(self, name, image, ijkToRas):
        """Create or update the scalar volume `name` from a 2-D image placed by ijkToRas."""
        from JSNRegistrationLib.conversions import image_to_volume

        node = slicer.mrmlScene.GetFirstNodeByName(name)
        if node is None:
            node = slicer.util.addVolumeFromArray(image_to_volume(image), name=name)
        else:
            slicer.util.updateVolumeFromArray(node, image_to_volume(image))
        node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijkToRas))
        return node

    def showJoint(self, p, name, overlay):
        """The joint's overlays as volumes over the baseline, composed in the slice views."""
        from functools import partial

        from jsnreg import rois
        from JSNRegistrationLib import conversions, display

        result = next(r for r in self.results if r.name == name)
        pos = result.position
        affine = conversions.roi_affine_xy(partial(rois.roi_to_image, centre_xy=pos["baseline_xy"],
                                                   size_px=pos["roi_size_px"], angle_rad=pos["baseline_angle_rad"]),
                                           pos["roi_size_px"])
        ijkToRas = conversions.roi_ijk_to_ras(self._matrix(p.baselineVolume, "GetIJKToRASMatrix"), affine)
        images = display.overlay_images(result.images)
        layers = display.slice_layers(overlay)
        nodes = {}
        for key in filter(None, (layers["background"], layers["foreground"])):
            node = self.overlayVolume(f"JSN {name} {key}", images[key], ijkToRas)
            low, high = display.display_range(result.images, key)
            displayNode = node.GetDisplayNode()
            displayNode.SetAutoWindowLevel(False)
            displayNode.SetWindowLevelMinMax(low, high)
            if key in display.LOSS_OVERLAYS:
                displayNode.SetAndObserveColorNodeID(LOSS_COLOR_NODE_ID)
                colorLogic = slicer.modules.colors.logic()
                if hasattr(colorLogic, "AddDefaultColorLegendDisplayNode"):
                    colorLogic.AddDefaultColorLegendDisplayNode(node)
            nodes[key] = node
        slicer.util.setSliceViewerLayers(background=nodes[layers["background"]],
                                         foreground=nodes.get(layers["foreground"]),
                                         foregroundOpacity=layers["foreground_opacity"], fit=True,
                                         rotateToVolumePlane=True)

    @staticmethod
    def exportReport(outDir, path):
        """The session report through the core (radiographs read again for the header and images)."""
        from jsnreg import report
        from jsnreg.job import session_from_run

        report.write_report_pdf(session_from_run(outDir), path)

    def runAndWait(self, p, timeoutSeconds=600):
        """Run and block in a local event loop until the worker ends (self-test, scripts)."""
        outcome = {}
        loop = qt.QEventLoop()

        def finish(key, value=None):
            outcome[key] = value
            loop.quit()

        runner = self.start(p, lambda *a: None, lambda d: finish("out_dir", d), lambda m: finish("error", m),
                            lambda: finish("cancelled"))
        qt.QTimer.singleShot(int(timeoutSeconds * 1000), lambda: runner.cancel())
        if runner.running:
            loop.exec_()
        if "out_dir" not in outcome:
            raise RuntimeError(f"the run did not finish: {outcome}")
        return self.showResults(p, outcome["out_dir"])


class JSNRegistrationTest(ScriptedLoadableModuleTest):
    """Self-test on a generated hand pair (no download): two joints through the real worker."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TwoJointsTable()

    def test_TwoJointsTable(self):
        import tempfile

        import numpy as np
        from jsnreg.joints import load_joints_json
        from jsnreg.synthetic import write_demo_case
        from JSNRegistrationLib.conversions import ijk_to_ras

        self.delayDisplay("Generating a synthetic hand pair")
        paths = write_demo_case(tempfile.mkdtemp(prefix="JSNRegistrationTest-"))
        baseline = slicer.util.loadVolume(str(paths["baseline.dcm"]), {"singleFile": True})
        followup = slicer.util.loadVolume(str(paths["followup.dcm"]), {"singleFile": True})
        specs = load_joints_json(paths["joints.json"])[:2]

        logic = JSNRegistrationLogic()
        self.assertTrue(logic.ensureDependencies())
        p = logic.getParameterNode()
        p.baselineVolume, p.followupVolume = baseline, followup
        p.joints = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Joints")
        ijkToRas = logic._matrix(baseline, "GetIJKToRASMatrix")
        for s in specs:
            ras = ijk_to_ras([[s.x, s.y, 0.0]], ijkToRas)[0]
            p.joints.AddControlPoint(vtk.vtkVector3d(*ras), s.name)
        self.assertEqual(logic.notReadyReason(p), "")

        self.delayDisplay("Running the worker on two joints")
        results = logic.runAndWait(p)

        table = p.resultTable.GetTable()
        self.assertEqual(table.GetNumberOfRows(), 2)
        self.assertEqual([table.GetValueByName(i, "joint").ToString() for i in range(2)], [s.name for s in specs])
        jsn = [table.GetValueByName(i, "jsn_mm").ToDouble() for i in range(2)]
        self.assertTrue(np.allclose(jsn, [r.jsn_mm for r in results]))
        self.assertTrue(np.all(np.isfinite(jsn)))
        self.assertIsNotNone(slicer.mrmlScene.GetFirstNodeByName(f"JSN {specs[0].name} checkerboard"))
        self.delayDisplay("Test passed")
