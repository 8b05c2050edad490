"""Seeded fuzzing of the readers (the long run: python -m jsnreg.fuzz --cases 5000): damaged
DICOM bytes, odd DICOM tag values and damaged session fields end as a clean reading or an
InputError, never another exception or a silently bad value."""

import pytest

from jsnreg import fuzz

CASES = 300


@pytest.mark.parametrize("kind", fuzz.KINDS)
def test_fuzzed_inputs_are_read_or_refused_cleanly(kind, tmp_path):
    tally = fuzz.FUZZERS[kind](CASES, 2026, tmp_path)
    assert tally.cases == CASES
    assert not tally.crashes, "\n\n".join(tally.crashes[:3])
    # Both outcomes occur, so the cases reach past the first check.
    assert tally.read > 0 and tally.clean_errors > 0, tally.line()


def test_fuzz_command_reports_counts(capsys):
    assert fuzz.main(["--cases", "20", "--seed", "3", "--kinds", "session"]) == 0
    assert "session: 20 cases" in capsys.readouterr().out
