"""Unusual arrays a caller passes to a generated module (the tenth sweep): read-only, memory-mapped,
broadcast or expanded parameters and optimizer state, PyTorch inference tensors, NumPy
subclasses, inputs of two libraries, optimizer state made for other parameters.

Each test names what happened before its fix. What already worked (non-contiguous, Fortran,
reversed and broadcast inputs, read-only and memory-mapped inputs and parameters outside
train_step, float16/bfloat16 inputs with float32 parameters, integer labels of every width on
PyTorch, bool/float/negative/out-of-range/wider labels refused, params dicts with extra keys or
in another order) is covered here only where a fix touched it; tests/test_call_robustness.py
checks the layouts on every spec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import load_source
from nnc.api import compile_spec

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                                      "ignore::PendingDeprecationWarning")

_SMALL = """model small
input  x : float[B, 3]
input  y : int[B]
h      = relu(dense(x, {width}))
logits = dense(h, 2)
loss   = cross_entropy(logits, y)
output logits
optimizer {optimizer}
"""


def _small(tmp_path, width: int = 4, optimizer: str = "sgd(lr=0.1, momentum=0.9)"):
    return load_source(compile_spec(_SMALL.format(width=width, optimizer=optimizer), "small.nn"), tmp_path, "small")


def _data(n: int = 5):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)).astype(np.float32), rng.integers(0, 2, n)


@pytest.mark.parametrize("make", ["flags", "mmap", "broadcast_to"])
def test_read_only_parameters_are_named_before_the_first_step(make, tmp_path):
    """A read-only parameter (writeable False, np.load(mmap_mode='r'), np.broadcast_to) made
    train_step fail with NumPy's bare 'ValueError: output array is read-only', after updating
    the parameters before it; init_optimizer now refuses it, naming it."""
    m = _small(tmp_path)
    params = m.init_params()
    if make == "flags":
        params["h.b"].flags.writeable = False
    elif make == "mmap":
        np.save(tmp_path / "hb.npy", params["h.b"])
        params["h.b"] = np.load(tmp_path / "hb.npy", mmap_mode="r")
    else:
        params["h.b"] = np.broadcast_to(np.float32(0.1), (4,))
    x, y = _data()
    assert np.isfinite(float(m.loss(params, x, y)))  # the pure entry points take it
    with pytest.raises(ValueError, match=r"parameter 'h\.b' is a read-only array .*np\.array\(p\)"):
        m.init_optimizer(params)


def test_read_only_state_is_named_by_train_step(tmp_path):
    """Optimizer state made read-only after init_optimizer (np.load of a saved state with
    mmap_mode='r', say) gave NumPy's bare 'output array is read-only'; the error now names the
    entry and says the step is incomplete."""
    m = _small(tmp_path)
    params = m.init_params()
    state = m.init_optimizer(params)
    state["velocity"]["logits.W"].flags.writeable = False
    with pytest.raises(ValueError, match=r"state\['velocity'\]\['logits\.W'\] is a read-only array.*"
                                         r"parameters before it were updated"):
        m.train_step(params, state, *_data())
    assert state["step"] == 0


def test_optimizer_state_of_other_parameters_is_named(tmp_path):
    """Adam state made for a model of another width (same parameter names) raised NumPy's
    'non-broadcastable output operand with shape (3,4) doesn't match the broadcast shape'
    (or silently broadcast); it now names the entry and both shapes."""
    small = _small(tmp_path, 4, "adam(lr=0.01)")
    wide = _small(tmp_path, 5, "adam(lr=0.01)")
    params = small.init_params()
    state = wide.init_optimizer(wide.init_params())
    with pytest.raises(ValueError, match=r"state\['\w+'\]\['h\.W'\] has shape \(3, 5\), but parameter 'h\.W' "
                                         r"has shape \(3, 4\): init_optimizer\(params\)"):
        small.train_step(params, state, *_data())


def test_state_of_another_optimizer_is_named(tmp_path):
    """SGD's state given to an Adam step raised a bare KeyError: 'exp_avg' (after the gradient
    was computed), and a buffer without a parameter's entry KeyError: 'h.W'; both now say what
    the state lacks and that init_optimizer makes it. An entry a caller adds still passes."""
    adam = _small(tmp_path, 4, "adam(lr=0.01)")
    sgd = _small(tmp_path, 4, "sgd(lr=0.1, momentum=0.9)")
    params = adam.init_params()
    with pytest.raises(ValueError, match=r"state has no 'exp_avg', 'exp_avg_sq' \(it holds 'step', 'velocity'\): "
                                         r"it is not the state of adam\(\), which init_optimizer"):
        adam.train_step(params, sgd.init_optimizer(params), *_data())
    state = adam.init_optimizer(params)
    del state["exp_avg_sq"]["h.b"]
    with pytest.raises(ValueError, match=r"state\['exp_avg_sq'\] has no entry for parameter 'h\.b'"):
        adam.train_step(params, state, *_data())
    state = adam.init_optimizer(params)
    state["note"] = "mine"
    adam.train_step(params, state, *_data())
    assert state["step"] == 1 and state["note"] == "mine"
    # a dict a caller adds is not blamed for a failure of another kind (an int buffer)
    state["mine"] = {}
    state["exp_avg"]["h.b"] = np.zeros(4, dtype=np.int64)
    with pytest.raises(TypeError, match=r"could not update parameter 'h\.b' in place"):
        adam.train_step(params, state, *_data())
    with pytest.raises(TypeError, match=r"state must be the dict init_optimizer\(params\) makes, got list"):
        adam.train_step(params, [], *_data())  # was AttributeError: 'list' object has no attribute 'keys'


def test_integer_state_is_named(tmp_path):
    """An int64 state entry raised numpy's UFuncTypeError ('Cannot cast ufunc multiply output')
    with no parameter named; it is still a TypeError, now naming the parameter."""
    m = _small(tmp_path)
    params = m.init_params()
    state = m.init_optimizer(params)
    state["velocity"]["h.b"] = np.zeros(4, dtype=np.int64)
    with pytest.raises(TypeError, match=r"could not update parameter 'h\.b' in place: Cannot cast"):
        m.train_step(params, state, *_data())


def test_masked_array_inputs_are_refused(tmp_path):
    """np.ma.MaskedArray features failed deep in the code ('operands could not be broadcast
    together with shapes (5,3) (3,4)'), and masked labels were used with their mask ignored
    (and a float64 loss); both are now a TypeError naming the input, as numpy.matrix is."""
    m = _small(tmp_path)
    params = m.init_params()
    x, y = _data()
    with pytest.raises(TypeError, match=r"input 'x' .* got numpy\.ma\.MaskedArray, whose mask"):
        m.loss(params, np.ma.masked_array(x, mask=x > 1), y)
    with pytest.raises(TypeError, match=r"input 'y' .* got numpy\.ma\.MaskedArray, whose mask"):
        m.loss(params, x, np.ma.masked_array(y, mask=y > 0))
    # a plain memmap is an ndarray subclass that works
    mm = np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="w+", shape=x.shape)
    mm[:] = x
    assert float(m.loss(params, mm, y)) == float(m.loss(params, x, y))


@pytest.mark.parametrize("kind", ["matrix", "masked"])
def test_matrix_and_masked_parameters_are_refused(kind, tmp_path):
    """A numpy.matrix first parameter passed every check and then multiplied as a matrix ('shapes
    (5,2) and (5,2) not aligned'); a MaskedArray one failed obscurely. Both are now a TypeError."""
    m = _small(tmp_path)
    params = m.init_params()
    wrap = np.matrix if kind == "matrix" else np.ma.masked_array
    params["h.W"] = wrap(params["h.W"])
    with pytest.raises(TypeError, match="the parameters must be plain arrays, got numpy"):
        m.loss(params, *_data())


def test_inputs_of_two_libraries_are_named(tmp_path):
    """NumPy labels with PyTorch features raised 'arange() received an invalid combination of
    arguments', NumPy with PyTorch floats "'numpy.ndarray' object has no attribute 'to'", and
    NumPy labels with array_api_strict features 'dtype must be one of the supported dtypes';
    each is now a TypeError naming the input of the other library."""
    torch = pytest.importorskip("torch")
    m = _small(tmp_path)
    x, y = _data()
    tparams = m.init_params(xp=torch)
    with pytest.raises(TypeError, match=r"input 'y' is numpy\.ndarray, of another library than the first input "
                                        r"\(torch\.Tensor\)"):
        m.loss(tparams, torch.asarray(x), y)
    with pytest.raises(TypeError, match=r"input 'y' is torch\.Tensor"):
        m.value_and_grad(m.init_params(), x, torch.asarray(y))
    two = load_source(compile_spec("model two\ninput a : float[B, 3]\ninput b : float[B, 3]\n"
                                   "h = dense(a + b, 2)\nloss = sum(h * h)\noptimizer sgd(lr=0.1)\n", "two.nn"),
                      tmp_path, "two")
    with pytest.raises(TypeError, match=r"input 'b' is numpy\.ndarray"):
        two.loss(two.init_params(xp=torch), torch.asarray(x), x)
    xps = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match=r"input 'y' is numpy\.ndarray, of another library than the first input "
                                        r"\(array_api_strict\.Array\)"):
        m.loss(m.init_params(xp=xps), xps.asarray(x), y)
    # one library in two classes is fine: a NumPy memmap beside an ndarray
    mm = np.memmap(tmp_path / "y.dat", dtype=y.dtype, mode="w+", shape=y.shape)
    mm[:] = y
    assert float(m.loss(m.init_params(), x, mm)) == float(m.loss(m.init_params(), x, y))


def test_numpy_labels_with_jax_features_still_work(tmp_path):
    """jax.numpy takes NumPy arrays: the library check above lets NumPy labels beside JAX
    features through (they worked before it), eagerly and under jax.jit."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    m = _small(tmp_path)
    x, y = _data()
    y = y.astype(np.int32)
    want = float(m.loss(m.init_params(), x, y))
    params = m.init_params(xp=jnp)
    assert float(m.loss(params, jnp.asarray(x), y)) == pytest.approx(want, rel=1e-6)
    assert float(jax.jit(m.loss)(params, jnp.asarray(x), y)) == pytest.approx(want, rel=1e-6)


def test_numpy_directions_with_jax_parameters_work(tmp_path):
    """jvp and hvp take NumPy directions beside JAX parameters, as jax.numpy does, with the
    results of JAX directions: the library test of the directions, made on every call now (it
    was made only where a dtype differed), lets them through as the input check lets labels."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    m = _small(tmp_path)
    x, y = _data()
    params = m.init_params(xp=jnp)
    host = {k: np.full(np.shape(v), 0.25, dtype=np.float32) for k, v in params.items()}
    along = {k: jnp.asarray(v) for k, v in host.items()}
    x, y = jnp.asarray(x), y.astype(np.int32)
    for name in ("jvp", "hvp"):
        want = getattr(m, name)(params, along, x, y)
        got = getattr(m, name)(params, host, x, y)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, err_msg=name)


def test_torch_inference_tensors_are_named(tmp_path):
    """Parameters or state made under torch.inference_mode() made train_step raise PyTorch's
    'Inplace update to inference tensor outside InferenceMode is not allowed' mid-step; the
    parameters are now refused by init_optimizer and a state entry named by train_step. Inside
    inference mode, and for the pure entry points, they work."""
    torch = pytest.importorskip("torch")
    m = _small(tmp_path)
    x, y = (torch.asarray(a) for a in _data())
    with torch.inference_mode():
        frozen = m.init_params(xp=torch)
    assert np.isfinite(float(m.loss(frozen, x, y)))
    with pytest.raises(ValueError, match=r"parameter 'h\.W' is an inference tensor"):
        m.init_optimizer(frozen)
    params = m.init_params(xp=torch)
    with torch.inference_mode():
        state = m.init_optimizer(params)
    with pytest.raises(ValueError, match=r"state\['velocity'\]\['h\.W'\] is an inference tensor"):
        m.train_step(params, state, x, y)
    with torch.inference_mode():
        assert np.isfinite(float(m.train_step(params, m.init_optimizer(params), x, y)))


def test_torch_expanded_parameter_is_named(tmp_path):
    """An expand()ed bias (stride 0) made train_step raise PyTorch's 'more than one element of
    the written-to tensor refers to a single memory location'; init_optimizer now names it."""
    torch = pytest.importorskip("torch")
    m = _small(tmp_path)
    params = m.init_params(xp=torch)
    params["h.b"] = torch.tensor(0.1).expand(4)
    with pytest.raises(ValueError, match=r"parameter 'h\.b' is an expanded view"):
        m.init_optimizer(params)


def test_torch_parameters_that_require_grad_outside_no_grad(tmp_path):
    """train_step on parameters that require grad, outside torch.no_grad(), raised PyTorch's
    'a leaf Variable that requires grad is being used in an in-place operation' with no
    parameter named; it is still a RuntimeError, now naming the parameter and the remedy."""
    torch = pytest.importorskip("torch")
    m = _small(tmp_path)
    params = {k: v.requires_grad_(True) for k, v in m.init_params(xp=torch).items()}
    state = m.init_optimizer(params)
    x, y = (torch.asarray(a) for a in _data())
    with pytest.raises(RuntimeError, match=r"parameter 'h\.W' in place: a leaf Variable.*torch\.no_grad\(\)"):
        m.train_step(params, state, x, y)
    with torch.no_grad():
        assert np.isfinite(float(m.train_step(params, state, x, y)))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_integer_parameters_are_refused(backend, tmp_path):
    """Integer parameters (zeros of int64, hand-made) were taken as the dtype float inputs are
    cast to: the features were truncated to integers and the loss computed from them, silently
    wrong. The cast's dtype test now names the parameter (init_params and load_params make
    floats)."""
    m = _small(tmp_path)
    x, y = _data()
    if backend == "numpy":
        params = {k: np.zeros(v.shape, dtype=np.int64) for k, v in m.init_params().items()}
    else:
        torch = pytest.importorskip("torch")
        params = {k: torch.zeros(tuple(v.shape), dtype=torch.int64) for k, v in m.init_params().items()}
        x, y = torch.asarray(x), torch.asarray(y)
    for call in (m.forward, m.loss, m.value_and_grad):
        with pytest.raises(TypeError, match=r"parameter 'h\.W' has dtype .*int64; parameters are floats"):
            call(params, x) if call is m.forward else call(params, x, y)


NO_FLOAT_INPUTS = {  # the cast's dtype test above never runs: no float input to compare
    "no_inputs": ("model no_inputs\nparam w : float[3] = [1.0, 2.0, 3.0]\nloss = l2(w)\n", ()),
    "label_inputs": ("model label_inputs\ninput y : int[4]\nparam w : float[4, 3]\nloss = cross_entropy(w, y)\n",
                     (np.array([1, 2, 0, 1]),)),
}


@pytest.mark.parametrize("optimizer", ["sgd(lr=0.1)", "sgd(lr=0.1, momentum=0.9)", "adam(lr=0.1)"])
@pytest.mark.parametrize("spec", sorted(NO_FLOAT_INPUTS))
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_integer_parameters_are_refused_by_init_optimizer(backend, spec, optimizer, tmp_path):
    """A spec without float inputs has no cast whose dtype test could name integer parameters:
    init_optimizer made int state for them and the first step failed on NumPy's casting
    message, after updating the parameters before the one it could not (Adam, momentum)."""
    text, inputs = NO_FLOAT_INPUTS[spec]
    m = load_source(compile_spec(text + f"optimizer {optimizer}\n", f"{spec}.nn"), tmp_path, spec)
    if backend == "numpy":
        params = {k: np.ones(v.shape, dtype=np.int64) for k, v in m.init_params().items()}
    else:
        torch = pytest.importorskip("torch")
        params = {k: torch.ones(tuple(v.shape), dtype=torch.int32) for k, v in m.init_params().items()}
        inputs = tuple(torch.asarray(a) for a in inputs)
    with pytest.raises(TypeError, match=r"parameter 'w' has dtype .*int(64|32); parameters are floats"):
        m.init_optimizer(params)
    floats = m.init_params()
    state = m.init_optimizer(floats)
    before = float(m.loss(floats, *(np.asarray(a) for a in inputs)))
    m.train_step(floats, state, *(np.asarray(a) for a in inputs))
    assert float(m.loss(floats, *(np.asarray(a) for a in inputs))) < before


def test_plain_sgd_step_names_a_read_only_parameter(tmp_path):
    """Plain SGD's fused step (no state to make, so init_optimizer may be skipped: `{"step": 0}`)
    updated memory-mapped, read-only parameters with NumPy's bare 'output array is read-only';
    the error now names the parameter. Parameters that can be written train as before."""
    m = _small(tmp_path, optimizer="sgd(lr=0.1)")
    params = m.init_params()
    x, y = _data()
    for name, p in params.items():
        np.save(tmp_path / f"{name}.npy", p)
    mapped = {name: np.load(tmp_path / f"{name}.npy", mmap_mode="r") for name in params}
    with pytest.raises(ValueError, match=r"parameter 'h\.W' is a read-only array .*the step count was not"):
        m.train_step(mapped, {"step": 0}, x, y)
    state = m.init_optimizer(params)
    before = float(m.loss(params, x, y))
    m.train_step(params, state, x, y)
    assert state["step"] == 1 and float(m.loss(params, x, y)) < before
