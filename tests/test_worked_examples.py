"""The worked examples of shared/reference/worked-examples.md, reproduced to their printed digits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from helpers import SPECS, compile_and_load
from nnc.api import build_program
from nnc.ir.interpret import evaluate


def assert_printed(value: float, printed: str) -> None:
    """`value` agrees with a figure printed with d decimals, to one unit in the last digit."""
    decimals = len(printed.split(".")[1])
    assert abs(float(value) - float(printed)) <= 10.0 ** -decimals, (value, printed)


# ---- 1. the 2-2-2 sigmoid network -------------------------------------------------------

INPUT = np.array([0.05, 0.10])
T = np.array([0.01, 0.99])


@pytest.fixture(scope="module")
def mazur(tmp_path_factory):
    return compile_and_load(SPECS / "mazur.nn", tmp_path_factory.mktemp("mazur"))


@pytest.fixture(scope="module")
def mazur_values(mazur):
    """Every forward and adjoint value of the compiled program, by name."""
    prog = build_program((SPECS / "mazur.nn").read_text(), "mazur.nn")
    params = mazur.init_params(dtype="float64")
    env = {"i": INPUT, "t": T, "W1": params["W1"], "b1": params["b1"], "W2": params["W2"], "b2": params["b2"]}
    return evaluate(prog.eqns + prog.backward, env)


def test_mazur_forward_values(mazur_values):
    v = mazur_values
    assert_printed(v["net_h"][0], "0.3775")
    assert_printed(v["out_h"][0], "0.593269992")
    assert_printed(v["out_h"][1], "0.596884378")
    assert_printed(v["net_o"][0], "1.105905967")
    assert_printed(v["out_o"][0], "0.75136507")
    assert_printed(v["out_o"][1], "0.772928465")
    per_output = 0.5 * (T - v["out_o"]) ** 2
    assert_printed(per_output[0], "0.274811083")
    assert_printed(per_output[1], "0.023560026")
    assert_printed(v["loss"], "0.298371109")


def test_mazur_backward_values(mazur_values):
    v = mazur_values
    assert_printed(v["d_out_o"][0], "0.74136507")
    assert_printed(v["d_net_o"][0] / v["d_out_o"][0], "0.186815602")
    assert_printed(v["d_W2"][0, 0], "0.082167041")
    assert_printed(v["d_out_h"][0], "0.036350306")
    assert_printed(v["d_W1"][0, 0], "0.000438568")


def test_mazur_generated_module_gradients(mazur):
    params = mazur.init_params(dtype="float64")
    loss, grads = mazur.value_and_grad(params, INPUT, T)
    assert_printed(loss, "0.298371109")
    assert_printed(grads["W2"][0, 0], "0.082167041")
    assert_printed(grads["W1"][0, 0], "0.000438568")
    assert set(grads) == {"W1", "b1", "W2", "b2"}


def test_mazur_one_sgd_step_with_lr_half(mazur):
    name, settings = mazur.OPTIMIZER
    assert name == "sgd" and settings["lr"] == 0.5 and settings["momentum"] == 0.0
    params = mazur.init_params(dtype="float64")
    state = mazur.init_optimizer(params)
    loss = mazur.train_step(params, state, INPUT, T)
    assert_printed(loss, "0.298371109")
    for value, printed in zip(params["W1"].reshape(-1), ["0.149780716", "0.19956143", "0.24975114", "0.29950229"]):
        assert_printed(value, printed)
    for value, printed in zip(params["W2"].reshape(-1), ["0.35891648", "0.408666186", "0.511301270", "0.561370121"]):
        assert_printed(value, printed)


# ---- 2. multiclass SVM loss --------------------------------------------------------------

SCORES = np.array([[-2.0, 5.0, 3.0],   # image 1 (cat): airplane, automobile, cat
                   [5.0, 6.0, 3.0],    # image 2 (car)
                   [-2.0, 3.0, 4.0]])  # image 3 (airplane)
LABELS = np.array([2, 1, 0])


def test_hinge_losses_per_image_and_mean(tmp_path):
    spec = "model hinge_example\ninput s : float[N, 3]\ninput y : int[N]\nloss = hinge(s, y)\nwrt s\n"
    m = compile_and_load(spec, tmp_path, "hinge_example")
    per_image = [float(m.loss({}, SCORES[k:k + 1], LABELS[k:k + 1])) for k in range(3)]
    assert per_image == [3.0, 0.0, 13.0]
    assert math.isclose(float(m.loss({}, SCORES, LABELS)), 16 / 3, rel_tol=1e-15)


def test_svm_spec_reproduces_the_hinge_example(tmp_path):
    m = compile_and_load(SPECS / "svm.nn", tmp_path)
    params = m.init_params(dtype="float64")
    params["scores.W"] = np.vstack([SCORES, np.full((1, 3), 7.0)])  # the 4th feature is always 0
    params["scores.b"] = np.zeros(3)
    x = np.hstack([np.eye(3), np.zeros((3, 1))])
    np.testing.assert_array_equal(m.forward(params, x), SCORES)
    assert math.isclose(float(m.loss(params, x, LABELS)), 16 / 3, rel_tol=1e-15)


# ---- 3. reverse accumulation on z = x1 x2 + sin x1 ------------------------------------------

EXAMPLE3 = "model example3\ninput x1 : float\ninput x2 : float\nloss = x1 * x2 + sin(x1)\nwrt x1, x2\n"


@pytest.mark.parametrize("x1,x2", [(2.0, 5.0), (-0.7, 0.3), (math.pi / 3, -1.5)])
def test_example3_reverse_mode(tmp_path, x1, x2):
    m = compile_and_load(EXAMPLE3, tmp_path, "example3")
    z, grads = m.value_and_grad({}, np.asarray(x1), np.asarray(x2))
    assert math.isclose(float(z), x1 * x2 + math.sin(x1), rel_tol=1e-15)
    # w2bar = w3bar w1 = x1;  w1bar = w3bar w2 + w4bar cos(w1) = x2 + cos(x1)
    assert math.isclose(float(grads["x2"]), x1, rel_tol=1e-15)
    assert math.isclose(float(grads["x1"]), x2 + math.cos(x1), rel_tol=1e-15)


def test_example3_backward_code_reads_like_the_textbook(tmp_path):
    source = compile_and_load(EXAMPLE3, tmp_path, "example3").__file__
    code = Path(source).read_text()
    backward = code.split("# ---- backward ----")[1].split("return")[0]
    assert "xp.cos(x1)" in backward
    assert "d_x1" in backward or '"x1": ' in code
