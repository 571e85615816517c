"""Training results the project promises: XOR, the perceptron rule, digits, worked example 1."""

from __future__ import annotations

import io
import math
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from helpers import SPECS, compile_and_load
from nnc.api import build_program
from nnc.runtime import data as datamod
from nnc.runtime import train as tr


def _train(spec_text: str, data: str, **options):
    prog = build_program(spec_text, "t.nn")
    return tr.train(prog, "t.nn", data, tr.Options(quiet=True, **options), stream=io.StringIO())


SINGLE_LAYER = """\
model linear
input  x : float[N, 2]
input  y : float[N, 1]
logit  = dense(x, 1)
prob   = sigmoid(logit)
loss   = bce(logit, y)
output prob
optimizer sgd(lr=0.5, momentum=0.9)
"""

PERCEPTRON = """\
model perceptron
input  x : float[N, 2]
input  t : float[N, 1]
out    = {f}(dense(x, 1))
loss   = mse(out, t)
output out
optimizer perceptron(lr=0.1)
"""


def test_xor_spec_learns_xor():
    run = _train((SPECS / "xor.nn").read_text(), "xor", seed=0)
    assert run.history[-1].accuracy == 1.0
    assert run.stopped is None


def test_a_single_layer_cannot_learn_xor():
    for seed in range(3):
        run = _train(SINGLE_LAYER, "xor", seed=seed, epochs=2000)
        assert run.history[-1].accuracy <= 0.75  # no line separates XOR: one point is always wrong
        assert max(r.accuracy for r in run.history) <= 0.75


@pytest.mark.parametrize("f", ["step", "sign"])
@pytest.mark.parametrize("gate, learns", [("and", True), ("or", True), ("xor", False)])
def test_perceptron_rule_learns_and_or_not_xor(f, gate, learns):
    run = _train(PERCEPTRON.format(f=f), gate, seed=0, epochs=200, batch_size=1)
    best = max(r.accuracy for r in run.history)
    if learns:
        assert run.history[-1].accuracy == 1.0
        assert run.history[-1].loss == 0.0  # converged: no example updates the weights any more
    else:
        assert best <= 0.75


def test_perceptron_rule_is_rosenblatts_update(tmp_path):
    mod = compile_and_load(PERCEPTRON.format(f="step"), tmp_path, "perceptron")
    params = {"out.W": np.array([[0.2], [-0.5]]), "out.b": np.array([0.1])}
    state = mod.init_optimizer(params)
    x, t = np.array([[1.0, 1.0]]), np.array([[1.0]])  # y = -0.2 < 0, so f(y) = 0, error t - f = 1
    mod.train_step(params, state, x, t)
    np.testing.assert_allclose(params["out.W"], [[0.2 + 0.1 * 1.0], [-0.5 + 0.1 * 1.0]])
    np.testing.assert_allclose(params["out.b"], [0.1 + 0.1])
    before = {k: v.copy() for k, v in params.items()}
    mod.train_step(params, state, x, t)  # now y = 0.1 >= 0: classified right, nothing changes
    for k, value in params.items():
        np.testing.assert_array_equal(value, before[k])


def test_digits_reaches_97_percent_from_the_command_line(tmp_path):
    # The README's main command, as a user runs it (a fresh process, default options).
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "nnc", "train", str(SPECS / "digits.nn"), "--data", "digits",
                             "--out", str(tmp_path / "w.npz")], capture_output=True, text=True, timeout=120, check=False)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("validation"))
    assert float(line.split()[2]) >= 0.97, result.stdout
    assert "1438 training and 359 validation examples" in result.stdout  # a held-out 20% of 1,797
    assert seconds < 60, f"took {seconds:.1f} s"
    from click.testing import CliRunner

    from nnc.cli import main

    ev = CliRunner().invoke(main, ["eval", str(SPECS / "digits.nn"), "--weights", str(tmp_path / "w.npz"),
                                   "--data", "digits", "--split", "val"])
    assert ev.exit_code == 0, ev.output
    assert "(val: 359 examples)" in ev.output
    acc = float(next(ln for ln in ev.output.splitlines() if ln.startswith("accuracy")).split()[1])
    assert acc == pytest.approx(float(line.split()[2]), abs=1e-4)  # the same held-out split


def test_mazur_one_step_matches_worked_example_1(tmp_path):
    mod = compile_and_load(SPECS / "mazur.nn", tmp_path)
    params = mod.init_params(dtype="float64")
    state = mod.init_optimizer(params)
    loss = mod.train_step(params, state, np.array([0.05, 0.10]), np.array([0.01, 0.99]))
    assert float(loss) == pytest.approx(0.298371109, abs=1e-9)
    np.testing.assert_allclose(params["W1"].ravel(), [0.149780716, 0.19956143, 0.24975114, 0.29950229], atol=1e-8)
    np.testing.assert_allclose(params["W2"].ravel(), [0.35891648, 0.408666186, 0.511301270, 0.561370121],
                               atol=1e-8)


def test_mazur_through_nnc_train_with_one_example(tmp_path):
    data = tmp_path / "mazur.npz"
    np.savez(data, i=np.array([[0.05, 0.10]]), t=np.array([[0.01, 0.99]]))
    run = _train((SPECS / "mazur.nn").read_text(), str(data), epochs=1, lr=0.5, dtype="float64")
    assert run.steps == 1
    np.testing.assert_allclose(np.asarray(run.params["W2"]).ravel(),
                               [0.35891648, 0.408666186, 0.511301270, 0.561370121], atol=1e-8)


def test_same_seed_gives_bit_identical_weights():
    text = (SPECS / "digits.nn").read_text()
    a = _train(text, "digits", seed=7, epochs=2)
    b = _train(text, "digits", seed=7, epochs=2)
    c = _train(text, "digits", seed=8, epochs=2)
    for name in a.params:
        assert np.asarray(a.params[name]).tobytes() == np.asarray(b.params[name]).tobytes()
    assert any(not np.array_equal(a.params[n], c.params[n]) for n in a.params)


DIVERGES = """\
model lin
input  x : float[N, 2]
input  y : float[N, 1]
pred   = dense(x, 1)
loss   = mse(pred, y)
output pred
optimizer sgd(lr=10.0)
"""


def test_nan_loss_stops_and_keeps_the_last_finite_weights():
    run = _train(DIVERGES, "xor", seed=0, epochs=500)
    assert run.stopped is not None and run.stopped.endswith("try a smaller --lr")
    assert run.stopped.startswith(("loss became nan at epoch", "loss became inf at epoch"))
    assert f"step {run.steps + 1} " in run.stopped
    assert all(np.all(np.isfinite(np.asarray(v))) for v in run.params.values())
    # the kept weights are those of the last step whose loss was finite, not inf: finite in
    # float64 (in float32 a loss of these, about 1e38, may round to inf)
    wide = {k: np.asarray(v, dtype=np.float64) for k, v in run.params.items()}
    assert np.isfinite(float(run.module.loss(wide, np.eye(2), np.ones((2, 1)))))


def _loss_on(run, spec_text: str, data: str) -> float:
    """The spec's loss at the run's kept weights on the whole data set in float32, as nnc eval
    computes it."""
    prog = build_program(spec_text, "t.nn")
    inputs, kind = tr.input_specs(prog), tr.output_kind(prog)
    bound = datamod.bind(datamod.load(data, inputs), inputs, kind)
    dev = tr.Device.put(np, bound, {i.name: i.kind for i in inputs}, "float32")
    with np.errstate(all="ignore"):
        return tr.evaluate(run.module, run.params, dev, kind).loss


def test_a_nan_stop_keeps_weights_whose_loss_is_finite():
    """train_step returns the loss of the parameters it was given: a nan at step k means step
    k-1 made the bad weights (sweep 18: the weights "from before step k" evaluated to nan,
    and with sqrt(abs(.)) were inf, so --out failed). The kept ones are from before step k-1."""
    run = _train((SPECS / "digits.nn").read_text(), "digits", seed=0, epochs=2, lr=1e20)
    assert run.stopped is not None and "the last whose loss was finite" in run.stopped, run.stopped
    assert math.isfinite(_loss_on(run, (SPECS / "digits.nn").read_text(), "digits"))


def test_divergence_in_the_last_step_is_reported():
    """The last step has no next step to report its loss: nan validation, exit 0 (sweep 18).
    Its parameters and their loss are checked at the end, and the weights before it kept."""
    run = _train((SPECS / "digits.nn").read_text(), "digits", seed=0, epochs=1, batch_size=2000, lr=1e38)
    assert run.steps == 1 and run.stopped is not None and run.stopped.startswith("the last step"), run.stopped
    assert math.isfinite(_loss_on(run, (SPECS / "digits.nn").read_text(), "digits"))
    assert math.isfinite(run.history[-1].val_loss)


def test_a_classifier_run_evaluates_its_training_set_once_an_epoch(monkeypatch):
    """The end-of-run check of the last step reuses the last epoch's evaluation of the training
    set (it evaluated it a second time with the same weights)."""
    calls = []
    evaluate = tr.evaluate
    monkeypatch.setattr(tr, "evaluate", lambda module, params, dev, kind: calls.append(len(dev)) or
                        evaluate(module, params, dev, kind))
    run = _train((SPECS / "digits.nn").read_text(), "digits", seed=0, epochs=2)
    assert run.stopped is None and len(run.history) == 2
    assert calls.count(max(calls)) == 2, calls  # the training set, larger than the validation set


def test_nan_stop_from_the_command_line(tmp_path):
    from click.testing import CliRunner

    from nnc.cli import main

    spec = tmp_path / "lin.nn"
    spec.write_text(DIVERGES)
    result = CliRunner().invoke(main, ["train", str(spec), "--data", "xor", "--epochs", "500",
                                       "--out", str(tmp_path / "w.safetensors")])
    assert result.exit_code == 1
    assert "try a smaller --lr" in result.output
    assert "(the last finite ones)" in result.output
    assert (tmp_path / "w.safetensors").exists()


@pytest.mark.parametrize("data", ["spirals", "moons"])
def test_synthetic_sets_are_learnable(data):
    spec = """\
model net
input  x : float[N, 2]
input  y : int[N]
h      = tanh(dense(x, 32))
logits = dense(h, 2)
loss   = cross_entropy(logits, y)
output logits
optimizer adam(lr=0.01)
"""
    run = _train(spec, data, seed=0, epochs=60)
    assert run.history[-1].val_accuracy >= 0.95


def test_dask_training_persists_each_step_and_matches_numpy(tmp_path):
    """On Dask, nnc train persists parameters, state and loss after every step: the graph
    behind a parameter stays the same size however many steps ran (left lazy it grew with
    each one, and each float(loss) recomputed all of them), and the steps end where NumPy's do."""
    da = pytest.importorskip("dask.array", reason="Dask is an optional backend")
    compat = pytest.importorskip("array_api_compat")
    module = compile_and_load(SINGLE_LAYER, tmp_path)
    step = tr._step_function(module, compat.array_namespace(da.zeros(1)))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 2)), (rng.random((8, 1)) > 0.5).astype(np.float64)
    p_np = module.init_params(dtype="float64")
    p_dask = {k: da.from_array(v.copy(), chunks=-1) for k, v in p_np.items()}
    s_np, s_dask = module.init_optimizer(p_np), module.init_optimizer(p_dask)
    buffers = {k: v for k, v in s_dask.items() if isinstance(v, dict)}
    graph_sizes = []
    for n in range(30):
        loss_np = module.train_step(p_np, s_np, x, y)
        loss_dask = step(p_dask, s_dask, da.from_array(x, chunks=4), da.from_array(y, chunks=4))
        if n in (9, 29):
            graph_sizes.append({k: len(v.__dask_graph__()) for k, v in p_dask.items()})
    assert graph_sizes[0] == graph_sizes[1], graph_sizes
    assert all(s_dask[k] is v for k, v in buffers.items())  # updated in place, as train_step does
    assert s_dask["step"] == s_np["step"] == 30
    np.testing.assert_allclose(float(loss_dask), float(loss_np), rtol=1e-12)
    for k in p_np:
        np.testing.assert_allclose(np.asarray(p_dask[k]), p_np[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_dask_clipped_step_computes_once(tmp_path):
    """clip_norm's global norm stays a Dask array: train_step builds one graph and computes
    nothing, and nnc train's persist computes the step once. With a float() per parameter
    (before), each step computed the gradients once for every parameter, then again."""
    da = pytest.importorskip("dask.array", reason="Dask is an optional backend")
    import dask

    module = compile_and_load(SINGLE_LAYER.replace("momentum=0.9", "clip_norm=0.1"), tmp_path)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 2)), (rng.random((8, 1)) > 0.5).astype(np.float64)
    p_np = module.init_params(dtype="float64")
    p_dask = {k: da.from_array(v.copy(), chunks=-1) for k, v in p_np.items()}
    s_np, s_dask = module.init_optimizer(p_np), module.init_optimizer(p_dask)
    computes = []

    def counting(graph, keys, **kwargs):  # a Dask scheduler: counts, then runs synchronously
        computes.append(keys)
        return dask.get(graph, keys, **kwargs)

    with dask.config.set(scheduler=counting):
        for _ in range(3):
            loss_dask = module.train_step(p_dask, s_dask, da.from_array(x, chunks=4), da.from_array(y, chunks=4))
            assert computes == [], computes
            [loss_dask] = tr.persist(p_dask, s_dask, loss_dask)
            assert len(computes) == 1, computes
            computes.clear()
            loss_np = module.train_step(p_np, s_np, x, y)
    np.testing.assert_allclose(float(loss_dask), float(loss_np), rtol=1e-12)
    for k in p_np:
        np.testing.assert_allclose(np.asarray(p_dask[k]), p_np[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("optimizer, traced", [("sgd(lr=0.5, momentum=0.9)", True),
                                               ("adam(lr=0.05)", True),
                                               ("sgd(lr=0.5, clip_norm=0.1)", True),
                                               ("sgd(lr=0.5, schedule=cosine, total_steps=4)", True),
                                               ("adam(lr=0.05, schedule=cosine, total_steps=3, min_lr=0.01)", True)])
def test_jax_training_is_compiled_and_matches_numpy(optimizer, traced, tmp_path):
    """On JAX, nnc train runs train_step under jax.jit (traced once per batch shape) and ends
    where NumPy ends. clip_norm's norm stays an array, so it is traced; so is the cosine
    schedule, whose rate is array operations on a traced step count (it ran eagerly: math.cos
    of a tracer raised). An optimizer that cannot be traced would run eagerly (`traced`)."""
    jnp = pytest.importorskip("jax.numpy", reason="JAX is an optional backend")
    text = SINGLE_LAYER.replace("optimizer sgd(lr=0.5, momentum=0.9)", f"optimizer {optimizer}")
    module = compile_and_load(text, tmp_path)
    calls = []

    class Counting:  # the module, counting the Python calls of its train_step
        def __getattr__(self, name):
            return getattr(module, name)

        def train_step(self, *args):
            calls.append(1)
            return module.train_step(*args)

    step = tr._step_function(Counting(), jnp)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 2)), (rng.random((8, 1)) > 0.5).astype(np.float64)
    p_np = module.init_params(dtype="float32")
    p_jax = {k: jnp.asarray(v) for k, v in p_np.items()}
    s_np, s_jax = module.init_optimizer(p_np), module.init_optimizer(p_jax)
    for _ in range(5):
        loss_np = module.train_step(p_np, s_np, x.astype(np.float32), y.astype(np.float32))
        loss_jax = step(p_jax, s_jax, jnp.asarray(x, dtype=jnp.float32), jnp.asarray(y, dtype=jnp.float32))
    assert len(calls) == (1 if traced else 6)  # traced: once; eager: a failed trace, then every step
    assert s_jax["step"] == s_np["step"] == 5 and type(s_jax["step"]) is int
    np.testing.assert_allclose(float(loss_jax), float(loss_np), rtol=1e-5)
    for k in p_np:
        np.testing.assert_allclose(np.asarray(p_jax[k]), p_np[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_data_beyond_float32_is_refused_in_float32(tmp_path):
    """1e308 is finite in float64 (the data's own check) and inf once cast to float32: it made
    a RuntimeWarning and 'loss became nan ... try a smaller --lr' (sweep 18)."""
    data = tmp_path / "huge.csv"
    data.write_text("1e300,2,1\n1e308,2,0\n-1e308,1,2\n")
    spec = "model clf\ninput x : float[B, 2]\ninput y : int[B]\nlogits = dense(x, 3)\nloss = cross_entropy(logits, y)\n"
    with pytest.raises(ValueError, match=r"input 'x' holds values beyond float32's range .*the largest is 1e\+308.*"
                                         r"pass --dtype float64"):
        _train(spec, str(data), epochs=1)
    run = _train(spec, str(data), epochs=1, dtype="float64")  # accepted (what it learns from 1e308 is its own)
    assert run.steps == 1


def test_a_log_line_is_strict_json_when_a_loss_is_not_finite():
    """--log wrote `"val_loss": Infinity`, which is not JSON (sweep 18): non-finite values are null."""
    import json

    from nnc.runtime.progress import EpochRecord

    record = EpochRecord(3, 30, 0.5, 0.9, math.inf, 0.5, 0.1, 1.0)

    def refuse(constant):
        raise ValueError(constant)

    line = json.dumps(record.as_dict(), allow_nan=False)
    assert json.loads(line, parse_constant=refuse) == {"epoch": 3, "step": 30, "loss": 0.5, "accuracy": 0.9,
                                                       "val_loss": None, "val_accuracy": 0.5, "lr": 0.1,
                                                       "seconds": 1.0}


@pytest.mark.parametrize("kind", ["csv", "uint64", "float"])
def test_class_labels_too_large_for_int64_are_refused_as_they_are(kind, tmp_path):
    """Labels of 1e23 or 2**63 + 1 wrapped around in the cast to int64: a RuntimeWarning and
    'labels from -9223372036854775808 to 0' (sweep 18). They are named as given now."""
    if kind == "csv":
        data = tmp_path / "big.csv"
        data.write_text("1,2,99999999999999999999999\n3,4,0\n")
    else:
        data = tmp_path / "big.npz"
        y = np.full(4, 2**63 + 1, dtype=np.uint64) if kind == "uint64" else np.full(4, 1e20)
        np.savez(data, x=np.zeros((4, 2)), y=y)
    spec = "model clf\ninput x : float[B, 2]\ninput y : int[B]\nlogits = dense(x, 3)\nloss = cross_entropy(logits, y)\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"'y' holds class labels up to (1e\+23|9\.223e\+18|1e\+20), more than any"):
            _train(spec, str(data), epochs=1)
