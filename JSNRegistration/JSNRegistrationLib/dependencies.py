"""What the core needs in Slicer's Python, from Resources/requirements.txt."""

from __future__ import annotations

import importlib.util
import re
from typing import Callable

# pip's distribution name -> the module the core imports, where they differ.
IMPORT_NAMES = {"scikit-image": "skimage", "opencv-python": "cv2"}


def requirements(text: str) -> list[str]:
    """The requirement lines of a requirements.txt (comments and blank lines dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def distribution_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]


def missing_requirements(text: str, is_importable: Callable[[str], bool] | None = None) -> list[str]:
    """Requirement lines (with their version bounds, for pip) whose module cannot be imported."""
    is_importable = is_importable or (lambda name: importlib.util.find_spec(name) is not None)
    missing = []
    for requirement in requirements(text):
        name = distribution_name(requirement)
        if not is_importable(IMPORT_NAMES.get(name.lower(), name)):
            missing.append(requirement)
    return missing
