"""Dot-product (adjoint) tests: for every primitive linear in some operands, <J v, w> = <v, J^T w>.

Parametrised from the registry, so a new primitive declared `linear=` is tested
automatically. J v is the primitive itself applied to v (it is linear in those operands,
which is checked too); J^T w is its VJP rule, built as IR and run by the reference
interpreter. Both sides are float64 and must agree to 1e-12 relative.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnc.ir.builder import Builder
from nnc.ir.core import Var
from nnc.ir.interpret import evaluate
from nnc.ir.naming import Namer
from nnc.primitives import PRIMITIVES

CASES = [(name, k) for name, p in sorted(PRIMITIVES.items()) if p.linear for k in range(len(p.examples))]


def _value(rng: np.random.Generator, shape, domain: str):
    if domain == "bool":
        return rng.random(shape) > 0.5
    if domain == "int":
        return rng.integers(0, 3, size=shape)
    if domain == "host":
        return float(rng.standard_normal())
    if domain in ("positive", "probs"):
        return rng.uniform(0.5, 2.0, size=shape)
    return rng.standard_normal(shape)


def _operands(example):
    dtype = {"bool": "bool", "int": "int"}
    return [Var(f"a{i}", tuple(shape), dtype.get(domain, "float"), host=domain == "host")
            for i, (shape, domain) in enumerate(example.inputs)]


def _run(eqns, env, atom):
    return evaluate(eqns, env)[atom.name] if isinstance(atom, Var) else np.asarray(float(atom.value))


def _dot(a, b) -> float:
    return float(np.sum(np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)))


def test_registry_declares_linear_primitives():
    assert len({name for name, _ in CASES}) >= 8, CASES


@pytest.mark.parametrize("name,k", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_dot_product(name: str, k: int):
    prim = PRIMITIVES[name]
    example = prim.examples[k]
    rng = np.random.default_rng(1234 + k)
    ops = _operands(example)
    b = Builder(Namer({v.name for v in ops} | {"w"}))
    out = b.emit(name, *ops, **dict(example.params))
    assert isinstance(out, Var) and b.eqns and b.eqns[-1].out == out, "the example should not fold away"
    fixed = {v.name: _value(rng, v.shape, dom) for v, (_, dom) in zip(ops, example.inputs)}

    def apply(vs: dict) -> np.ndarray:
        return np.asarray(_run(b.eqns, {**fixed, **vs}, out), dtype=np.float64)

    lin = [ops[i] for i in prim.linear]
    v1 = {v.name: _value(rng, v.shape, dom) for v, (_, dom) in
          ((ops[i], example.inputs[i]) for i in prim.linear)}
    v2 = {ops[i].name: _value(rng, ops[i].shape, "host" if example.inputs[i][1] == "host" else "real")
          for i in prim.linear}
    # linear (not merely affine) in the declared operands, jointly
    mix = {n: v1[n] + 2.5 * v2[n] for n in v1}
    np.testing.assert_allclose(apply(mix), apply(v1) + 2.5 * apply(v2), rtol=1e-12, atol=1e-12)

    w = Var("w", out.shape, "float")
    w_value = rng.standard_normal(out.shape)
    vjp = Builder(b.namer)
    cts = prim.vjp(vjp, b.eqns[-1], w)
    env = {**fixed, "w": w_value}
    lhs = _dot(apply(v1), w_value)
    rhs = 0.0
    for v in lin:
        ct = cts[ops.index(v)]
        assert ct is not None, f"{name}: no cotangent for linear operand {v.name}"
        value = _run(b.eqns + vjp.eqns, env, ct)
        assert np.shape(value) == tuple(v.shape), f"{name}: cotangent of {v.name} has shape {np.shape(value)}"
        rhs += _dot(v1[v.name], value)
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), abs(rhs), 1e-300), (lhs, rhs)
