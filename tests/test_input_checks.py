"""Generated entry points validate their inputs: rank, sizes, symbolic dimensions, dtype kind, labels."""

from __future__ import annotations

import array_api_strict as xs
import numpy as np
import pytest

from helpers import SPECS, compile_and_load
from nnc.runtime import checks
from nnc.runtime.checks import _check_input, _check_labels


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return compile_and_load(SPECS / "mlp.nn", tmp_path_factory.mktemp("mlp"))


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    text = ("model sq\ninput a : float[N, N]\ninput v : float[N]\ninput w : float[3]\n"
            "loss = l2(a @ v) + l2(w)\noutput a\n")
    return compile_and_load(text, tmp_path_factory.mktemp("sq"), "sq")


def _x(b=4):
    return np.ones((b, 784), np.float32)


def _y(b=4):
    return np.arange(b) % 10


# ---- the runtime helper, on its own ----------------------------------------------------------

@pytest.mark.parametrize("xp", [np, xs], ids=["numpy", "array_api_strict"])
def test_check_input_accepts_good_arrays(xp):
    _check_input(xp, "x", xp.ones((2, 3)), "float", ("B", 3), {})
    _check_input(xp, "x", xp.ones((2, 3)), "float", ("B", 3), {"B": (2, "y")})
    _check_input(xp, "y", xp.asarray([1, 2]), "int", ("B",), {"B": (2, "x")})
    for value, kind in ((xp.ones((2,)), "float"), (xp.asarray([1]), "int")):
        assert checks._DTYPE_KINDS[(value.__class__, value.dtype)] == kind


@pytest.mark.parametrize("xp", [np, xs], ids=["numpy", "array_api_strict"])
@pytest.mark.parametrize("x, kind, shape, bound, message", [
    (lambda xp: xp.ones(2), "float", ("B", 3), {},
     "input 'x' must be float[B, 3], got {f} of shape (2,): 1 axis instead of 2"),
    (lambda xp: xp.ones((2, 4)), "float", ("B", 3), {}, "axis 1 has size 4, not 3"),
    (lambda xp: xp.ones((2, 3)), "float", ("B", 3), {"B": (5, "y")}, "B is 2 here but 5 in input 'y'"),
    (lambda xp: xp.ones((2, 3)), "float", ("N", "N"), {}, "N is 3 here but 2 in an earlier axis of this input"),
    (lambda xp: xp.ones((2, 3)), "int", ("B", 3), {}, "{f} is not int (class labels must be integers)"),
    (lambda xp: xp.asarray([[1, 2, 3]]), "float", ("B", 3), {}, "{i} is not float"),
    (lambda xp: xp.asarray([True, False]), "int", ("B",), {}, "bool is not int"),
])
def test_check_input_messages(xp, x, kind, shape, bound, message):
    arr = x(xp)
    expected = message.format(f=xp.ones(1).dtype, i=xp.asarray([1]).dtype)
    with pytest.raises(ValueError) as info:
        _check_input(xp, "x", arr, kind, shape, bound)
    assert expected in str(info.value)


def test_check_input_rejects_non_arrays():
    with pytest.raises(TypeError, match=r"input 'x' must be an array of float\[2\], got list"):
        _check_input(np, "x", [1.0, 2.0], "float", (2,), {})


@pytest.mark.parametrize("xp", [np, xs], ids=["numpy", "array_api_strict"])
def test_check_labels(xp):
    _check_labels(xp, "y", xp.asarray([0, 9]), 10)
    with pytest.raises(ValueError, match=r"input 'y' holds class labels in \[0, 10\), got values from 0 to 10"):
        _check_labels(xp, "y", xp.asarray([0, 10]), 10)
    with pytest.raises(ValueError, match="from -1 to 3"):
        _check_labels(xp, "y", xp.asarray([-1, 3]), 10)


@pytest.mark.parametrize("dtype", ["uint16", "uint32", "uint64"])
def test_check_labels_on_unsigned_torch_tensors(dtype):
    """PyTorch cannot reduce uint16/32/64 tensors: the range is checked on an int64 copy."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    compat = pytest.importorskip("array_api_compat")
    xp = compat.array_namespace(torch.zeros(1))
    _check_labels(xp, "y", torch.asarray([0, 9]).to(getattr(torch, dtype)), 10)
    with pytest.raises(ValueError, match=r"labels in \[0, 10\), got values from 3 to 300"):
        _check_labels(xp, "y", torch.asarray([3, 300]).to(getattr(torch, dtype)), 10)


def test_torch_uint64_labels_beyond_int64_are_not_reported_negative():
    """The int64 copy wraps 2**63 to -2**63: the message said 'from -9223372036854775808 to 2'
    (sweep 19)."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    compat = pytest.importorskip("array_api_compat")
    xp = compat.array_namespace(torch.zeros(1))
    y = torch.from_numpy(np.array([0, 1, 2, 2**63], np.uint64))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\), got a value of 2\*\*63 or more$"):
        _check_labels(xp, "y", y, 3)


# ---- generated modules -------------------------------------------------------------------------

@pytest.mark.parametrize("entry", ["loss", "value_and_grad", "train_step"])
@pytest.mark.parametrize("x, y, message", [
    (_x()[0], _y(), "input 'x' must be float[B, 784], got float32 of shape (784,): 1 axis instead of 2"),
    (np.ones((4, 783), np.float32), _y(), "axis 1 has size 783, not 784"),
    (_x(), _y(3), "input 'y' must be int[B], got int64 of shape (3,): B is 3 here but 4 in input 'x'"),
    (_x().astype(np.int32), _y(), "int32 is not float"),
    (_x(), _y().astype(np.float32), "float32 is not int (class labels must be integers)"),
    (_x(), np.array([0, 1, 2, 10]), "input 'y' holds class labels in [0, 10), got values from 0 to 10"),
    (_x(), np.array([0, -1, 2, 3]), "got values from -1 to 3"),
])
def test_mlp_rejects_bad_inputs(mlp, entry, x, y, message):
    params = mlp.init_params()
    args = (params, mlp.init_optimizer(params)) if entry == "train_step" else (params,)
    before = {k: np.array(v) for k, v in params.items()}
    with pytest.raises(ValueError) as info:
        getattr(mlp, entry)(*args, x, y)
    assert message in str(info.value)
    assert all(np.array_equal(before[k], params[k]) for k in params)  # nothing was updated


@pytest.mark.parametrize("entry", ["loss", "value_and_grad", "train_step"])
@pytest.mark.parametrize("x, y, message", [
    (_x().tolist(), _y(), "input 'x' must be an array of float[B, 784], got list"),
    (_x(), _y().tolist(), "input 'y' must be an array of int[B], got list"),
    (None, _y(), "input 'x' must be an array of float[B, 784], got NoneType"),
    (_x(), 3, "input 'y' must be an array of int[B], got int"),
])
def test_mlp_names_inputs_that_are_not_arrays(mlp, entry, x, y, message):
    params = mlp.init_params()
    args = (params, mlp.init_optimizer(params)) if entry == "train_step" else (params,)
    with pytest.raises(TypeError) as info:
        getattr(mlp, entry)(*args, x, y)
    assert str(info.value) == message
    with pytest.raises(TypeError, match=r"^input 'x' must be an array of float\[B, 784\], got list$"):
        mlp.forward(params, _x().tolist())


def test_mlp_forward_checks_only_its_inputs(mlp):
    params = mlp.init_params()
    assert mlp.forward(params, _x(7)).shape == (7, 10)
    with pytest.raises(ValueError, match="axis 1 has size 3, not 784"):
        mlp.forward(params, np.ones((7, 3), np.float32))


def test_good_inputs_pass_on_every_namespace(mlp):
    params = mlp.init_params(xp=xs)
    value, grads = mlp.value_and_grad(params, xs.asarray(_x()), xs.asarray(_y()))
    assert value.shape == () and set(grads) == set(params)
    with pytest.raises(ValueError, match="got values from 0 to 12"):
        mlp.loss(params, xs.asarray(_x()), xs.asarray(np.array([0, 1, 2, 12])))


def test_an_empty_batch_is_refused_by_the_loss_and_allowed_by_forward(mlp):
    """A mean over no examples is nan and its gradient a division by zero: every entry point
    that computes the loss says so instead; forward() maps no rows to no rows."""
    params = mlp.init_params()
    assert mlp.forward(params, _x(0)).shape == (0, 10)
    message = r"input 'x' is empty \(B = 0\): the loss needs at least one example along B"
    calls = {"loss": lambda: mlp.loss(params, _x(0), _y(0)),
             "value_and_grad": lambda: mlp.value_and_grad(params, _x(0), _y(0)),
             "train_step": lambda: mlp.train_step(params, mlp.init_optimizer(params), _x(0), _y(0)),
             "jvp": lambda: mlp.jvp(params, params, _x(0), _y(0)),
             "hvp": lambda: mlp.hvp(params, params, _x(0), _y(0))}
    for name, call in calls.items():
        with pytest.raises(ValueError, match=message):
            call()
            pytest.fail(f"{name} accepted an empty batch")


def test_repeated_symbolic_dimension(square):
    params = square.init_params()
    square.loss(params, np.ones((3, 3)), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match=r"input 'a' must be float\[N, N\].*N is 4 here but 3 in an earlier axis"):
        square.loss(params, np.ones((3, 4)), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match=r"input 'v' must be float\[N\].*N is 2 here but 3 in input 'a'"):
        square.loss(params, np.ones((3, 3)), np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match=r"input 'w' must be float\[3\].*axis 0 has size 2, not 3"):
        square.loss(params, np.ones((3, 3)), np.ones(3), np.ones(2))


def test_check_is_a_single_cheap_test_per_input(mlp):
    """The fast path is one `if` per input: no namespace lookup, no message built."""
    import inspect

    src = inspect.getsource(mlp._check_forward_inputs)
    assert src.count("if ") == 1 and "_namespace" in src.split("if ")[1].split(":\n")[1]
