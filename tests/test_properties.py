"""Property tests over random valid specs: they compile, their gradients pass the check,
the backward pass is linear in its seed, and every gradient has its parameter's shape and dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from specgen import generate

from helpers import SPEC_PATHS
from nnc.api import compile_spec, load_module
from nnc.runtime.gradcheck import bind_dims, check_module, draw_point

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def spec_texts(draw) -> str:
    return generate(lambda options: draw(st.sampled_from(list(options))), draw(st.integers(1, 6)),
                    batch=draw(st.booleans()))


def _load(text: str):
    return load_module(compile_spec(text, "random.nn"))


@SETTINGS
@given(spec_texts())
def test_random_specs_compile_and_pass_the_check(text: str):
    module = _load(text)
    report = check_module(module)
    assert report.passed, text + "\n" + report.format()
    assert [r.name for r in report.rows] == [*module.PARAMS, *module.WRT]


def _with_seed(text: str) -> str:
    """The same model with its loss scaled by a new scalar input `seed_scale`."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("loss = "))
    lines[at] = "loss = seed_scale * (" + lines[at][len("loss = "):] + ")"
    lines.insert(1, "input seed_scale : float")
    return "\n".join(lines) + "\n"


@SETTINGS
@given(spec_texts())
def test_backward_is_linear_in_its_seed(text: str):
    # d(c L)/dθ is the backward pass run from the seed c: zero gives exactly zero, and
    # scaling by a power of two is exact in floating point, so 2 gives exactly twice.
    module = _load(_with_seed(text))
    params, inputs = draw_point(module, bind_dims(module.INPUTS, None), np.random.default_rng(0))

    def grads(c: float) -> dict:
        return module.value_and_grad(params, np.asarray(c), *inputs[1:])[1]

    zero, one, two, odd = grads(0.0), grads(1.0), grads(2.0), grads(-0.3)
    for name in one:
        assert np.all(zero[name] == 0.0), name
        assert np.array_equal(two[name], 2.0 * one[name]), name
        # other seeds agree up to rounding (entries that are zero up to rounding included)
        floor = 1e-14 * max(1.0, float(np.max(np.abs(one[name]), initial=0.0)))
        np.testing.assert_allclose(odd[name], -0.3 * one[name], rtol=1e-13, atol=floor)


def _check_shapes_and_dtypes(module, dtype: str) -> None:
    params, inputs = draw_point(module, bind_dims(module.INPUTS, None), np.random.default_rng(1), dtype)
    _, grads = module.value_and_grad(params, *inputs)
    wrt = {n: inputs[i] for i, n in enumerate(module.INPUTS) if n in module.WRT}
    assert set(grads) == set(params) | set(wrt)
    for name, value in {**params, **wrt}.items():
        g = grads[name]
        # an array or a NumPy scalar (what NumPy's sum of a 0-d result gives), never a float
        assert hasattr(g, "dtype"), (name, type(g))
        assert g.shape == value.shape and g.dtype == value.dtype == np.dtype(dtype), (name, g.shape, g.dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", SPEC_PATHS, ids=[p.stem for p in SPEC_PATHS])
def test_bundled_gradients_have_their_parameters_shape_and_dtype(path, dtype: str):
    _check_shapes_and_dtypes(load_module(compile_spec(path.read_text(), str(path))), dtype)


@SETTINGS
@given(spec_texts(), st.sampled_from(["float32", "float64"]))
def test_random_gradients_have_their_parameters_shape_and_dtype(text: str, dtype: str):
    _check_shapes_and_dtypes(_load(text), dtype)


def test_unused_constant_and_input_free_cases():
    # Regressions found by the random specs: a parameter the loss ignores (its zeros_like
    # read an unbound name), a constant gradient (returned as a Python float), and a
    # forward() with no inputs (took its namespace from a parameter before reading it).
    spec = ("model edge\ninput x : float[3, 4]\nparam unused : float[2] = 0.3\nparam c : float = 0.3\n"
            "param w : float[4] = 0.5\nv = tanh(w)\nloss = sum(v * x) + 0.5 * c\noutput v\n")
    module = _load(spec)
    for dtype in ("float32", "float64"):
        _check_shapes_and_dtypes(module, dtype)
    params = module.init_params(0, dtype="float64")
    _, grads = module.value_and_grad(params, np.ones((3, 4)))
    assert np.all(grads["unused"] == 0.0) and grads["c"] == 0.5
    np.testing.assert_allclose(module.forward(params), np.tanh(np.full(4, 0.5)))


def test_kinked_primitive_with_a_constant_cotangent_keeps_the_dtype():
    # relu's mask over the constant cotangent 0.5 was xp.where(m, 0.5, 0.0): float64 even
    # for a float32 model (found by nnc check --dtype float32 on a random spec)
    spec = ("model scalar\ninput x : float[3]\nparam p : float = -0.7\nparam q : float = 0.2\n"
            "loss = sum(x * x) + 0.5 * relu(p + p) + 0.5 * abs(q) + 0.5 * maximum(p, q)\n")
    for dtype in ("float32", "float64"):
        _check_shapes_and_dtypes(_load(spec), dtype)
    assert check_module(_load(spec), dtype="float32").passed
