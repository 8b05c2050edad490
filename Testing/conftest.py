"""Shared fixtures: the shipped engine (loaded once) and the optional real clinical sample."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CLINICAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "clinical-sample"


def pytest_configure(config):
    config.addinivalue_line("markers", "slicer_python: runs again in Python 3.9 with pydicom 2.4 "
                            "(3D Slicer 5.6-5.8), without torch: `make test-slicer-python`")


@pytest.fixture(scope="session")
def engine():
    from jsnreg.register import Engine

    return Engine.load()


@pytest.fixture
def clinical_sample():
    """The real clinical ROI pair (not in the repository): skipped where it is absent."""
    if not (CLINICAL / "reference.json").exists():
        pytest.skip("clinical sample not available (../shared/data/clinical-sample)")
    return CLINICAL
