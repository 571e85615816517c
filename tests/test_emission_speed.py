"""The speed-minded emission choices: each visible in the generated code, each giving the
results of the plain computation (checked against finite differences and a reference
SGD step computed here from value_and_grad)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import SPEC_PATHS, compile_and_load, load_source, numeric_grad, random_inputs
from nnc.api import compile_spec

ROOT = SPEC_PATHS[0].parent.parent
MLP_SGD = ROOT / "benchmarks" / "mlp_sgd.nn"


@pytest.fixture(scope="module")
def mlp_text() -> str:
    return compile_spec(MLP_SGD.read_text(), str(MLP_SGD))


def _function(text: str, name: str) -> str:
    start = text.index(f"\ndef {name}(")
    end = text.find("\ndef ", start + 1)
    return text[start:end if end > 0 else None]


def test_generated_code_shows_the_optimizations(mlp_text):
    vg = _function(mlp_text, "value_and_grad")
    assert "h1 = xp.matmul(x, h1_W)\n    h1 += h1_b\n" in vg  # bias added in place
    # fused CE (the exp is not overwritten: PyTorch's autograd keeps it for its derivative)
    assert "d_logits = xp.exp(logp_logits) - _onehot(xp, y, 10, logp_logits)\n    d_logits /= B" in vg
    assert "xp.matmul(h2.T, d_logits)" in vg and "xp.matmul(x.T, d_h1_pre)" in vg  # transposes folded into products
    assert "*= xp.astype(h2 > 0.0, h2.dtype)" in vg  # relu mask from the output, one pass
    assert "h1_W.T)" not in vg and "d_x" not in vg  # no gradient for the data input
    assert "xp.where" not in vg
    fused = _function(mlp_text, "train_step")
    assert fused.startswith("\ndef train_step(params, state, x, y):")
    assert "d_logits *= 0.01 / B" in fused  # lr folded into the backward's constant
    assert '    h1_W -= d_h1_W\n' in fused and '    params["h1.W"] = h1_W\n' in fused  # no lr * g pass
    assert "grads" not in fused and "for name" not in fused


def test_sgd_falls_back_to_a_loop_when_a_step_aliases_a_parameter():
    text = compile_spec("model alias\nparam a : float[3] = 1.5\nparam b : float[3] = -2.0\n"
                        "loss = sum(a * b)\noptimizer sgd(lr=1.0)\n", "alias.nn")  # steps are b and a
    step = _function(text, "train_step")
    assert "for name in PARAM_NAMES" in step and "p = p - g\n" in step  # out of place
    assert "d_a" not in step


def test_momentum_updates_state_and_params_in_place():
    text = compile_spec((ROOT / "specs" / "mlp.nn").read_text(), "mlp.nn")
    step = _function(text, "train_step")
    loop = "velocity *= 0.9\n{0}velocity += g\n{0}p -= 0.1 * velocity\n{0}params[name] = p".format(" " * 16)
    assert loop in step  # the portable loop, in the else branch of the CuPy kernel's
    assert "kernel(grads[name], params[name], state[\"velocity\"][name])" in step


def _reference_sgd(module, params, inputs, lr):
    """One SGD step from value_and_grad (which never uses the lr-seeded backward)."""
    _, grads = module.value_and_grad(params, *inputs)
    return {k: params[k] - lr * grads[k] for k in params}


@pytest.mark.parametrize("path", SPEC_PATHS + [MLP_SGD], ids=lambda p: p.stem)
def test_train_step_equals_a_reference_step(path, tmp_path):
    module = compile_and_load(path, tmp_path)
    rng = np.random.default_rng(0)
    inputs = random_inputs(module, rng)
    params = module.init_params(seed=1, dtype="float64")
    name, hyper = module.OPTIMIZER
    if name != "sgd" or hyper.get("nesterov") or hyper.get("weight_decay"):
        pytest.skip(f"reference step written for plain/momentum SGD, not {module.OPTIMIZER}")
    lr, mu = hyper["lr"], hyper.get("momentum", 0.0)
    state = module.init_optimizer(params)
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    expected = {k: v.copy() for k, v in params.items()}
    for _ in range(3):
        _, grads = module.value_and_grad(expected, *inputs)
        for k, g in grads.items():
            velocity[k] = mu * velocity[k] + g
            expected[k] = expected[k] - lr * velocity[k]
        module.train_step(params, state, *inputs)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("path", SPEC_PATHS + [MLP_SGD], ids=lambda p: p.stem)
def test_value_and_grad_matches_finite_differences(path, tmp_path):
    """In-place emission, mask multiplies and folds must not change a single gradient."""
    module = compile_and_load(path, tmp_path)
    rng = np.random.default_rng(2)
    inputs = random_inputs(module, rng, size=2)
    params = {k: np.array(v + 0.01 * rng.normal(size=np.shape(v)))
              for k, v in module.init_params(dtype="float64").items()}
    _, grads = module.value_and_grad(params, *inputs)
    for name, p in params.items():
        if p.size > 3000:  # the big weights: too slow here; their biases take the same backward path
            continue
        num = numeric_grad(lambda: module.loss(params, *inputs), p)
        np.testing.assert_allclose(grads[name], num, rtol=1e-5, atol=1e-7, err_msg=f"{path.stem}: {name}")


def test_sum_of_squares_of_a_vector_is_a_dot_product(tmp_path):
    text = compile_spec("model q\nparam v : float[3] = [1.0, -2.0, 0.5]\nloss = 3.0 * l2(v)\n", "q.nn")
    assert "xp.matmul(v, v)" in text
    module = load_source(text, tmp_path, "q")
    params = module.init_params(dtype="float64")
    loss, grads = module.value_and_grad(params)
    np.testing.assert_allclose(loss, 3.0 * 5.25)
    np.testing.assert_allclose(grads["v"], 6.0 * np.array([1.0, -2.0, 0.5]))


def test_in_place_never_touches_a_value_read_later(tmp_path):
    """h is read by both branches: neither may overwrite it."""
    text = ("model branch\ninput x : float[N, 3]\nh = dense(x, 3)\na = h * 2.0 + 1.0\nb = exp(h) - h\n"
            "loss = sum(a * b)\noutput a, b\n")
    module = load_source(compile_spec(text, "branch.nn"), tmp_path, "branch")
    params = module.init_params(dtype="float64")
    x = np.random.default_rng(0).normal(size=(4, 3))
    h = x @ params["h.W"] + params["h.b"]
    a, b = module.forward(params, x)
    np.testing.assert_allclose(a, h * 2.0 + 1.0)
    np.testing.assert_allclose(b, np.exp(h) - h)
    np.testing.assert_allclose(module.loss(params, x), np.sum((h * 2.0 + 1.0) * (np.exp(h) - h)))


def test_a_buffer_read_but_not_replaced_is_never_overwritten(tmp_path):
    """Only a buffer's own new value may be written into it: an update rule that reads a
    buffer for the last time in `lr * m` must not turn that into `m *= lr`."""
    from nnc.optim import OPTIMIZERS, optimizer

    @optimizer("_const_push", (("lr", 0.5),), buffers=lambda hp: ("m",))
    def _const_push(b, p, g, bufs, hp, step):
        return b.sub(p, b.add(b.mul(hp["lr"], bufs["m"]), g)), {}

    try:
        text = compile_spec("model c\nparam w : float[2] = 1.0\nloss = l2(w)\noptimizer _const_push(lr=0.5)\n",
                            "c.nn")
    finally:
        del OPTIMIZERS["_const_push"]
    module = load_source(text, tmp_path, "c")
    params = module.init_params(dtype="float64")
    state = module.init_optimizer(params)
    state["m"]["w"][...] = 3.0
    module.train_step(params, state)
    np.testing.assert_array_equal(state["m"]["w"], [3.0, 3.0])
    np.testing.assert_allclose(params["w"], 1.0 - (0.5 * 3.0 + 2.0))


def test_lr_seeded_steps_that_alias_a_parameter_take_the_loop(tmp_path):
    """With lr=0.1 and loss 10 * sum(a*b) the seeded steps are b and a themselves."""
    text = compile_spec("model alias\nparam a : float[3] = 1.5\nparam b : float[3] = -2.0\n"
                        "loss = 10.0 * sum(a * b)\noptimizer sgd(lr=0.1)\n", "alias.nn")
    assert "_loss_and_sgd_steps(params)" in _function(text, "train_step")
    module = load_source(text, tmp_path, "alias")
    params = module.init_params(dtype="float64")
    module.train_step(params, module.init_optimizer(params))
    np.testing.assert_allclose(params["a"], 1.5 - 0.1 * 10.0 * -2.0)
    np.testing.assert_allclose(params["b"], -2.0 - 0.1 * 10.0 * 1.5)


def test_gradient_of_a_shared_scalar_bias_sums_without_an_axis(tmp_path):
    """A bias broadcast over every axis gets a plain `xp.sum(d)`, no axis for NumPy to
    handle; here it is the forward's own sum, shared by common-subexpression elimination
    (and handed out as a copy, so that the loss and the gradient are separate arrays)."""
    text = "model s\ninput x : float[N, 3]\nparam b : float = 0.5\nloss = sum(exp(x + b))\n"
    source = compile_spec(text, "s.nn")
    vg = _function(source, "value_and_grad")
    assert 'return loss, {"b": _copy(xp, loss)}' in vg and "axis=" not in vg and vg.count("xp.sum(") == 1
    module = load_source(source, tmp_path, "s")
    params = module.init_params(dtype="float64")
    x = np.random.default_rng(0).normal(size=(4, 3))
    _, grads = module.value_and_grad(params, x)
    np.testing.assert_allclose(grads["b"], np.exp(x + 0.5).sum(), rtol=1e-12)
