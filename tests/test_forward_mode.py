"""Forward mode: every primitive's tangent rule, and the generated jvp() and hvp()."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import SPEC_PATHS, compile_and_load, random_inputs
from nnc.autodiff.forward import push_tangents
from nnc.ir.builder import Builder
from nnc.ir.core import Var
from nnc.ir.interpret import evaluate
from nnc.ir.naming import Namer
from nnc.primitives import PRIMITIVES

CASES = [(name, i) for name, p in sorted(PRIMITIVES.items()) for i in range(len(p.examples))]


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_every_primitive_has_a_tangent_rule(name):
    assert PRIMITIVES[name].jvp is not None, f"primitive {name!r} has no tangent (JVP) rule"


def _value(domain: str, shape, rng, params: dict):
    """A test value: kinks (0 for relu-like, ties for max) are avoided by keeping |x| >= 0.05."""
    if domain == "real":
        x = rng.normal(size=shape)
        return np.where(np.abs(x) < 0.05, 0.05 + np.abs(x), x)
    if domain in ("positive", "host"):
        return rng.uniform(0.5, 2.0, size=shape)
    if domain == "bool":
        return rng.random(size=shape) > 0.5
    if domain == "int":
        return rng.integers(0, params.get("classes", 2), size=shape)
    if domain == "probs":
        e = np.exp(rng.normal(size=shape))
        return e / e.sum(axis=-1, keepdims=True)
    raise AssertionError(domain)


def _setup(name: str, index: int, seed: int = 0):
    """One equation of primitive `name` on example `index`, with values and tangents."""
    prim = PRIMITIVES[name]
    ex = prim.examples[index]
    params = dict(ex.params)
    rng = np.random.default_rng(seed)
    dtypes = {"bool": "bool", "int": "int"}
    args = [Var(f"a{i}", tuple(shape), dtypes.get(dom, "float")) for i, (shape, dom) in enumerate(ex.inputs)]
    env = {a.name: _value(dom, shape, rng, params) for a, (shape, dom) in zip(args, ex.inputs)}
    namer = Namer({a.name for a in args})
    b = Builder(namer)
    out = b.emit(name, *args, **params)
    assert isinstance(out, Var) and b.eqns and b.eqns[-1].prim == name
    seeds = {a.name: Var(f"dot_{a.name}", a.shape, "float") for a in args if a.dtype == "float"}
    for a in args:
        if a.name in seeds:
            env[seeds[a.name].name] = rng.normal(size=a.shape)
    return b.eqns, out, args, seeds, env, namer


def _ev(eqns, env, var):
    return np.asarray(evaluate(eqns, env)[var.name], dtype=np.float64)


@pytest.mark.parametrize("name,index", CASES)
def test_tangent_rule_matches_finite_differences(name, index):
    eqns, out, args, seeds, env, namer = _setup(name, index)
    tangents = dict(seeds)
    lin = push_tangents(tuple(eqns), tangents, namer)
    dot = tangents.get(out.name)
    if dot is None:  # a symbolically zero tangent must really be zero
        got = np.zeros(np.shape(_ev(eqns, env, out)))
    else:
        assert tuple(dot.shape) == tuple(out.shape), "a tangent has its primal's shape"
        got = _ev(lin, env, dot)
        assert got.shape == np.shape(_ev(eqns, env, out))
    if not PRIMITIVES[name].differentiable:
        assert dot is None
        return
    h = 1e-6

    def shifted(sign):
        moved = dict(env)
        for a in args:
            if a.name in seeds:
                moved[a.name] = env[a.name] + sign * h * env[seeds[a.name].name]
        return _ev(eqns, moved, out)

    want = (shifted(1) - shifted(-1)) / (2 * h)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,index", [c for c in CASES if PRIMITIVES[c[0]].differentiable])
def test_tangent_and_cotangent_rules_are_transposes(name, index):
    """The dot-product test <J v, w> = <v, J^T w>, with J v from the JVP rule, J^T w from the VJP rule."""
    eqns, out, args, seeds, env, namer = _setup(name, index, seed=1)
    tangents = dict(seeds)
    lin = push_tangents(tuple(eqns), tangents, namer)
    w = Var("w_bar", out.shape, "float")
    env[w.name] = np.random.default_rng(2).normal(size=out.shape)
    b = Builder(namer)
    cts = PRIMITIVES[name].vjp(b, eqns[-1], w)
    values = evaluate(tuple(lin) + tuple(b.eqns), env)
    dot = tangents.get(out.name)
    left = 0.0 if dot is None else float(np.sum(np.asarray(values[dot.name]) * env[w.name]))
    right = 0.0
    for a, ct in zip(args, cts):
        if ct is not None and a.name in seeds:
            right += float(np.sum(env[seeds[a.name].name] * np.asarray(values[getattr(ct, "name", None)]
                                  if isinstance(ct, Var) else float(ct.value))))
    assert left == pytest.approx(right, rel=1e-10, abs=1e-12)


# ---- the generated module ----------------------------------------------------------------------

SMOOTH = """\
model smooth
input  x : float[N, 3]
input  y : int[N]
param  p : float = 1.5
h      = tanh(dense(x, 4))
g      = softplus(dense(h, 4)) ^ p + sqrt(exp(h) + 1.0) / (1.0 + h * h)
s      = sigmoid(g) * log(1.0 + arctan(g) ^ 2) - cos(g) + sin(silu(g)) + gelu(g)
logits = dense(s * elu(mean(transpose(s), axis=1), alpha=0.5), 3)
loss   = cross_entropy(logits, y) + mse(softmax(logits), log_softmax(logits)) + 0.01 * l2(logits.W)
wrt    x
"""

# The primitives SMOOTH leaves out, with kinks (compared with torch, not finite differences).
KINKED = """\
model kinked
input  x : float[N, 2, 3]
input  t : float[N, 4]
input  y : int[N]
param  w : float[6, 4]
h      = flatten(x) @ w
a      = abs(h) + maximum(h, 0.5 * h) - minimum(h, t) + leaky_relu(h, alpha=0.2) + prelu(h)
s      = sum(a * a, axis=1) + mean(exp(-abs(h)), axis=-1)
loss   = cross_entropy(a, softmax(t)) + bce(h, sigmoid(t)) + l2(s) / 100.0 + sse(a, t) + hinge(a, y)
wrt    x, t
"""

EXAMPLE3 = """\
# Worked example 3: z = x1 x2 + sin x1, forward and reverse accumulation.
model accumulation
input x1 : float
input x2 : float
w3   = x1 * x2
w4   = sin(x1)
loss = w3 + w4
wrt x1, x2
"""


def _model(spec, tmp_path):
    m = compile_and_load(spec, tmp_path, "smooth") if isinstance(spec, str) else compile_and_load(spec, tmp_path)
    rng = np.random.default_rng(3)
    params = m.init_params(seed=0, dtype="float64")
    for k in params:  # move off zero-initialised biases so every term is exercised
        params[k] = params[k] + 0.1 * rng.normal(size=np.shape(params[k]))
    inputs = random_inputs(m, rng)
    return m, params, inputs, rng


def _direction(m, params, inputs, rng):
    v = {k: rng.normal(size=np.shape(a)) for k, a in params.items()}
    for k in m.WRT:
        v[k] = rng.normal(size=np.shape(inputs[list(m.INPUTS).index(k)]))
    return v


def _shift(m, params, inputs, v, h):
    p = {k: params[k] + h * v[k] for k in params}
    ins = [a + h * v[k] if k in v else a for k, a in zip(m.INPUTS, inputs)]
    return [p, *ins]


def _inner(a: dict, b: dict) -> float:
    return sum(float(np.sum(a[k] * b[k])) for k in a)


MODULES = [pytest.param(p, id=p.stem) for p in SPEC_PATHS] + [
    pytest.param(SMOOTH, id="smooth"), pytest.param(KINKED, id="kinked")]


@pytest.mark.parametrize("spec", MODULES)
def test_jvp_agrees_with_value_and_grad(spec, tmp_path):
    """Forward and reverse mode agree: jvp = <grad, v> for random directions v."""
    m, params, inputs, rng = _model(spec, tmp_path)
    loss, grads = m.value_and_grad(params, *inputs)
    for _ in range(2):
        v = _direction(m, params, inputs, rng)
        value, derivative = m.jvp(params, v, *inputs)
        assert float(value) == float(loss)
        assert float(derivative) == pytest.approx(_inner(grads, v), rel=1e-10, abs=1e-12)


def test_jvp_and_hvp_against_finite_differences(tmp_path):
    """On a smooth model: jvp vs differences of the loss, hvp vs differences of the gradient."""
    m, params, inputs, rng = _model(SMOOTH, tmp_path)
    v = _direction(m, params, inputs, rng)
    h = 1e-5
    up, down = _shift(m, params, inputs, v, h), _shift(m, params, inputs, v, -h)
    want = (float(m.loss(*up)) - float(m.loss(*down))) / (2 * h)
    assert float(m.jvp(params, v, *inputs)[1]) == pytest.approx(want, rel=1e-7)
    hv = m.hvp(params, v, *inputs)
    g_up, g_down = m.value_and_grad(*up)[1], m.value_and_grad(*down)[1]
    assert set(hv) == set(g_up)
    for k in hv:
        np.testing.assert_allclose(hv[k], (g_up[k] - g_down[k]) / (2 * h), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("spec", MODULES)
def test_hvp_is_symmetric(spec, tmp_path):
    """<u, H v> = <v, H u>: the Hessian is symmetric, an independent check of hvp."""
    m, params, inputs, rng = _model(spec, tmp_path)
    u, v = _direction(m, params, inputs, rng), _direction(m, params, inputs, rng)
    uhv, vhu = _inner(u, m.hvp(params, v, *inputs)), _inner(v, m.hvp(params, u, *inputs))
    assert uhv == pytest.approx(vhu, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("spec", MODULES)
def test_hvp_matches_torch(spec, tmp_path, monkeypatch):
    """hvp against torch.autograd.functional.hvp of the same spec written with torch
    operators (tests/torch_ref.py: it shares only the parser with nnc)."""
    torch = pytest.importorskip("torch", reason="torch==2.13.0 (CPU) is not installed")
    import torch_ref
    from torch_ref import TorchModel

    def hinge(scores, labels, margin=1.0):  # multi_margin_loss has no second derivative in torch
        correct = scores.gather(1, labels[:, None])
        margins = torch.clamp(scores - correct + margin, min=0.0).scatter(1, labels[:, None], 0.0)
        return margins.sum() / scores.shape[0]

    monkeypatch.setitem(torch_ref.FUNCTIONS, "hinge", hinge)

    m, params, inputs, rng = _model(spec, tmp_path)
    v = _direction(m, params, inputs, rng)
    names = list(params) + list(m.WRT)
    reference = TorchModel(spec if isinstance(spec, str) else spec.read_text())
    data = {k: torch.from_numpy(np.asarray(a)) for k, a in zip(m.INPUTS, inputs)}

    def loss(*values):
        return reference.run({**data, **dict(zip(names, values))})[0]

    point = tuple(torch.from_numpy(np.asarray(params[k], dtype=np.float64)) if k in params
                  else data[k] for k in names)
    _, want = torch.autograd.functional.hvp(loss, point, tuple(torch.from_numpy(v[k]) for k in names))
    got = m.hvp(params, v, *inputs)
    for k, w in zip(names, want):
        np.testing.assert_allclose(got[k], w.numpy(), rtol=1e-9, atol=1e-11)


def test_worked_example_3_in_both_modes(tmp_path):
    m = compile_and_load(EXAMPLE3, tmp_path, "accumulation")
    x1, x2 = np.float64(0.7), np.float64(-1.3)
    z = x1 * x2 + np.sin(x1)
    # forward accumulation, seeds (dw1, dw2) = (1, 0) and (0, 1)
    value, dz_dx1 = m.jvp({}, {"x1": np.float64(1.0), "x2": np.float64(0.0)}, x1, x2)
    assert float(value) == pytest.approx(z) and float(dz_dx1) == pytest.approx(x2 + np.cos(x1))
    assert float(m.jvp({}, {"x1": np.float64(0.0), "x2": np.float64(1.0)}, x1, x2)[1]) == pytest.approx(x1)
    # reverse accumulation, seed w5bar = 1
    _, grads = m.value_and_grad({}, x1, x2)
    assert float(grads["x1"]) == pytest.approx(x2 + np.cos(x1)) and float(grads["x2"]) == pytest.approx(x1)
    # second order: H = [[-sin x1, 1], [1, 0]]
    hv = m.hvp({}, {"x1": np.float64(1.0), "x2": np.float64(0.0)}, x1, x2)
    assert float(hv["x1"]) == pytest.approx(-np.sin(x1)) and float(hv["x2"]) == pytest.approx(1.0)
    # the generated forward code is the textbook's, line for line
    source = (tmp_path / next(p.name for p in tmp_path.glob("*.py"))).read_text()
    body = source[source.index("def jvp("):source.index("def hvp(")]
    lines = [ln.strip() for ln in body.splitlines()]
    expected = ["w3 = x1 * x2", "dot_w3 = x2 * dot_x1 + x1 * dot_x2", "w4 = xp.sin(x1)",
                "dot_w4 = xp.cos(x1) * dot_x1", "loss = w3 + w4", "dot_loss = dot_w3 + dot_w4"]
    found = [ln for ln in lines if ln in expected]
    assert found == expected


@pytest.mark.parametrize("spec", MODULES)
def test_jvp_and_hvp_run_under_array_api_strict(spec, tmp_path):
    xps = pytest.importorskip("array_api_strict", reason="array_api_strict is not installed")
    m, params, inputs, rng = _model(spec, tmp_path)
    v = _direction(m, params, inputs, rng)

    def strict(d):
        return {k: xps.asarray(a) for k, a in d.items()}

    s_inputs = [xps.asarray(a) for a in inputs]
    value, derivative = m.jvp(strict(params), strict(v), *s_inputs)
    assert float(value) == pytest.approx(float(m.loss(params, *inputs)), rel=1e-12)
    assert float(derivative) == pytest.approx(float(m.jvp(params, v, *inputs)[1]), rel=1e-12)
    hv, want = m.hvp(strict(params), strict(v), *s_inputs), m.hvp(params, v, *inputs)
    for k in want:
        np.testing.assert_allclose(np.asarray(hv[k]), want[k], rtol=1e-12, atol=1e-14)


def test_hvp_of_a_parameter_the_loss_ignores_is_zero(tmp_path):
    m = compile_and_load("model unused\ninput x : float[3]\nparam a : float[3]\nparam c : float[3]\n"
                         "loss = sum(a * a * x)\n", tmp_path, "unused")
    x = np.array([1.0, 2.0, 3.0])
    params = {"a": np.array([0.5, -1.0, 2.0]), "c": np.ones(3)}
    _, grads = m.value_and_grad(params, x)
    np.testing.assert_array_equal(grads["c"], np.zeros(3))
    hv = m.hvp(params, {"a": np.ones(3), "c": np.ones(3)}, x)
    np.testing.assert_allclose(hv["a"], 2 * x)
    np.testing.assert_array_equal(hv["c"], np.zeros(3))


def test_jvp_of_a_loss_that_is_a_parameter(tmp_path):
    # `loss = a`: jvp returned `a` without reading it from params (NameError)
    m = compile_and_load("model lossparam\ninput x : float[B, 2]\nparam a : float = 1.5\n"
                         "h = tanh(dense(x, 2))\nloss = a\noutput h\n", tmp_path, "lossparam")
    params = m.init_params(dtype="float64")
    x = np.ones((3, 2))
    tangents = {k: np.full(np.shape(v), 0.5) for k, v in params.items()}
    value, derivative = m.jvp(params, tangents, x)
    assert float(value) == 1.5 and float(derivative) == 0.5
    assert all(not np.any(v) for k, v in m.hvp(params, tangents, x).items())


def test_hvp_of_a_learnable_exponent_at_zero(tmp_path):
    """loss = sum(x ^ z) at z = 0 (a scalar parameter's default init): d2/dx_i dz = x_i^(z-1) (1 + z
    log x_i) = 1 / x_i, d2/dz2 = sum(log(x)^2), d2/dx_i2 = z (z-1) x_i^(z-2) = 0. The base slope
    z * x^(z-1) was written z * x^0 wherever z = 0, so hvp's x entries were v_z, not v_z / x
    (found by the sweep of tests/unseen9, on tests/unseen5/pow_param_exponent.nn)."""
    m = compile_and_load("model powzero\ninput x : float[3]\nparam z : float\nloss = sum(x ^ z)\nwrt x\n",
                         tmp_path, "powzero")
    x = np.array([0.5, 2.0, 4.0])
    params = m.init_params(dtype="float64")
    assert float(params["z"]) == 0.0
    v = {"z": np.asarray(0.7), "x": np.array([1.0, -2.0, 3.0])}
    hv = m.hvp(params, v, x)
    np.testing.assert_allclose(hv["x"], 0.7 / x, rtol=1e-12)
    np.testing.assert_allclose(hv["z"], 0.7 * np.sum(np.log(x) ** 2) + np.sum(v["x"] / x), rtol=1e-12)
    # and where x = 0 too, 0 ^ z at z = 0 keeps a finite (zero) gradient in x
    _, grads = m.value_and_grad(params, np.array([0.0, 2.0, 4.0]))
    np.testing.assert_array_equal(grads["x"], np.zeros(3))
