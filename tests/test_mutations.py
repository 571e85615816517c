"""Mutation tests of the checker: planted derivative bugs in generated modules must FAIL.

Each case edits one line of a generated module's backward code, the way a wrong VJP
rule (or a hand edit) would, and asserts that `nnc check` reports FAIL for exactly the
gradients the bug reaches, and PASS for the others.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import SPECS
from nnc.api import compile_spec, load_module
from nnc.cli import main
from nnc.runtime.gradcheck import check_module

# A broadcasting model with a `wrt` input: c is [3, 1] and r is [4] against x [3, 4].
BCAST = """\
model bcast
input x : float[3, 4]
input t : float[3, 4]
param c : float[3, 1] = normal(0.5)
param r : float[4] = normal(0.5)
h = tanh(x * c + r)
loss = mse(h, t)
output h
wrt x
"""

ALL_MLP = {"h1.W", "h1.b", "h2.W", "h2.b", "logits.W", "logits.b"}

# (id, spec, old line text, new line text, gradients that must fail)
MUTATIONS = [
    ("missing-1/N-cross-entropy", "mlp", "d_logits = (xp.exp(logp_logits) - onehot_y) / B",
     "d_logits = xp.exp(logp_logits) - onehot_y", ALL_MLP),
    ("missing-1/N-mse", BCAST, "d_residual = 0.16666666666666666 * residual",
     "d_residual = 2.0 * residual", {"c", "r", "x"}),
    ("missing-1/N-bce", "xor", "d_logit = d_t8 * y + prob / N", "d_logit = d_t8 * y + prob",
     {"hidden.W", "hidden.b", "logit.W", "logit.b"}),
    ("transposed-weight-gradient", "mazur", "d_W2 = xp.reshape(d_net_o, (2, 1)) * out_h",
     "d_W2 = (xp.reshape(d_net_o, (2, 1)) * out_h).T", {"W2"}),
    ("transposed-weight-gradient-sampled", "mlp", "d_h2_W = 0.0002 * h2_W + h1.T @ d_h2_pre",
     "d_h2_W = (0.0002 * h2_W + h1.T @ d_h2_pre).T", {"h2.W"}),
    ("tanh'-as-1-y", "xor", "d_hidden_pre = d_hidden * (1.0 - hidden * hidden)",
     "d_hidden_pre = d_hidden * (1.0 - hidden)", {"hidden.W", "hidden.b"}),
    ("tanh'-as-1-y-broadcast", BCAST, "d_h_pre = d_residual * (1.0 - h * h)",
     "d_h_pre = d_residual * (1.0 - h)", {"c", "r", "x"}),
    ("missing-sum-over-batch", "mlp", "d_h1_b = xp.sum(d_h1_pre, axis=0)", "d_h1_b = d_h1_pre",
     {"h1.b"}),
    ("first-row-instead-of-sum", BCAST, "d_r = xp.sum(d_h_pre, axis=0)", "d_r = d_h_pre[0]", {"r"}),
    ("missing-sum-over-broadcast-column", BCAST, "d_c = xp.sum(d_h_pre * x, axis=1, keepdims=True)",
     "d_c = (d_h_pre * x)[:, :1]", {"c"}),
    ("missing-sum-inside-hinge", "svm", "d_t4 = xp.sum(-d_t6, axis=1, keepdims=True)",
     "d_t4 = -d_t6", {"scores.W", "scores.b"}),
    ("flipped-sign-sse", "mazur", "d_out_o = -residual", "d_out_o = residual",
     {"W1", "b1", "W2", "b2"}),
    ("flipped-sign-bce", "xor", "d_t8 = -d_t9", "d_t8 = d_t9",
     {"hidden.W", "hidden.b", "logit.W", "logit.b"}),
    ("flipped-sign-wrt-input", BCAST, "d_x = d_h_pre * c", "d_x = -d_h_pre * c", {"x"}),
    ("relu'-always-one", "mlp", "d_h2_pre = xp.where(h2 > 0.0, d_h2, 0.0)", "d_h2_pre = d_h2",
     {"h1.W", "h1.b", "h2.W", "h2.b"}),
    # visible only where some margin is inactive, so with a batch large enough to have one
    ("hinge-counts-inactive-margins", "svm", "d_t6 = xp.where(t7 > 0.0, d_t7, 0.0)",
     "d_t6 = xp.where(t7 >= 0.0, d_t7, 0.0)", {"scores.W", "scores.b"}, {"N": 16}),
    ("leaky-relu-wrong-slope", "activations", "xp.where(z >= 0.0, d_p_pre, 0.1 * d_p_pre)",
     "xp.where(z >= 0.0, d_p_pre, 0.01 * d_p_pre)", {"z.W", "z.b"}),
    ("gelu-derivative-constant-off-by-3-percent", "activations", "0.134145 * t47", "0.13 * t47",
     {"z.W", "z.b"}),
]


def _source(spec: str) -> str:
    if "\n" in spec:
        return compile_spec(spec, "bcast.nn")
    path = SPECS / f"{spec}.nn"
    return compile_spec(path.read_text(), str(path))


def _mutate(spec: str, old: str, new: str) -> str:
    text = _source(spec)
    assert text.count(old) == 1, f"the generated code changed; update this mutation: {old!r}"
    return text.replace(old, new)


@pytest.mark.parametrize("spec", ["mlp", "xor", "mazur", "svm", "activations", BCAST],
                         ids=["mlp", "xor", "mazur", "svm", "activations", "bcast"])
def test_unmutated_modules_pass(spec):
    report = check_module(load_module(_source(spec)))
    assert report.passed, report.format()


@pytest.mark.parametrize("case", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutation_is_caught(case):
    _, spec, old, new, broken, *dims = case
    # 64 entries keep the mlp cases quick; its large weights are still sampled plus directions
    report = check_module(load_module(_mutate(spec, old, new)), dims=dims[0] if dims else None,
                          max_entries=64)
    assert not report.passed, report.format()
    failed = {r.name for r in report.rows if r.status == "FAIL"}
    assert failed == broken, report.format()
    assert "FAIL" in report.format().splitlines()[-1]


def test_missing_sum_reports_the_shape():
    report = check_module(load_module(_mutate("mlp", "d_h1_b = xp.sum(d_h1_pre, axis=0)", "d_h1_b = d_h1_pre")))
    row = next(r for r in report.rows if r.name == "h1.b")
    assert "shape (3, 256), expected (256,)" in row.message


def test_transposed_square_gradient_is_caught_in_sampled_mode():
    report = check_module(load_module(_mutate(*MUTATIONS[4][1:4])))
    row = next(r for r in report.rows if r.name == "h2.W")
    assert row.mode == "sampled" and row.status == "FAIL" and row.max_rel_err > 1e-2


def test_cli_fails_on_a_mutated_module_file(tmp_path: Path):
    path = tmp_path / "mazur_edited.py"
    path.write_text(_mutate("mazur", "d_out_o = -residual", "d_out_o = residual"))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "W1" in result.output
    path.write_text(_source("mazur"))
    assert CliRunner().invoke(main, ["check", str(path)]).exit_code == 0
