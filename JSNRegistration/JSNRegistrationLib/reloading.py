"""Reload the module's packages (Slicer's Reload button reloads only the module file)."""

from __future__ import annotations

import importlib
import sys


def reload_packages(packages, modules=None) -> list[str]:
    """importlib.reload every loaded module of `packages` (e.g. ("jsnreg", "JSNRegistrationLib")).

    In sys.modules' order, which is the order their first import finished (the import system
    moves a module to the end once it has run): the modules a module imports come before it, so
    it picks up their new definitions. Returns the names reloaded, in that order.
    """
    modules = sys.modules if modules is None else modules
    names = [name for name in list(modules)
             if any(name == p or name.startswith(p + ".") for p in packages)]
    importlib.invalidate_caches()
    for name in names:
        importlib.reload(modules[name])
    return names
