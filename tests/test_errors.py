"""Bad-spec goldens: every tests/errors/*.nn gets its expected diagnostics from the real CLI.

Regenerate the .stderr files after an intended change to a message with

    python -m pytest tests/test_errors.py --update-goldens

and read the diff in review.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnc.cli import main

ERRORS = Path(__file__).resolve().parent / "errors"
CASES = sorted(ERRORS.glob("*.nn"))
LOCATED = re.compile(r"^(?P<file>[^:\n]+\.nn):(?P<line>[1-9]\d*):(?P<col>[1-9]\d*): error: \S")


def run_cli(args: list[str], cwd: Path, monkeypatch) -> tuple[int, str, str]:
    """Run the real `nnc` command group in-process, in `cwd`; (exit code, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # an escaped exception is a failure, shown with its traceback
    return result.exit_code, result.stdout, result.stderr


def test_corpus_is_large_enough():
    assert len(CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_spec_golden(case: Path, monkeypatch, update_goldens: bool):
    code, out, err = run_cli(["compile", case.name], ERRORS, monkeypatch)
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    first = err.splitlines()[0]
    match = LOCATED.match(first)
    assert match and match["file"] == case.name, first
    golden = case.with_suffix(".stderr")
    if update_goldens:
        golden.write_text(err, encoding="utf-8", newline="")
    assert golden.exists(), f"no golden for {case.name}: run pytest tests/test_errors.py --update-goldens"
    assert err == golden.read_text(encoding="utf-8")


def test_no_orphan_goldens():
    stems = {c.stem for c in CASES}
    assert sorted(g.stem for g in ERRORS.glob("*.stderr") if g.stem not in stems) == []


@pytest.mark.parametrize("case", CASES[:: max(1, len(CASES) // 12)], ids=lambda c: c.stem)
def test_ir_command_reports_the_same(case: Path, monkeypatch):
    """`nnc ir` goes through the same front end and reports identically."""
    code, out, err = run_cli(["ir", case.name], ERRORS, monkeypatch)
    assert code == 2 and out == ""
    assert err == case.with_suffix(".stderr").read_text(encoding="utf-8")
