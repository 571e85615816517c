"""PyTorch's autograd through the generated code: on tensors that require grad, the pure entry
points are part of PyTorch's graph, so users can backpropagate through `loss` and `forward`,
and through `value_and_grad`, `jvp` and `hvp` for higher derivatives. PyTorch computes some
derivatives from an operation's saved result (exp, tanh, sigmoid, sqrt, pow), so the
generated code must never overwrite one of those in place (`keeps_output` in the registry).

Each check compares two independent routes, in float64:
- backward of `loss` against `value_and_grad`;
- backward of <value_and_grad's gradient, v> and of `jvp`'s tangent (both d/dθ <∇L, v>)
  against `hvp` (forward-over-reverse: no PyTorch involved);
- backward of <forward's outputs, w> and of <hvp, u> along a direction against central
  differences of the same functions on NumPy.
"""

from __future__ import annotations

import inspect
import random

import numpy as np
import pytest
from specgen import generate

from helpers import SPEC_PATHS, random_spec_seeds
from nnc.api import compile_spec, load_module
from nnc.runtime.gradcheck import bind_dims, draw_point

torch = pytest.importorskip("torch", reason="PyTorch is a test dependency: python -m pip install torch==2.13.0")

EPS = 1e-6  # central differences in float64: error about EPS**2 * f''' + rounding / EPS


def _tuple(out) -> tuple:
    return out if isinstance(out, tuple) else () if out is None else (out,)


def _grad(value, wrt: list, keys: list[str]) -> dict:
    """d value / d wrt; zeros where value does not depend on them (no graph at all: a loss
    that is constant in the parameters)."""
    got = torch.autograd.grad(value, wrt, allow_unused=True) if value.requires_grad else [None] * len(wrt)
    return {k: np.zeros(tuple(w.shape)) if g is None else g.detach().numpy() for k, w, g in zip(keys, wrt, got)}


def _close(got: dict, want: dict, label: str, rtol: float = 1e-9, atol: float = 1e-11) -> None:
    assert got.keys() == want.keys(), label
    scale = max([1.0, *(float(np.max(np.abs(w), initial=0.0)) for w in want.values())])
    for k in want:
        np.testing.assert_allclose(got[k], np.asarray(want[k]), rtol=rtol, atol=atol * scale, err_msg=f"{label}: {k}")


def _check(module, label: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    params, inputs = draw_point(module, bind_dims(module.INPUTS, None), rng)
    keys = [*params, *(n for n in module.INPUTS if n in module.WRT)]
    at = {**params, **{n: x for n, x in zip(module.INPUTS, inputs) if n in module.WRT}}
    v = {k: rng.standard_normal(np.shape(a)) for k, a in at.items()}

    def on_torch():
        tp = {k: torch.tensor(p, requires_grad=True) for k, p in params.items()}
        tx = [torch.tensor(x, requires_grad=n in module.WRT) if np.asarray(x).dtype.kind == "f" else torch.tensor(x)
              for n, x in zip(module.INPUTS, inputs)]
        wrt = [*tp.values(), *(x for n, x in zip(module.INPUTS, tx) if n in module.WRT)]
        return tp, tx, wrt

    _, grads = module.value_and_grad(params, *inputs)
    tp, tx, wrt = on_torch()
    _close(_grad(module.loss(tp, *tx), wrt, keys), grads, f"{label}: backward of loss")

    hv = module.hvp(params, v, *inputs)
    tp, tx, wrt = on_torch()
    _, g = module.value_and_grad(tp, *tx)
    tv = {k: torch.tensor(a) for k, a in v.items()}
    inner = sum((g[k] * tv[k]).sum() for k in keys)
    _close(_grad(inner, wrt, keys), hv, f"{label}: backward of <value_and_grad, v>")
    tp, tx, wrt = on_torch()
    _, dot = module.jvp(tp, tv, *tx)
    _close(_grad(dot, wrt, keys), hv, f"{label}: backward of jvp")

    def along(fn, weights: list, point: dict, direction: dict) -> float:
        """d/dt <fn(point + t direction), weights> at 0, by central differences on NumPy."""
        def at_t(t):
            moved = {k: a + t * direction[k] for k, a in point.items()}
            outs = fn({k: moved[k] for k in params}, [moved.get(n, x) for n, x in zip(module.INPUTS, inputs)])
            return sum(float(np.sum(np.asarray(o) * w)) for o, w in zip(outs, weights))
        return (at_t(EPS) - at_t(-EPS)) / (2 * EPS)

    direction = {k: rng.standard_normal(np.shape(a)) for k, a in at.items()}
    cases = []
    if module.OUTPUTS:
        names_in = list(module.INPUTS)
        pick = [names_in.index(n) for n in list(inspect.signature(module.forward).parameters)[1:]]

        def outputs(p, xs):
            return _tuple(module.forward(p, *(xs[i] for i in pick)))
        cases.append(("forward", outputs))
    names = list(hv)

    def hvp(p, xs):
        on = tv if torch.is_tensor(next(iter(p.values()), None)) else v
        return tuple(module.hvp(p, on, *xs)[k] for k in names)
    cases.append(("hvp", hvp))
    for name, fn in cases:
        weights = [rng.standard_normal(np.shape(o)) for o in fn(params, inputs)]
        tp, tx, wrt = on_torch()
        outs = fn(tp, tx)
        total = sum((o * torch.tensor(w)).sum() for o, w in zip(outs, weights))
        got = _grad(total, wrt, keys)
        want = along(fn, weights, at, direction)
        have = sum(float(np.sum(got[k] * direction[k])) for k in keys)
        assert abs(have - want) <= 1e-5 * max(1.0, abs(want)), f"{label}: backward of {name}: {have} vs {want}"


@pytest.mark.parametrize("path", SPEC_PATHS, ids=[p.stem for p in SPEC_PATHS])
def test_backpropagating_through_bundled_specs(path):
    module = load_module(compile_spec(path.read_text(), str(path)), path.stem)
    for seed in range(2):
        _check(module, path.stem, seed)


@pytest.mark.parametrize("seed", random_spec_seeds())
def test_backpropagating_through_random_specs(seed):
    rng = random.Random(seed)
    text = generate(rng.choice, rng.choice([2, 3, 4, 6]), batch=seed % 2 == 1)
    module = load_module(compile_spec(text, f"random{seed}.nn"), f"random{seed}")
    _check(module, f"random spec {seed}\n{text}")


def test_an_exp_scaled_in_place_is_differentiable():
    """The smallest case sweep 16 found: `h = xp.exp(z); h *= 2.0` made PyTorch's backward
    raise (the exp's saved result was modified in place)."""
    text = "model m\ninput x : float[B, 3]\nparam W : float[3, 2]\nh = exp(x @ W) * 2\nloss = sum(h)\n"
    source = compile_spec(text, "m.nn")
    assert "    h = 2.0 * xp.exp(xp.matmul(x, W))\n" in source  # not `h = xp.exp(...)`, then `h *= 2.0`
    _check(load_module(source, "m"), "exp * 2")
