"""Mutation tests of the checker: planted derivative bugs must FAIL, and only where they reach.

Two kinds of bug (tests/mutate.py): a wrong VJP rule compiled through the whole pipeline
(a missing 1/N, a transposed weight gradient, tanh' written as 1 - y, a missing sum over a
broadcast axis, a flipped sign, and wrong rules of kinked and smooth primitives), and a
hand edit of a generated module's returned gradients, checked as a .py file. Each case
names the gradients that must FAIL; all others must PASS.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from mutate import edit_grad, generated, planted

from nnc.api import load_module
from nnc.cli import main
from nnc.ir.core import is_host
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

# Kinked primitives, and cross-entropy with probability targets (no fused rule).
KINKY = """\
model kinky
input x : float[B, 4]
input t : float[B, 3]
z = dense(x, 3)
loss = mse(abs(z) + maximum(z, 0.5 * t) + leaky_relu(z, alpha=0.2), t) + cross_entropy(z, softmax(t))
output z
"""

# A difference of two layers: the sign of the second one's gradient matters.
DIFF = """\
model diff
input x : float[B, 3]
input t : float[B, 2]
a = dense(x, 2)
b = tanh(dense(x, 2))
loss = mse(a - b, t)
output a
"""

XOR = {"hidden.W", "hidden.b", "logit.W", "logit.b"}
Z = {"z.W", "z.b"}


# ---- wrong rules: each is (original rule, builder, equation, cotangent) -> cotangents ------------

def div_forgets_the_count(orig, b, eqn, g):
    x, y = eqn.inputs
    if is_host(y):  # x / N (a mean): the 1/N is dropped
        return b.sum_to(g, shape=x.shape), None
    return orig(b, eqn, g)


def nll_forgets_the_batch(orig, b, eqn, g):
    logp, target = eqn.inputs
    return b.mul(target, b.neg(g)), b.mul(logp, b.neg(g))


def square_gradients_transposed(orig, b, eqn, g):
    return tuple(b.transpose(ct) if ct is not None and len(a.shape) == 2 and a.shape[0] == a.shape[1]
                 else ct for a, ct in zip(eqn.inputs, orig(b, eqn, g)))


def tanh_prime_as_one_minus_y(orig, b, eqn, g):
    return (b.mul(g, b.sub(1.0, eqn.out)),)


def no_sum_over_broadcast_axes(orig, b, eqn, g):
    return tuple(g if a.shape != eqn.out.shape else ct for a, ct in zip(eqn.inputs, orig(b, eqn, g)))


def sub_flips_the_second_sign(orig, b, eqn, g):
    x, y = eqn.inputs
    return b.sum_to(g, shape=x.shape), b.sum_to(g, shape=y.shape)


def passes_everything(orig, b, eqn, g):  # relu' = 1, abs' = 1: the mask is lost
    return (g,)


def both_operands_win(orig, b, eqn, g):  # maximum sends g to both operands
    x, y = eqn.inputs
    return b.sum_to(g, shape=x.shape), b.sum_to(g, shape=y.shape)


def leaky_slope_off(orig, b, eqn, g):
    x = eqn.inputs[0]
    return (b.where(b.ge(x, 0.0), g, b.mul(eqn.param("alpha") / 10, g)),)


def softmax_without_its_sum(orig, b, eqn, g):
    return (b.mul(eqn.out, g),)


def slightly_off(orig, b, eqn, g):  # a small bug: 1e-3 * g too much
    (ct,) = orig(b, eqn, g)
    return (b.add(ct, b.mul(1e-3, g)),)


# (id, spec, primitive, wrong rule, gradients that must fail[, dims])
RULE_BUGS = [
    ("missing-1/N-mse", BCAST, "div", div_forgets_the_count, {"c", "r", "x"}),
    ("missing-1/N-bce", "xor", "div", div_forgets_the_count, XOR),
    ("missing-1/N-cross-entropy-probabilities", KINKY, "nll", nll_forgets_the_batch, Z),
    ("transposed-weight-gradient", "mazur", "matmul", square_gradients_transposed, {"W1", "W2"}),
    ("transposed-weight-gradient-sampled", "mlp", "matmul", square_gradients_transposed, {"h2.W"}),
    ("tanh'-as-1-y", "xor", "tanh", tanh_prime_as_one_minus_y, {"hidden.W", "hidden.b"}),
    ("tanh'-as-1-y-broadcast", BCAST, "tanh", tanh_prime_as_one_minus_y, {"c", "r", "x"}),
    ("missing-sum-over-broadcast-axis", "mlp", "add", no_sum_over_broadcast_axes,
     {"h1.b", "h2.b", "logits.b"}),
    ("missing-sum-over-broadcast-axis-bcast", BCAST, "add", no_sum_over_broadcast_axes, {"r"}),
    ("flipped-sign-difference", DIFF, "sub", sub_flips_the_second_sign, {"b.W", "b.b"}),
    ("flipped-sign-bce", "xor", "sub", sub_flips_the_second_sign, XOR),
    ("relu'-always-one", "mlp", "relu", passes_everything, {"h1.W", "h1.b", "h2.W", "h2.b"}),
    # visible only where some margin is inactive, so with a batch large enough to have one
    ("hinge-counts-inactive-margins", "svm", "relu", passes_everything, {"scores.W", "scores.b"},
     {"N": 16}),
    ("abs'-always-one", KINKY, "abs", passes_everything, Z),
    ("maximum-feeds-both-operands", KINKY, "maximum", both_operands_win, Z),
    ("leaky-relu-wrong-slope", KINKY, "leaky_relu", leaky_slope_off, Z),
    # p.alpha sees the bug only through the few negative inputs of prelu: 1e-6 relative here
    ("softmax-without-its-sum", "activations", "softmax", softmax_without_its_sum, Z),
    ("gelu'-off-by-1e-3", "activations", "gelu", slightly_off, Z),
]


def _failed(report) -> set[str]:
    return {r.name for r in report.rows if r.status == "FAIL"}


@pytest.mark.parametrize("spec", ["mlp", "xor", "mazur", "svm", "activations", BCAST, KINKY, DIFF],
                         ids=["mlp", "xor", "mazur", "svm", "activations", "bcast", "kinky", "diff"])
def test_unmutated_modules_pass(spec):
    report = check_module(load_module(generated(spec)))
    assert report.passed, report.format()


@pytest.mark.parametrize("case", RULE_BUGS, ids=[c[0] for c in RULE_BUGS])
def test_wrong_rule_is_caught(monkeypatch, case):
    _, spec, prim, rule, broken, *dims = case
    planted(monkeypatch, prim, rule)
    # 64 entries keep the mlp cases quick; its large weights are still sampled plus directions
    report = check_module(load_module(generated(spec)), dims=dims[0] if dims else None, max_entries=64)
    assert not report.passed and _failed(report) == broken, report.format()
    assert report.format().splitlines()[-1].startswith("FAIL")


def test_missing_sum_reports_the_shape(monkeypatch):
    planted(monkeypatch, "add", no_sum_over_broadcast_axes)
    report = check_module(load_module(generated("mlp")), max_entries=16)
    row = next(r for r in report.rows if r.name == "h1.b")
    assert row.message == "gradient has shape (3, 256), expected (256,)"


def test_transposed_square_gradient_is_caught_in_sampled_mode(monkeypatch):
    planted(monkeypatch, "matmul", square_gradients_transposed)
    row = next(r for r in check_module(load_module(generated("mlp"))).rows if r.name == "h2.W")
    assert row.mode == "sampled" and row.status == "FAIL" and row.max_rel_err > 1e-2


# ---- hand edits of a generated module, checked as a file ----------------------------------------

# (id, spec, returned gradient, edit of its variable, gradients that must fail)
HAND_EDITS = [
    ("negated", "mazur", "W1", lambda d: f"-{d}", {"W1"}),
    ("transposed", "mazur", "W2", lambda d: f"{d}.T", {"W2"}),
    ("transposed-sampled", "mlp", "h2.W", lambda d: f"{d}.T", {"h2.W"}),
    ("scaled-by-the-batch-size", "xor", "logit.b", lambda d: f"3.0 * {d}", {"logit.b"}),
    ("not-summed-over-the-batch", "mlp", "h1.b", lambda d: f"xp.broadcast_to({d}, (3, 256))", {"h1.b"}),
    ("wrt-input-negated", BCAST, "x", lambda d: f"-{d}", {"x"}),
]


@pytest.mark.parametrize("case", HAND_EDITS, ids=[c[0] for c in HAND_EDITS])
def test_hand_edited_module_fails(tmp_path: Path, case):
    _, spec, name, edit, broken = case
    path = tmp_path / "edited.py"
    path.write_text(edit_grad(spec, name, edit))
    result = CliRunner().invoke(main, ["check", str(path), "--json"])
    assert result.exit_code == 1, result.output
    rows = json.loads(result.output)["rows"]
    assert {r["name"] for r in rows if r["status"] == "FAIL"} == broken


def test_the_unedited_module_file_passes(tmp_path: Path):
    path = tmp_path / "mazur.py"
    path.write_text(generated("mazur"))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0 and result.output.rstrip().endswith("match finite differences")
