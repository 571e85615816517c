"""The forward-mode checker that `nnc check --mode fwd|both` runs."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import SPEC_PATHS, compile_and_load, random_inputs
from nnc.runtime.jvpcheck import check_forward_mode


@pytest.mark.parametrize("spec", SPEC_PATHS, ids=lambda p: p.stem)
def test_generated_forward_mode_passes(spec, tmp_path):
    m = compile_and_load(spec, tmp_path)
    rng = np.random.default_rng(0)
    report = check_forward_mode(m, m.init_params(seed=0), random_inputs(m, rng), directions=2)
    assert report.ok, "\n".join(report.lines())
    assert len(report.comparisons) == 6


def _mazur(tmp_path):
    m = compile_and_load(next(p for p in SPEC_PATHS if p.stem == "mazur"), tmp_path)
    return m, m.init_params(), [np.array([0.05, 0.10]), np.array([0.01, 0.99])]


def test_a_wrong_jvp_is_reported(tmp_path):
    m, params, inputs = _mazur(tmp_path)
    right = m.jvp
    m.jvp = lambda p, v, *ins: (right(p, v, *ins)[0], 1.01 * right(p, v, *ins)[1])
    report = check_forward_mode(m, params, inputs, directions=1)
    failed = {c.what for c in report.comparisons if not c.ok}
    assert not report.ok
    assert failed == {"jvp vs finite differences of the loss", "jvp vs reverse mode <grad, v>"}
    assert any("FAILED" in line for line in report.lines())


def test_a_wrong_hvp_is_reported(tmp_path):
    m, params, inputs = _mazur(tmp_path)
    right = m.hvp
    m.hvp = lambda p, v, *ins: {k: a + 1e-3 for k, a in right(p, v, *ins).items()}
    report = check_forward_mode(m, params, inputs, directions=1)
    assert [c.what for c in report.comparisons if not c.ok] == ["hvp vs finite differences of the gradient"]


def test_a_nan_hvp_is_reported(tmp_path):
    """A nan compared with a nan finite difference was ok: its error, nan, never exceeded 0."""
    m, params, inputs = _mazur(tmp_path)
    right = m.hvp
    m.hvp = lambda p, v, *ins: {k: a * np.nan for k, a in right(p, v, *ins).items()}
    report = check_forward_mode(m, params, inputs, directions=1)
    assert [c.what for c in report.comparisons if not c.ok] == ["hvp vs finite differences of the gradient"]
