"""Shared fixtures: the shipped engine (loaded once) and the optional real clinical sample."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CLINICAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "clinical-sample"


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
