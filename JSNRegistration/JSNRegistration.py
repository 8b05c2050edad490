"""3D Slicer module JSNRegistration: joint space narrowing between two hand radiographs.

A thin face over the core `jsnreg` (beneath this folder, which Slicer puts on sys.path). The work runs
in a worker subprocess (`PythonSlicer -m jsnreg.worker`): Slicer never freezes. The
Lib and the core are imported inside methods, not when Slicer loads the module."""

from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

def resourcePath(relativePath):
    from JSNRegistrationLib.paths import resource_folder
    return str(resource_folder(__file__) / relativePath)


class JSNRegistration(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("JSN Registration")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = ["Markups"]
        self.parent.contributors = ["JSNRegistration developers"]
        self.parent.icon = qt.QIcon(resourcePath("Icons/JSNRegistration.png"))
        self.parent.helpText = _("""Joint space narrowing (JSN) between a baseline and a follow-up hand
radiograph, by per-bone registration of each joint. Pick both radiographs, click the joints on the baseline
or Detect joints (labels = joint names: IP1, MCP1-5, PIP2-5), Run (in the background; Cancel stops it),
read the table (JSN in mm, positive = narrower at follow-up; flagged joints need a look), export the report.""")
        self.parent.acknowledgementText = _("""Method after Wang et al., Computerized Medical Imaging and
Graphics 108 (2023) 102273, and Ou et al., IEEE JBHI 27(1) 2023.""")


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
        self.logic = self._parameterNode = self._parameterNodeGuiTag = self._observedJoints = self._runner = None

    resourcePath = staticmethod(resourcePath)  # the stock one misses Resources/ in the source tree

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
        self.ui.showTableButton.connect("clicked(bool)",
                                        lambda: self.logic.scene.show_table_layout(self._parameterNode.resultTable))
        self.ui.detectJointsButton.connect("clicked(bool)", self.onDetectJoints)
        self.ui.exportReportButton.connect("clicked(bool)", self.onExportReport)
        self.ui.saveSceneButton.connect("clicked(bool)", lambda: slicer.util.openSaveDataDialog())
        self.initializeParameterNode()

    def cleanup(self):
        self._runner and self._runner.cancel()
        self.removeObservers()

    def onReload(self):  # Slicer's Reload button: the Lib and the core too, then the module file
        from JSNRegistrationLib.reloading import reload_packages
        reload_packages(("jsnreg", "JSNRegistrationLib"))
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)

    def onSceneStartClose(self, caller, event):
        self._runner and self._runner.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.joints:
            self._parameterNode.joints = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", _("Joints"))

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
        if self._observedJoints is not markupsNode:
            self.removeObservers(self._onPointDefined)
            if markupsNode is not None:
                self.addObserver(markupsNode, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self._onPointDefined)
            self._observedJoints = markupsNode

    @vtk.calldata_type(vtk.VTK_INT)
    def _onPointDefined(self, caller, event, index):
        """A point's position was defined: the event's index says which point."""
        self.logic.scene.name_defined_joint(caller, index)

    def _updateGUI(self, caller=None, event=None):
        """Buttons and their tooltips from the parameter node and the run state."""
        p = self._parameterNode
        self._observeJoints(p.joints if p else None)
        self.ui.placeWidget.setCurrentNode(p.joints if p else None)
        running = self._runner is not None and self._runner.running
        reason = self.logic.notReadyReason(p) if p else _("No parameter node")
        self.ui.applyButton.text = _("Cancel") if running else _("Run")
        self.ui.applyButton.enabled = running or not reason
        self.ui.applyButton.toolTip = _("Stop the run") if running else reason or _("Measure in the background")
        self.ui.inputsCollapsibleButton.enabled = not running
        self.ui.progressBar.visible = running
        hasResults = bool(p and p.resultFolder and self.logic.results)
        for button in (self.ui.exportReportButton, self.ui.showTableButton):
            button.enabled = hasResults and not running
            button.toolTip = "" if hasResults else _("Run first")

    def _startInBackground(self, errorText, start):
        """self._runner = start(); the panel shows its state even when that fails (and raises again)."""
        try:
            with slicer.util.tryWithErrorDisplay(errorText, waitCursor=True):
                self._runner = start()
        finally:
            self._updateGUI()

    def onApplyButton(self):
        if self._runner is not None and self._runner.running:
            self._runner.cancel()
            self.ui.statusLabel.text = _("Cancelling...")
            return

        def start():
            if not self.logic.ensureDependencies():
                return None
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = _("Reading the radiographs and loading the network...")
            return self.logic.start(self._parameterNode, self._onProgress, self._onFinished, self._onError,
                                    self._onCancelled)

        self._startInBackground(_("Could not start the registration."), start)

    def _onProgress(self, done, total, joint):
        self.ui.progressBar.maximum, self.ui.progressBar.value = total, done
        self.ui.statusLabel.text = _("Measured {joint} ({done} of {total})").format(joint=joint, done=done, total=total)

    def _onFinished(self, outDir):
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not show the results."), waitCursor=True):
                results = self.logic.showResults(self._parameterNode, outDir)
                self.ui.statusLabel.text = _("{count} joints measured, {flagged} flagged").format(
                    count=len(results), flagged=sum(r.flagged for r in results))
                self.ui.resultsTableView.setMRMLTableNode(self._parameterNode.resultTable)
                self.ui.jointComboBox.clear()
                for r in results:
                    self.ui.jointComboBox.addItem(r.name + (_("  (flagged)") if r.flagged else ""), r.name)
        finally:
            self._updateGUI()

    def _onError(self, message):
        self.ui.statusLabel.text = _("Failed")
        self._updateGUI()
        slicer.util.errorDisplay(message, windowTitle=_("JSN Registration"))

    def _onCancelled(self):
        self.ui.statusLabel.text = _("Cancelled: nothing was changed")
        self._updateGUI()

    def onShowJoint(self, _index=None):
        name, overlay = self.ui.jointComboBox.currentData, self.ui.overlayComboBox.currentData
        if name and overlay:
            with slicer.util.tryWithErrorDisplay(_("Could not show the joint."), waitCursor=True):
                self.logic.showJoint(self._parameterNode, name, overlay)

    def onDetectJoints(self):
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not detect the joints."), waitCursor=True):
                points = self.logic.detectJoints(self._parameterNode)
                self.ui.statusLabel.text = _("{count} joints detected: check them").format(count=len(points))
        finally:
            self._updateGUI()  # Run needs joints

    def onExportReport(self):
        path = qt.QFileDialog.getSaveFileName(None, _("Export report"), "jsn_report.pdf", "PDF (*.pdf)")
        if not path:
            return
        def written(pdfPath):  # noqa: E306
            self.ui.statusLabel.text = _("Report written to {path}").format(path=pdfPath)
            self._updateGUI()
        self.ui.statusLabel.text = _("Writing the report...")
        self._startInBackground(_("Could not export the report."), lambda: self.logic.exportReport(
            self._parameterNode.resultFolder, path, written, self._onError, self._onCancelled))


class JSNRegistrationLogic(ScriptedLoadableModuleLogic):
    """All the work, usable from Slicer's Python console without the panel (see runAndWait)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        from JSNRegistrationLib import scene  # the Slicer side of the work (imported with the Logic, not the module)
        self.scene = scene
        self.results = []  # JointResults of the last finished run, with images
        self.zoomXy = (1.0, 1.0)  # the baseline volume's pixel grid -> the core's, for the results shown

    def getParameterNode(self):
        return JSNRegistrationParameterNode(super().getParameterNode())

    def notReadyReason(self, p):
        """Why Run is not possible yet ("" when it is)."""
        return self.scene.not_ready_reason(p)

    def ensureDependencies(self):
        return self.scene.ensure_dependencies(resourcePath("requirements.txt"))

    def start(self, p, onProgress, onFinished, onError, onCancelled):
        """Start the registration of `p`'s joints in the worker; returns its runner."""
        return self.scene.start_run(p, onProgress, onFinished, onError, onCancelled)

    def exportReport(self, outDir, pdfPath, onFinished, onError, onCancelled):
        return self.scene.start_report(outDir, pdfPath, onFinished, onError, onCancelled)

    def showResults(self, p, outDir):
        """Load a finished run: table node, flagged joints marked, the first joint shown."""
        from jsnreg.job import load_result
        self.results, self.zoomXy = load_result(outDir), self.scene.run_zoom_xy(p.baselineVolume, outDir)
        p.resultFolder = outDir
        if not p.resultTable:
            p.resultTable = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", _("JSN results"))
        self.scene.show_results(p.resultTable, p.joints, self.results)
        if self.results:
            self.showJoint(p, self.results[0].name, "checkerboard")
        return self.results

    def detectJoints(self, p):
        """Fill `p.joints` with the joints the core's detector finds on the baseline, named."""
        if not self.ensureDependencies():
            return []
        return self.scene.detect_joints(p.baselineVolume, p.joints, p.spacingMm)

    def showJoint(self, p, name, overlay):
        self.scene.show_joint(p.baselineVolume, next(r for r in self.results if r.name == name), overlay, self.zoomXy)

    def runAndWait(self, p, timeoutSeconds=600):
        """Run and block in a local event loop until the worker ends (self-test, scripts)."""
        outDir = self.scene.wait_for_run(lambda *callbacks: self.start(p, lambda *a: None, *callbacks), timeoutSeconds)
        return self.showResults(p, outDir)


class JSNRegistrationTest(ScriptedLoadableModuleTest):
    """Self-test on a generated hand pair (no download): two joints through the real worker."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TwoJointsTable()

    def test_TwoJointsTable(self):
        from JSNRegistrationLib.selftest import two_joints_table
        two_joints_table(self, JSNRegistrationLogic())
