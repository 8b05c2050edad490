"""Where the module's files are, in the source tree and in a built or installed extension."""

from __future__ import annotations

from pathlib import Path


def resource_folder(module_file: str) -> Path:
    """The Resources folder: beside the module file in a built or installed extension (CMake copies
    it there), at the repository root (one level up) in the source tree."""
    here = Path(module_file).resolve().parent
    for folder in (here / "Resources", here.parent / "Resources"):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"no Resources folder beside {module_file} or one level up")
