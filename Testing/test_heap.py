"""The registering processes' heap setting: freed arrays are reused, not page-faulted in again."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "JSNRegistration"

# Allocates and frees four 1 MB arrays 50 times, twice, and prints the page faults of the second round.
CHURN = """
import resource, sys
import numpy as np
from jsnreg import heap
if sys.argv[1] == "keep":
    assert heap.keep_freed_memory()
def churn():
    for _ in range(50):
        arrays = [np.ones(1 << 17) for _ in range(4)]
        del arrays
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    proc = subprocess.run([sys.executable, "-c", CHURN, mode], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_arrays_are_reused_without_page_faults():
    assert faults("default") > 10000  # each 1 MB array returned and faulted in again (256 pages)
    assert faults("keep") < 100
