"""The Slicer extension's files, checked without Slicer: they compile, the build files make the
calls Slicer's build needs, the module has its four classes, and the code and .ui agree."""

import ast
import json
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
    assert re.search(r'set\(EXTENSION_DEPENDS\s+"NA"\)', text)  # the core measures without torch


def cmake_module_files():
    """What the module folder's CMakeLists installs beside the module file, as relative paths:
    its GLOB patterns (SCRIPTS and RESOURCES keep their path relative to the module folder) and the
    root Resources/ files it copies to <module dir>/Resources."""
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    patterns = [p.replace("${MODULE_NAME}", "JSNRegistration")
                for block in re.findall(r"file\(GLOB \w+ RELATIVE \$\{CMAKE_CURRENT_SOURCE_DIR\} CONFIGURE_DEPENDS\s+([^)]*)\)", text)
                for p in block.split()]
    globbed = {str(f.relative_to(MODULE_DIR)) for pattern in patterns for f in MODULE_DIR.glob(pattern)}
    resources = re.search(r"set\(MODULE_RESOURCE_FILES\s+([^)]*)\)", text).group(1).split()
    return patterns, globbed | {"JSNRegistration.py"}, [r.replace("${MODULE_NAME}", "JSNRegistration") for r in resources]


def test_module_cmake_installs_the_lib_the_core_and_its_data():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "set(MODULE_NAME JSNRegistration)" in text
    assert re.search(r"slicerMacroBuildScriptedModule\([^)]*WITH_GENERIC_TESTS", text, re.S)
    patterns, files, resources = cmake_module_files()
    assert {"jsnreg/weights/*.pt", "jsnreg/weights/*.json", "jsnreg/data/*.json"} <= set(patterns)
    every = {str(f.relative_to(MODULE_DIR)) for pkg in ("JSNRegistrationLib", "jsnreg")
             for f in (MODULE_DIR / pkg).rglob("*") if f.is_file() and "__pycache__" not in f.parts}
    assert every <= files, every - files  # nothing of the Lib or the core is left out
    assert not any(f.startswith("jsnreg_viewer") for f in files)  # the PyQt5 viewer stays out of Slicer
    for rel in resources:
        assert (RESOURCES / rel).is_file(), rel
        assert re.search(rf"install\(FILES \$\{{MODULE_RESOURCES_SOURCE_DIR\}}/\$\{{file\}}", text)
    assert {"UI/JSNRegistration.ui", "Icons/JSNRegistration.png", "requirements.txt"} <= set(resources)
    # the self-test's ctest lives in Testing/
    assert "add_subdirectory(Testing)" in (EXT / "CMakeLists.txt").read_text()
    assert "slicer_add_python_unittest" in (EXT / "Testing" / "Python" / "CMakeLists.txt").read_text()
    assert "slicer_add_python_unittest" not in text  # declared once


def test_installed_tree_runs_the_worker_and_finds_resources(tmp_path):
    """The folder a built extension holds (lib/Slicer-X.Y/qt-scripted-modules), made from what the
    CMake lists: the core imports from it, finds its weights and runs a joint; Resources is found."""
    import shutil
    import subprocess
    import sys

    installed = tmp_path / "qt-scripted-modules"
    _, files, resources = cmake_module_files()
    for rel in files:
        (installed / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(MODULE_DIR / rel, installed / rel)
    for rel in resources:
        (installed / "Resources" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(RESOURCES / rel, installed / "Resources" / rel)
    code = ("import json, sys, jsnreg, jsnreg.network as n; from JSNRegistrationLib.paths import resource_folder;"
            "from jsnreg.synthetic import write_demo_case; from jsnreg.joints import load_joints_json, joints_to_json;"
            "from jsnreg import job; d = write_demo_case(sys.argv[1] + '/demo');"
            "j = joints_to_json(load_joints_json(d['joints'])[:1])['joints'];"
            "s = job.run({'baseline': d['baseline'], 'followup': d['followup'], 'joints': j, 'out_dir': sys.argv[1] + '/out'});"
            "print(json.dumps([jsnreg.__file__, str(resource_folder(sys.argv[2])), n.model_info(), len(s['results'])]))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(installed / "JSNRegistration.py")],
                          cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(installed)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    core_file, resources_dir, model, n_results = json.loads(proc.stdout.splitlines()[-1])
    assert Path(core_file).is_relative_to(installed) and n_results == 1
    assert Path(resources_dir) == installed / "Resources" and model


def test_resources_found_in_the_source_tree():
    import sys

    sys.path.insert(0, str(MODULE_DIR))
    try:
        from JSNRegistrationLib.paths import resource_folder
    finally:
        sys.path.remove(str(MODULE_DIR))
    assert resource_folder(str(MODULE)) == RESOURCES
    assert not (MODULE_DIR / "Resources").exists()  # one Resources folder, at the top
    assert [p.name for p in MODULE_DIR.glob("*.py")] == ["JSNRegistration.py"]  # Slicer loads each .py there


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


LIB = MODULE_DIR / "JSNRegistrationLib"
SLICER_SIDE = {"scene.py", "selftest.py"}  # the Lib files that run only inside Slicer


def parsed(path):
    return ast.parse(path.read_text())


def calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and (getattr(n.func, "attr", None) == name or getattr(n.func, "id", None) == name)]


def test_module_file_is_short_and_the_pure_lib_needs_no_slicer():
    assert len(MODULE.read_text().splitlines()) <= 300
    for path in LIB.glob("*.py"):
        imported = set()
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
        slicer_imports = imported & {"slicer", "qt", "ctk", "vtk", "PyQt5"}
        assert bool(slicer_imports) == (path.name in SLICER_SIDE), (path.name, slicer_imports)


def test_no_sys_path_changes_in_the_module_or_the_lib():
    for path in [MODULE, *LIB.glob("*.py")]:  # Slicer puts the module folder on sys.path itself
        assert not [n for n in ast.walk(parsed(path)) if isinstance(n, ast.Attribute) and n.attr == "path"
                    and getattr(n.value, "id", None) == "sys"], path.name


def test_dependencies_are_installed_the_way_slicer_5_6_to_5_12_allow():
    scene = (LIB / "scene.py").read_text()
    # slicer.packaging (5.12+) only behind hasattr, else pip_install after asking
    guard = 'if hasattr(slicer, "packaging") and hasattr(slicer.packaging, "pip_ensure"):'
    assert guard in scene and scene.index(guard) < scene.index("slicer.packaging.pip_ensure")
    assert scene.index("confirmOkCancelDisplay") < scene.index("slicer.util.pip_install(missing)")
    # no torch to install: the worker measures and reports without it (test_slicer_python.py runs it so)
    for path in (MODULE, LIB / "scene.py"):
        assert not calls(parsed(path), "installTorch") and "PyTorchUtils" not in path.read_text()


def test_export_success_is_checked_and_the_panel_updates_after_errors():
    tree = parsed(LIB / "scene.py")
    export_tests = [n.test for n in ast.walk(tree) if isinstance(n, ast.If)
                    and isinstance(n.test, ast.UnaryOp) and isinstance(n.test.op, ast.Not)
                    and "exportNode" in ast.unparse(n.test)]
    assert export_tests, "the exportNode/saveNode result must be checked"
    widget = next(c for c in parsed(MODULE).body if isinstance(c, ast.ClassDef) and c.name == "JSNRegistrationWidget")
    for node in ast.walk(widget):  # every tryWithErrorDisplay sits in a try whose finally updates the panel
        if isinstance(node, ast.Try) and node.finalbody:
            assert "self._updateGUI()" in ast.unparse(node.finalbody)
    tries = [n for n in ast.walk(widget) if isinstance(n, ast.Try)]
    guarded = {id(w) for t in tries for w in ast.walk(t) if isinstance(w, ast.With)}
    for with_node in (n for n in ast.walk(widget) if isinstance(n, ast.With)):
        method = next(f for f in ast.walk(widget) if isinstance(f, ast.FunctionDef)
                      and with_node in list(ast.walk(f)))
        if method.name != "onShowJoint":  # showing a joint changes no run state
            assert id(with_node) in guarded, method.name


def test_reload_point_event_and_translations():
    tree = parsed(MODULE)
    widget = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "JSNRegistrationWidget")
    methods = {f.name: f for f in widget.body if isinstance(f, ast.FunctionDef)}
    assert "reload_packages((\"jsnreg\", \"JSNRegistrationLib\"))" in ast.unparse(methods["onReload"]).replace("'", '"')
    handler = methods["_onPointDefined"]
    assert [ast.unparse(d) for d in handler.decorator_list] == ["vtk.calldata_type(vtk.VTK_INT)"]
    assert [a.arg for a in handler.args.args] == ["self", "caller", "event", "index"]
    assert "name_defined_joint(caller, index)" in ast.unparse(handler)
    imports = {(n.module, a.name, a.asname) for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {("slicer.i18n", "tr", "_"), ("slicer.i18n", "translate", None)} <= imports  # as Slicer's template


USER_TEXT_ATTRS = {"text", "toolTip", "title", "helpText", "acknowledgementText"}
USER_TEXT_CALLS = {"errorDisplay", "infoDisplay", "confirmOkCancelDisplay", "tryWithErrorDisplay", "RuntimeError",
                   "ValueError", "AddNewNodeByClass"}


def untranslated_strings(tree):
    """User-visible string literals not wrapped in _(): texts set on widgets and module info,
    messages of dialogs and errors, node names."""
    found = []

    def check(node):
        wrapped = {id(n) for c in ast.walk(node) if isinstance(c, ast.Call) and getattr(c.func, "id", None) == "_"
                   for n in ast.walk(c)}
        wrapped |= {id(n) for f in ast.walk(node) if isinstance(f, ast.JoinedStr) for n in f.values}
        for n in ast.walk(node):
            is_text = isinstance(n, ast.Constant) and isinstance(n.value, str) and any(c.isalpha() for c in n.value)
            if (is_text or isinstance(n, ast.JoinedStr)) and id(n) not in wrapped:
                found.append(f"line {n.lineno}: {ast.unparse(n)[:60]}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "attr", None) in USER_TEXT_ATTRS for t in node.targets):
            check(node.value)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in USER_TEXT_CALLS:
            args = node.args[1:] if getattr(node.func, "attr", None) == "AddNewNodeByClass" else node.args[:1]
            for a in args:
                check(a)
    return found


def test_user_visible_strings_are_marked_for_translation():
    assert untranslated_strings(ast.parse('w.text = "Run"\nraise RuntimeError(f"x {y}")\n')) == [
        "line 1: 'Run'", "line 2: f'x {y}'"]
    assert untranslated_strings(ast.parse('w.text = _("Run {n}").format(n=1)\nw.toolTip = ""\n')) == []
    for path in (MODULE, LIB / "scene.py"):
        assert untranslated_strings(parsed(path)) == [], path.name


def test_self_test_uses_the_keys_the_demo_case_has(tmp_path):
    from jsnreg.synthetic import write_demo_case

    tree = parsed(LIB / "selftest.py")
    used = {n.slice.value for n in ast.walk(tree) if isinstance(n, ast.Subscript)
            and isinstance(n.value, ast.Name) and n.value.id == "paths" and isinstance(n.slice, ast.Constant)}
    assert used == {"baseline", "followup", "joints"}
    assert used <= set(write_demo_case(tmp_path))
