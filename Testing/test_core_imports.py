"""The core package never imports a GUI toolkit or Slicer: every face must be able to use it."""

import ast
from pathlib import Path

import jsnreg

FORBIDDEN = {"slicer", "qt", "ctk", "vtk", "PyQt5", "PyQt6", "pyqtgraph"}
CORE_DIR = Path(jsnreg.__file__).parent


def imported_roots(source: str) -> set[str]:
    """Top-level names of every module a source imports (anywhere in it, lazy imports included)."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", ""))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            roots.add(str(node.args[0].value).split(".")[0])
    return roots


def test_walker_sees_every_import_form():
    src = "import vtk.util\nfrom PyQt5 import QtCore\ndef f():\n    import slicer\n" \
          "importlib.import_module('qt')\nfrom . import joints\n"
    assert imported_roots(src) == {"vtk", "PyQt5", "slicer", "qt"}


def test_core_imports_no_gui_or_slicer():
    modules = sorted(CORE_DIR.rglob("*.py"))
    assert len(modules) > 5  # the walk found the package
    offenders = {str(p.relative_to(CORE_DIR)): sorted(imported_roots(p.read_text(encoding="utf-8")) & FORBIDDEN)
                 for p in modules}
    assert {k: v for k, v in offenders.items() if v} == {}
