"""`nnc summary` against counts made by hand from the specs (cost model: nnc/summary.py)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from helpers import SPECS, compile_and_load
from nnc import bench
from nnc.cli import main
from nnc.summary import Poly, summarize

B = Poly({("B",): 1})
TINY = "model tiny\ninput x : float[4]\nparam w : float[4] = ones\nh = tanh(w * x)\nloss = sum(h)\n"


def _mlp(**kw):
    return summarize((SPECS / "mlp.nn").read_text(), "mlp.nn", **kw)


def test_mlp_parameter_count():
    s = _mlp()
    assert s.params == 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10 == 269_322
    rows = {r.name: r for r in s.rows}
    assert [(n, c) for n, _, c in rows["h1"].params] == [("h1.W", 784 * 256), ("h1.b", 256)]
    assert rows["logits"].param_count == 256 * 10 + 10
    assert rows["h1"].shape == ("B", 256) and rows["loss"].shape == ()


def test_mlp_flops_by_hand():
    rows = {r.name: r for r in _mlp().rows}
    # h1 = relu(dense(x, 256)): x @ W (2 * B*784*256), + b (B*256), relu (B*256)
    assert rows["h1"].forward == (2 * 784 * 256 + 256 + 256) * B
    # its backward: relu mask and select (2 * B*256), d_b sum (B*256), x^T @ d (2*784*B*256),
    # and adding the l2 term's 2e-4 * W to d_W (784*256)
    assert rows["h1"].backward == (3 * 256 + 2 * 784 * 256) * B + 784 * 256
    # loss: log_softmax (5 * B*10), nll (2 * B*10), l2: square and sum of both W, three scalar ops
    assert rows["loss"].forward == 70 * B + 2 * (784 * 256 + 256 * 256) + 3
    s = _mlp(dims={"B": 128})
    assert {r.name: r for r in s.rows}["h1"].forward.value == (2 * 784 * 256 + 512) * 128
    # sgd with momentum: v = 0.9 v + g and p - 0.1 v, four operations per parameter
    assert s.optimizer_flops.value == 4 * 269_322
    assert s.step.value == s.forward.value + s.backward.value + 4 * 269_322


PERCEPTRON = """\
model perc
input x : float[N, 4]
input t : float[N, 3]
out = sign(dense(x, 3, bias=false))
loss = mse(out, t)
output out
optimizer perceptron(lr=0.5)
"""


def test_a_perceptron_step_counts_its_rule_not_a_backward(tmp_path):
    """train_step runs loss() and the rule's own forward, then (out - t) and x^T @ (out - t);
    it was counted as forward + backward (0: sign has no gradient) + update."""
    s = summarize(PERCEPTRON, "perc.nn", dims={"N": 10})
    loss = 2 * 10 * 4 * 3 + 30 + (30 + 30 + 30 + 1)  # x @ W, sign, mse: sub, square, sum, / size
    rule = (2 * 10 * 4 * 3 + 30) + 30 + 2 * 4 * 10 * 3  # forward to out again, out - t, x^T @ (out - t)
    assert s.forward.value == loss and s.backward.value == 0
    assert s.direction_flops.value == loss + rule
    assert s.step.value == loss + rule + 2 * 12  # p - lr * d: two operations per weight
    spec = tmp_path / "perc.nn"
    spec.write_text(PERCEPTRON)
    r = CliRunner().invoke(main, ["summary", str(spec), "--dim", "N=10"])
    assert r.exit_code == 0, r.output
    assert f"FLOPs, loss and perceptron direction: {loss + rule}" in r.output
    setup = bench.prepare(compile_and_load(spec, tmp_path), PERCEPTRON, "perc.nn", {"N": 10},
                          "train_step,value_and_grad", "float32")
    assert setup.flops == {"train_step": loss + rule + 2 * 12, "value_and_grad": loss}


def test_mlp_saved_activations_by_hand():
    s = _mlp()
    rows = {r.name: r for r in s.rows}
    assert rows["x"].saved == 784 * 4 * B  # x^T @ d_h1 reads the input
    assert rows["h1"].saved == rows["h2"].saved == 256 * 4 * B  # relu masks come from the outputs
    assert rows["logits"].saved == Poly(0)  # the fused softmax-cross-entropy reads log-probabilities
    assert rows["loss"].saved == 10 * 4 * B  # log-probabilities (the one-hot is rebuilt from the labels)
    assert rows["y"].saved == 8 * B  # int64 labels, read again to rebuild the one-hot
    assert s.saved == (784 + 256 + 256 + 10) * 4 * B + 8 * B
    assert s.peak is None  # B is unbound
    assert _mlp(dtype="float64").saved == (784 + 256 + 256 + 10 + 1) * 8 * B


def test_peak_memory_by_hand():
    # h_pre 16 B; h 16 (h_pre freed); loss 4; t2 = h * h 16 (h freed): 36 live at most
    s = summarize(TINY, "tiny.nn")
    assert s.peak == Poly(36)
    assert summarize(TINY, "tiny.nn", dtype="float64").peak == Poly(72)


def test_poly_arithmetic_and_text():
    p = 401_408 * B + 512
    assert p.text() == "401,408*B + 512" and p.text("") == "401408*B + 512"
    assert (B * B + 2 * B).text() == "B*B + 2*B"
    assert p.value is None and Poly(7).value == 7 and Poly(0).text() == "0"


def test_cli_table_and_json():
    runner = CliRunner()
    table = runner.invoke(main, ["summary", str(SPECS / "mlp.nn")])
    assert table.exit_code == 0, table.output
    assert "269,322" in table.output and "401,920*B" in table.output and "B symbolic" in table.output
    assert "bind every dimension" in table.output
    data = json.loads(runner.invoke(main, ["summary", str(SPECS / "mlp.nn"), "--json"]).output)
    assert data["totals"]["params"] == 269_322
    assert data["totals"]["param_bytes"] == {"float32": 4 * 269_322, "float64": 8 * 269_322}
    h1 = next(r for r in data["rows"] if r["name"] == "h1")
    assert h1["flops_forward"] == "401920*B" and h1["shape"] == ["B", 256]
    bound = json.loads(runner.invoke(main, ["summary", str(SPECS / "mlp.nn"), "--dim", "B=128", "--json"]).output)
    assert bound["dims"] == {"B": 128}
    assert next(r for r in bound["rows"] if r["name"] == "h1")["flops_forward"] == 401_920 * 128
    assert isinstance(bound["totals"]["peak_activation_bytes"], int)


@pytest.mark.parametrize("args,message", [
    (["--dim", "Q=3"], "unknown dimension Q (the model's symbolic dimensions: B)"),  # as check's
    (["--dim", "B=0"], "expected NAME=SIZE"),
    (["--dim", "B"], "expected NAME=SIZE"),
    (["--dim", "B=2", "--dim", "B=3"], "--dim B is given twice"),  # the last one won (tests/unseen7 sweep)
])
def test_bad_dims_exit_2(args, message):
    result = CliRunner().invoke(main, ["summary", str(SPECS / "mlp.nn"), *args])
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize("spec", sorted(SPECS.glob("*.nn")), ids=lambda p: p.stem)
def test_every_example_spec_summarizes(spec):
    s = summarize(spec.read_text(), spec.name)
    assert s.forward.terms and s.backward.terms
    assert sum(r.param_count for r in s.rows) == s.params > 0
