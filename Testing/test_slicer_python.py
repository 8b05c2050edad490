"""The code that runs in 3D Slicer's Python (5.6-5.8: Python 3.9) is written for Python 3.9.

A static check over the core, the Lib and the module file: the parser at 3.9's grammar, then the
3.10+ constructs the parser accepts but 3.9 fails on when the line runs. `make test` also runs
the tests marked slicer_python in a Python 3.9 environment with pydicom 2.4 (no torch), where the
torch-free part of the core is imported for real.
"""

import ast
import importlib
import io
import os
import sys
import tokenize
from pathlib import Path

import pytest

pytestmark = pytest.mark.slicer_python

MODULE_DIR = Path(__file__).resolve().parents[1] / "JSNRegistration"
SLICER_FILES = sorted([MODULE_DIR / "JSNRegistration.py", *(MODULE_DIR / "JSNRegistrationLib").glob("*.py"),
                       *(MODULE_DIR / "jsnreg").glob("*.py")])
BUILTIN_TYPES = {"int", "float", "str", "bool", "bytes", "complex", "list", "dict", "tuple", "set",
                 "frozenset", "type", "object"}
# Names the standard library gained after 3.9 (the ones a numeric/GUI code base is likely to use).
NEWER_NAMES = {
    "typing": {"TypeAlias", "ParamSpec", "Concatenate", "TypeGuard", "Self", "LiteralString", "Never",
               "assert_never", "reveal_type", "Required", "NotRequired", "Unpack", "TypeVarTuple", "override"},
    "itertools": {"pairwise", "batched"},
    "enum": {"StrEnum", "verify", "ReprEnum"},
    "datetime": {"UTC"},
    "contextlib": {"chdir", "aclosing"},
    "dataclasses": {"KW_ONLY"},
}
NEWER_MODULES = {"tomllib", "zoneinfo._tzpath"}
NEWER_KEYWORDS = {"dataclass": {"slots", "kw_only", "match_args", "weakref_slot"}, "zip": {"strict"}}
TORCH_FREE_CORE = ["errors", "images", "joints", "job", "worker", "results", "transforms", "split", "rois",
                   "refine", "synthetic", "figures", "measure", "cli", "detect", "detect_refine", "detect_confidence",
                   "real_hands"]


def _is_type_expr(node) -> bool:
    """True for what is surely a type: None, a builtin type, or a subscripted one (list[int])."""
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name):
        return node.id in BUILTIN_TYPES
    if isinstance(node, ast.Subscript):
        return _is_type_expr(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_type_expr(node.left) or _is_type_expr(node.right)
    return False


def _annotation_nodes(tree) -> set:
    """ids of every node inside an annotation (evaluated lazily with `from __future__ import annotations`)."""
    ids = set()
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotations = [a.annotation for a in args.posonlyargs + args.args + args.kwonlyargs
                           + [args.vararg, args.kwarg] if a is not None] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for a in filter(None, annotations):
            ids.update(id(n) for n in ast.walk(a))
    return ids


def _parenthesized_with_lines(source: str) -> list:
    """Lines of `with (a as x, b as y):` (3.10+; the 3.9 parser mode misses it): `as` inside the
    parentheses that directly follow `with`."""
    lines, depth, watching = [], 0, None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.string == "with" and depth == 0:
            watching = "open"
        elif watching == "open":
            watching = "inside" if tok.string == "(" else None
            depth = 1 if watching else 0
        elif watching == "inside":
            depth += tok.string in "([{" and tok.type == tokenize.OP
            depth -= tok.string in ")]}" and tok.type == tokenize.OP
            if depth == 1 and tok.type == tokenize.NAME and tok.string == "as":
                lines.append(tok.start[0])
                watching, depth = None, 0
            elif depth == 0:
                watching = None
    return lines


def problems_for_python39(source: str, name: str = "<source>") -> list:
    """Lines of `source` that would fail on Python 3.9, as "name:line: what" strings."""
    try:
        tree = ast.parse(source, filename=name, feature_version=(3, 9))
    except SyntaxError as exc:
        return [f"{name}:{exc.lineno}: not Python 3.9 syntax: {exc.msg}"]
    found = [f"{name}:{line}: parenthesized context managers are 3.10+"
             for line in _parenthesized_with_lines(source)]
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                 and any(a.name == "annotations" for a in n.names) for n in tree.body)
    in_annotation = _annotation_nodes(tree)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and _is_type_expr(node):
            if id(node) not in in_annotation:
                found.append(f"{name}:{line}: `X | Y` of types is evaluated at run time (3.10+)")
            elif not future:
                found.append(f"{name}:{line}: `X | Y` annotation without `from __future__ import annotations`")
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            for kw in node.keywords:
                if kw.arg in NEWER_KEYWORDS.get(called, ()):
                    found.append(f"{name}:{line}: {called}({kw.arg}=) is 3.10+")
        elif isinstance(node, ast.ImportFrom) and node.module in NEWER_NAMES:
            for a in node.names:
                if a.name in NEWER_NAMES[node.module]:
                    found.append(f"{name}:{line}: {node.module}.{a.name} is newer than 3.9")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.attr in NEWER_NAMES.get(node.value.id, ()):
            found.append(f"{name}:{line}: {node.value.id}.{node.attr} is newer than 3.9")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found += [f"{name}:{line}: module {m} is newer than 3.9" for m in modules if m in NEWER_MODULES]
    return found


@pytest.mark.parametrize("source, what", [
    ("match x:\n    case 1:\n        pass\n", "syntax"),
    ("with (open('a') as f, open('b') as g):\n    pass\n", "parenthesized"),
    ("ok = isinstance(3, int | float)\n", "run time"),
    ("Alias = list[int] | None\n", "run time"),
    ("def f(x: int | None) -> None:\n    pass\n", "without `from __future__"),
    ("from dataclasses import dataclass\n@dataclass(slots=True)\nclass A:\n    x: int = 0\n", "slots"),
    ("for a, b in zip([1], [2], strict=True):\n    pass\n", "strict"),
    ("from typing import TypeAlias\n", "newer than 3.9"),
    ("import itertools\npairs = itertools.pairwise([1, 2])\n", "newer than 3.9"),
    ("import tomllib\n", "newer than 3.9"),
])
def test_the_check_finds_each_construct(source, what):
    found = problems_for_python39(source)
    assert found and what in found[0], found


def test_the_check_passes_what_python39_runs():
    source = ("from __future__ import annotations\nimport numpy as np\n"
              "with open('a') as f, (open('b')) as g:\n    pass\nwith (open('c')):\n    pass\n"
              "def f(x: int | None, y: list[str] | None = None) -> dict[str, float] | None:\n"
              "    flags = 1 | 2\n    return {k: v for k, v in zip('ab', [1.0, 2.0])}\n"
              "mask = np.ones(3, bool) | np.zeros(3, bool)\n")
    assert problems_for_python39(source) == []


def test_core_lib_and_module_are_python39():
    assert len(SLICER_FILES) > 20
    found = [p for path in SLICER_FILES
             for p in problems_for_python39(path.read_text(encoding="utf-8"), str(path.relative_to(MODULE_DIR)))]
    assert not found, "\n".join(found)


def test_torch_free_core_imports_here():
    """In Slicer's Python (make test-slicer-python) this imports the core for real on 3.9."""
    for name in TORCH_FREE_CORE:
        importlib.import_module(f"jsnreg.{name}")


@pytest.mark.skipif(not os.environ.get("JSNREG_EXPECT_SLICER_PYTHON"), reason="only in make test-slicer-python")
def test_running_in_slicers_versions():
    import pydicom

    assert pydicom.__version__.startswith("2.4"), pydicom.__version__
    if sys.version_info[:2] != (3, 9):
        pytest.skip(f"no Python 3.9 on this machine (ran {sys.version.split()[0]}): only pydicom 2.4 checked")


def test_joint_detection_runs_here():
    """Detect joints runs in Slicer's own process (numpy and scipy only): on the demo hand here, and
    in Python 3.9 with `make test-slicer-python`."""
    import tempfile

    from jsnreg.detect import detect_joints
    from jsnreg.images import read_radiograph
    from jsnreg.joints import DEFAULT_JOINTS
    from jsnreg.synthetic import write_demo_case

    with tempfile.TemporaryDirectory() as folder:
        image = read_radiograph(write_demo_case(folder)["baseline"])
    assert set(DEFAULT_JOINTS) <= {j.name for j in detect_joints(image.pixels, image.spacing_mm)}


def test_setup_allows_slicers_python_and_keeps_torch_out():
    """`PythonSlicer -m pip install <repo>` must work on Slicer 5.6-5.8 and pull no torch (the
    PyTorch extension installs a matching one)."""
    tree = ast.parse((MODULE_DIR.parent / "setup.py").read_text())
    setup_call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: k.value for k in setup_call.keywords}
    assert ast.literal_eval(kw["python_requires"]) == ">=3.9"
    requires = ast.literal_eval(kw["install_requires"])
    assert "pydicom>=2.4" in requires and not any(r.lower().startswith("torch") for r in requires)
    assert all(">=" in r and "==" not in r for r in requires)  # lower bounds only: Slicer's own numpy stays
    assert ast.literal_eval(kw["extras_require"])["torch"] == ["torch>=2.1"]


def test_worker_measures_and_reports_here_without_torch(tmp_path):
    """The worker Slicer starts, end to end: two joints of the demo pair, then the PDF report, and
    torch never imported. In `make test-slicer-python` this is Python 3.9 with pydicom 2.4, no torch."""
    import json
    import subprocess

    from jsnreg.joints import joints_to_json, load_joints_json
    from jsnreg.synthetic import write_demo_case

    demo = write_demo_case(tmp_path / "demo")
    joints = joints_to_json(load_joints_json(demo["joints"])[:2])["joints"]
    (tmp_path / "request.json").write_text(json.dumps({"baseline": demo["baseline"], "followup": demo["followup"],
                                                       "joints": joints, "out_dir": str(tmp_path / "out")}))
    code = ("import sys; from jsnreg import worker; a = worker.main([sys.argv[1]]);"
            "b = worker.main(['--report', sys.argv[2], sys.argv[3]]); print(a, b, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "request.json"), str(tmp_path / "out"),
                           str(tmp_path / "r.pdf")], env={**os.environ, "PYTHONPATH": str(MODULE_DIR)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[-1] == "0 0 False", proc.stdout[-1000:]
    events = [json.loads(line) for line in lines[:-1]]
    assert [e["event"] for e in events] == ["progress", "progress", "finished", "finished"]
    assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"
