"""Every primitive's VJP rule against float64 central differences, driven by the registry.

A primitive registered without examples, emission or VJP rule fails here, so a new
primitive is checked automatically.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnc.api import compile_spec
from nnc.builtins import BUILTINS
from nnc.ir.builder import Builder
from nnc.ir.core import Eqn, Lit, Var
from nnc.ir.interpret import evaluate
from nnc.ir.naming import Namer
from nnc.primitives import PRIMITIVES
from nnc.primitives.core import ADD, ATOM, MUL, POW, UNARY, Operand

CASES = [(name, i) for name, p in sorted(PRIMITIVES.items()) for i in range(len(p.examples))]


def test_every_primitive_has_examples_emission_and_rule():
    for name, p in PRIMITIVES.items():
        assert p.examples, f"{name} has no test examples"
        assert callable(p.vjp) and callable(p.emit) and callable(p.shape), name


def test_every_function_of_the_design_table_is_built_in():
    design = """dense prelu identity step sign sigmoid tanh arctan relu leaky_relu elu softplus silu
    gelu softmax log_softmax exp log sqrt abs sin cos maximum minimum sum mean transpose flatten
    mse sse cross_entropy bce hinge l2""".split()
    assert sorted(set(design) - set(BUILTINS)) == []


def _draw(shape, domain, rng, params):
    if domain == "real":  # magnitudes in [0.3, 2]: away from the kinks at 0
        return rng.uniform(0.3, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    if domain == "positive":
        return rng.uniform(0.5, 2.0, size=shape)
    if domain == "probs":
        e = np.exp(rng.normal(size=shape))
        return e / e.sum(axis=-1, keepdims=True)
    if domain == "int":
        return rng.integers(0, dict(params)["classes"], size=shape)
    if domain == "bool":
        return rng.random(size=shape) < 0.5
    if domain == "host":
        return float(rng.uniform(0.5, 2.0))
    raise AssertionError(domain)


_KIND = {"int": "int", "bool": "bool"}


def _setup(name, index, seed):
    prim = PRIMITIVES[name]
    ex = prim.examples[index]
    rng = np.random.default_rng(seed)
    inputs = tuple(Var(f"a{i}", shape, _KIND.get(dom, "float"), host=dom == "host")
                   for i, (shape, dom) in enumerate(ex.inputs))
    params = dict(ex.params)
    shape, dtype = prim.shape(inputs, params)
    eqn = Eqn(name, inputs, Var("out", shape, dtype), ex.params)
    env = {v.name: _draw(s, dom, rng, ex.params) for v, (s, dom) in zip(inputs, ex.inputs)}
    for v, value in zip(inputs, env.values()):
        assert np.shape(value) == tuple(v.shape)
    return prim, eqn, env, rng


@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_vjp_matches_central_differences(name, index):
    prim, eqn, env, rng = _setup(name, index, seed=index)
    out = evaluate([eqn], env)["out"]
    assert np.shape(out) == tuple(eqn.out.shape), "emission disagrees with the shape rule"
    if not prim.differentiable:
        assert all(ct is None for ct in prim.vjp(Builder(Namer()), eqn, Var("g", eqn.out.shape, "float")))
        return
    weights = rng.normal(size=eqn.out.shape)
    g = Var("g", eqn.out.shape, "float")
    b = Builder(Namer({"out", "g", *env}))
    cts = prim.vjp(b, eqn, g)
    assert len(cts) == prim.arity
    values = evaluate([eqn, *b.eqns], {**env, "g": weights})

    def objective():
        return float(np.sum(evaluate([eqn], env)["out"] * weights))

    for inp, ct in zip(eqn.inputs, cts):
        if inp.dtype != "float":
            assert ct is None
            continue
        if isinstance(env[inp.name], float):  # a host scalar: differentiate by hand
            x0 = env[inp.name]
            h = 1e-6
            env[inp.name] = x0 + h
            up = objective()
            env[inp.name] = x0 - h
            down = objective()
            env[inp.name] = x0
            numeric = (up - down) / (2 * h)
        else:
            from helpers import numeric_grad

            numeric = numeric_grad(objective, env[inp.name])
        analytic = np.zeros(inp.shape) if ct is None else np.broadcast_to(
            values[ct.name] if hasattr(ct, "name") else ct.value, inp.shape)
        if hasattr(ct, "name"):
            assert np.shape(values[ct.name]) == tuple(inp.shape), "cotangent has the wrong shape"
        np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-8,
                                   err_msg=f"d {name} / d {inp.name}")


_POW_EXPONENTS = [-4.0, -3.0, -2.0, -1.0, -0.5, 0.5, 1.5, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", _POW_EXPONENTS)
def test_pow_by_a_literal_matches_numpy_power(n, dtype):
    """A small integer power is emitted as products (NumPy's pow is slow there, see _emit_pow):
    np.power's values to a few roundings, and its infinities, zeros, signs and nans. Where the
    product overflows but the power is subnormal (1 / (1e13)^3 in float32), it gives 0."""
    rng = np.random.default_rng(int(abs(n) * 10))
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-30, -1e-30, 1e13, -1e13, 1e30, -1e30]
    x = np.concatenate([rng.uniform(-3.0, 3.0, 200), special]).astype(dtype)
    if n != int(n):
        x = np.abs(x)  # a fractional power of a negative number is nan either way
    eqn = Eqn("pow", (Var("x", x.shape, "float"), Lit(n)), Var("out", x.shape, "float"))
    with np.errstate(all="ignore"):
        out = evaluate([eqn], {"x": x})["out"]
        want = np.power(x, x.dtype.type(n))
    assert out.dtype == x.dtype
    info = np.finfo(x.dtype)
    finite = np.isfinite(want)
    np.testing.assert_allclose(out[finite], want[finite], rtol=4 * info.eps, atol=info.smallest_normal)
    assert np.array_equal(out[~finite], want[~finite], equal_nan=True)
    nonzero = finite & (np.abs(want) >= info.smallest_normal)
    assert np.array_equal(np.signbit(out[nonzero | ~finite]), np.signbit(want[nonzero | ~finite]))


@pytest.mark.parametrize("n, text", [(3.0, "x * x * x"), (4.0, "x * x * x * x"), (-2.0, "1.0 / (x * x)"),
                                     (-4.0, "1.0 / (x * x * x * x)"), (2.0, "x ** 2.0"), (-1.0, "x ** -1.0"),
                                     (0.5, "x ** 0.5"), (5.0, "x ** 5.0")])
def test_pow_emission_of_literal_exponents(n, text):
    emit = PRIMITIVES["pow"].emit((Var("x", (3,), "float"), Lit(n)), {})
    assert emit.fmt.format("x", repr(n)) == text


_SIG = "xp.exp(xp.minimum({0}, 0.0)) / (1.0 + xp.exp(-xp.abs({0})))"


@pytest.mark.parametrize("spec_text, before, operand", [
    ("sigmoid(x)", "", "x"),
    ("sigmoid(-x)", "s_pre = -x", "s_pre"),
    ("sigmoid(x + y)", "s_pre = x + y", "s_pre"),
    ("sigmoid(x ^ 2)", "s_pre = xp.square(x)", "s_pre"),
])
def test_sigmoid_reads_a_named_operand(spec_text, before, operand):
    """sigmoid is e^min(z, 0) / (1 + e^-|z|), which reads z twice: z is a name, the input or
    a temporary holding the expression, never the expression written out twice."""
    source = compile_spec(f"model m\ninput x : float[B]\ninput y : float[B]\ns = {spec_text}\noutput s\nloss = sum(s)\n")
    forward = source[source.index("def forward("):source.index("def loss(")]
    assert f"s = {_SIG.format(operand)}" in forward, forward
    assert before in forward


@pytest.mark.parametrize("placed, text, prec, negated", [
    ("x", "x", ATOM, "-x"), ("-x", "-x", UNARY, "x"), ("(a + b)", "a + b", ADD, "-(a + b)"),
    ("-(a + b)", "-(a + b)", UNARY, "a + b"), ("-(a + b)[0]", "-(a + b)[0]", UNARY, "(a + b)[0]"),
    ("(-(a) * (b))", "-(a) * (b)", MUL, "-(-(a) * (b))"), ("-1.0", "-1.0", UNARY, "1.0"),
    ("x ** 2", "x ** 2", POW, "-x ** 2"),
])
def test_operand_negation(placed, text, prec, negated):
    op = Operand(placed, text, prec)
    assert f"{op}" == placed and f"{op:neg}" == negated
