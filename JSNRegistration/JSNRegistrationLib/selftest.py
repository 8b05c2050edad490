"""The module's self-test (JSNRegistrationTest runs it inside Slicer): a generated hand pair, two
joints added from a script, the real worker, the table and an overlay checked in the scene."""

import tempfile

import numpy as np
import slicer
import vtk

from jsnreg.joints import load_joints_json
from jsnreg.synthetic import write_demo_case

from .conversions import ijk_to_ras
from .scene import joint_labels, matrix


def two_joints_table(test, logic) -> None:
    """`test` is the ScriptedLoadableModuleTest (assertions, delayDisplay), `logic` the module's Logic."""
    test.delayDisplay("Generating a synthetic hand pair")
    paths = write_demo_case(tempfile.mkdtemp(prefix="JSNRegistrationTest-"))
    baseline = slicer.util.loadVolume(paths["baseline"], {"singleFile": True})
    followup = slicer.util.loadVolume(paths["followup"], {"singleFile": True})
    specs = load_joints_json(paths["joints"])[:2]
    test.assertTrue(logic.ensureDependencies())
    p = logic.getParameterNode()
    p.baselineVolume, p.followupVolume = baseline, followup
    p.joints = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Joints")
    ijkToRas = matrix(baseline, "GetIJKToRASMatrix")
    for s in specs:  # added from a script: keep their names (auto-naming is for placed points)
        p.joints.AddControlPoint(vtk.vtkVector3d(*ijk_to_ras([[s.x, s.y, 0.0]], ijkToRas)[0]), s.name)
    test.assertEqual(joint_labels(p.joints), [s.name for s in specs])
    test.assertEqual(logic.notReadyReason(p), "")
    test.delayDisplay("Running the worker on two joints")
    results = logic.runAndWait(p)
    table = p.resultTable.GetTable()
    test.assertEqual(table.GetNumberOfRows(), 2)
    test.assertEqual([table.GetValueByName(i, "joint").ToString() for i in range(2)], [s.name for s in specs])
    jsn = [table.GetValueByName(i, "jsn_mm").ToDouble() for i in range(2)]
    test.assertTrue(np.allclose(jsn, [r.jsn_mm for r in results]) and np.all(np.isfinite(jsn)))
    test.assertIsNotNone(slicer.mrmlScene.GetFirstNodeByName(f"JSN {specs[0].name} checkerboard"))
    test.delayDisplay("Test passed")
