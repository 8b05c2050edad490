"""The Slicer extension's files, checked without Slicer: they compile, the build files make the
calls Slicer's build needs, the module has its four classes, and the code and .ui agree."""

import ast
import py_compile
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

EXT = Path(__file__).resolve().parents[1]  # the repository root is the extension
MODULE_DIR = EXT / "JSNRegistration"
MODULE = MODULE_DIR / "JSNRegistration.py"
RESOURCES = EXT / "Resources"
UI = RESOURCES / "UI" / "JSNRegistration.ui"


def test_module_and_lib_compile(tmp_path):
    for path in [MODULE, *sorted((MODULE_DIR / "JSNRegistrationLib").glob("*.py"))]:
        py_compile.compile(str(path), cfile=str(tmp_path / (path.name + "c")), doraise=True)


def test_extension_cmake_has_required_calls():
    text = (EXT / "CMakeLists.txt").read_text()
    for call in ("project(JSNRegistration)", "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                 "add_subdirectory(JSNRegistration)", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                 "include(${Slicer_EXTENSION_CPACK})"):
        assert call in text, call
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS"):
        assert re.search(rf"set\(EXTENSION_{key} ", text), key
    assert re.search(r'set\(EXTENSION_DEPENDS\s+"PyTorch"\)', text)


def test_module_cmake_lists_every_file_that_exists():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "set(MODULE_NAME JSNRegistration)" in text
    assert re.search(r"slicerMacroBuildScriptedModule\([^)]*WITH_GENERIC_TESTS", text, re.S)
    assert re.search(r"if\(BUILD_TESTING\)\s+#[^\n]*\n\s*slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)", text)
    listed = {p.replace("${MODULE_NAME}", "JSNRegistration") for p in
              re.findall(r"^\s+(\$\{MODULE_NAME\}\S*|Resources/\S+)$", text, re.M)}
    lib = {f"JSNRegistrationLib/{p.name}" for p in (MODULE_DIR / "JSNRegistrationLib").glob("*.py")}
    assert lib | {"JSNRegistration.py"} <= listed  # every helper file is installed
    for rel in listed:
        assert ((EXT if rel.startswith("Resources/") else MODULE_DIR) / rel).is_file(), rel


def test_four_classes_and_lazy_heavy_imports():
    tree = ast.parse(MODULE.read_text())
    classes = {c.name: [ast.unparse(b) for b in c.bases] for c in tree.body if isinstance(c, ast.ClassDef)}
    assert classes["JSNRegistration"] == ["ScriptedLoadableModule"]
    assert classes["JSNRegistrationWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert classes["JSNRegistrationLogic"] == ["ScriptedLoadableModuleLogic"]
    assert classes["JSNRegistrationTest"] == ["ScriptedLoadableModuleTest"]
    top = set()
    for node in tree.body:  # imports run when Slicer loads the module (generic load test)
        if isinstance(node, ast.Import):
            top.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            top.add(node.module.split(".")[0])
    assert not top & {"torch", "jsnreg", "JSNRegistrationLib", "numpy", "matplotlib"}, top


def ui_widgets():
    root = ET.parse(UI).getroot()
    return root, {w.get("name"): w.get("class") for w in root.iter("widget")}


def test_ui_parses_and_has_every_widget_the_code_uses():
    root, widgets = ui_widgets()
    assert root.tag == "ui" and root.find("class").text == "JSNRegistration"
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE.read_text()))
    assert used and used <= set(widgets), used - set(widgets)
    custom = {c.find("class").text for c in root.iter("customwidget")}
    slicer_classes = {c for c in widgets.values() if c.startswith(("qMRML", "qSlicer", "ctk"))}
    assert slicer_classes <= custom  # every Slicer widget is declared for QUiLoader
    assert widgets["baselineSelector"] == "qMRMLNodeComboBox" and widgets["resultsTableView"] == "qMRMLTableView"


def test_ui_parameter_names_match_the_parameter_node():
    root, _ = ui_widgets()
    bound = {p.find("string").text for p in root.iter("property") if p.get("name") == "SlicerParameterName"}
    tree = ast.parse(MODULE.read_text())
    wrapper = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "JSNRegistrationParameterNode")
    fields = {s.target.id for s in wrapper.body if isinstance(s, ast.AnnAssign)}
    assert bound and bound <= fields, bound - fields
    assert {"baselineVolume", "followupVolume", "joints"} <= bound


def test_icon_is_a_real_128px_picture():
    import SimpleITK as sitk

    icon = sitk.GetArrayFromImage(sitk.ReadImage(str(RESOURCES / "Icons/JSNRegistration.png")))
    assert icon.shape[:2] == (128, 128)
    assert len(np.unique(icon.reshape(-1, icon.shape[-1]), axis=0)) >= 3  # not a flat square
