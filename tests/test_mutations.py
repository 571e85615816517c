"""Mutation tests of the checker: planted derivative bugs in generated modules must FAIL.

Each case edits one assignment in a generated module's backward code, the way a wrong
VJP rule (or a hand edit) would, and asserts that `nnc check` reports FAIL for exactly
the gradients the bug reaches, and PASS for the others. Edits find their line by the
adjoint's name (d_W2, d_h1_pre: fixed by the naming convention) and rewrite its
right-hand side (tests/mutate.py), so they survive changes to how expressions are
printed; an edit that no longer applies fails loudly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from mutate import becomes, generated, mutate, negate, sub, times, transpose

from nnc.api import load_module
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


# (id, spec, adjoint assigned in the backward section, edit of its right-hand side,
#  gradients that must fail[, dims]). Adjoints of spec names (d_h1, d_W2) are named by
# the naming convention, so the edits survive changes to how expressions are printed.
MUTATIONS = [
    # a missing 1/N: the adjoint multiplied back by N
    ("missing-1/N-cross-entropy", "mlp", "d_logits", times("B"), ALL_MLP),
    ("missing-1/N-mse", BCAST, "d_residual", times("12"), {"c", "r", "x"}),
    ("missing-1/N-bce", "xor", "d_logit", times("N"), {"hidden.W", "hidden.b", "logit.W", "logit.b"}),
    ("transposed-weight-gradient", "mazur", "d_W2", transpose, {"W2"}),
    ("transposed-weight-gradient-sampled", "mlp", "d_h2_W", transpose, {"h2.W"}),
    ("tanh'-as-1-y", "xor", "d_hidden_pre",
     sub(r"hidden \* hidden|hidden \*\* 2(\.0)?|xp\.square\(hidden\)", "hidden"),
     {"hidden.W", "hidden.b"}),
    ("tanh'-as-1-y-broadcast", BCAST, "d_h_pre", sub(r"h \* h|h \*\* 2(\.0)?|xp\.square\(h\)", "h"),
     {"c", "r", "x"}),
    ("missing-sum-over-batch", "mlp", "d_h1_b", becomes("d_h1_pre"), {"h1.b"}),
    ("first-row-instead-of-sum", BCAST, "d_r", becomes("d_h_pre[0]"), {"r"}),
    ("missing-sum-over-broadcast-column", BCAST, "d_c", becomes("(d_h_pre * x)[:, :1]"), {"c"}),
    ("missing-sum-inside-hinge", "svm", "d_correct_score",
     sub(r"xp\.sum\((.*), axis=1, keepdims=True\)", r"\1"), {"scores.W", "scores.b"}),
    ("flipped-sign-sse", "mazur", "d_out_o", negate, {"W1", "b1", "W2", "b2"}),
    ("flipped-sign-bce", "xor", "d_logit", negate, {"hidden.W", "hidden.b", "logit.W", "logit.b"}),
    ("flipped-sign-wrt-input", BCAST, "d_x", negate, {"x"}),
    ("relu'-always-one", "mlp", "d_h2_pre", becomes("d_h2"), {"h1.W", "h1.b", "h2.W", "h2.b"}),
    # visible only where some margin is inactive, so with a batch large enough to have one
    ("hinge-counts-inactive-margins", "svm", None, sub(r"xp\.where\((\w+) > 0\.0, ", r"xp.where(\1 >= 0.0, "),
     {"scores.W", "scores.b"}, {"N": 16}),
    ("leaky-relu-wrong-slope", "activations", "d_z",
     sub(r"0\.1 \* d_p_pre|d_p_pre \* 0\.1\b", "0.01 * d_p_pre"), {"z.W", "z.b"}),
    ("gelu-derivative-constant-off-by-3-percent", "activations", "d_z", sub(r"0\.134145", "0.13"),
     {"z.W", "z.b"}),
]


@pytest.mark.parametrize("spec", ["mlp", "xor", "mazur", "svm", "activations", BCAST],
                         ids=["mlp", "xor", "mazur", "svm", "activations", "bcast"])
def test_unmutated_modules_pass(spec):
    report = check_module(load_module(generated(spec)))
    assert report.passed, report.format()


@pytest.mark.parametrize("case", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutation_is_caught(case):
    _, spec, var, edit, broken, *dims = case
    # 64 entries keep the mlp cases quick; its large weights are still sampled plus directions
    report = check_module(load_module(mutate(spec, var, edit)), dims=dims[0] if dims else None,
                          max_entries=64)
    assert not report.passed, report.format()
    failed = {r.name for r in report.rows if r.status == "FAIL"}
    assert failed == broken, report.format()
    assert "FAIL" in report.format().splitlines()[-1]


def test_missing_sum_reports_the_shape():
    report = check_module(load_module(mutate("mlp", "d_h1_b", becomes("d_h1_pre"))))
    row = next(r for r in report.rows if r.name == "h1.b")
    assert "shape (3, 256), expected (256,)" in row.message


def test_transposed_square_gradient_is_caught_in_sampled_mode():
    report = check_module(load_module(mutate(*MUTATIONS[4][1:4])))
    row = next(r for r in report.rows if r.name == "h2.W")
    assert row.mode == "sampled" and row.status == "FAIL" and row.max_rel_err > 1e-2


def test_cli_fails_on_a_mutated_module_file(tmp_path: Path):
    path = tmp_path / "mazur_edited.py"
    path.write_text(mutate("mazur", "d_out_o", negate))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "W1" in result.output
    path.write_text(generated("mazur"))
    assert CliRunner().invoke(main, ["check", str(path)]).exit_code == 0
