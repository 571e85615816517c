"""IR invariants after every pass, and the deterministic IR printer."""

from __future__ import annotations

import pytest

from helpers import SPEC_PATHS
from nnc.autodiff import differentiate
from nnc.ir.printer import print_program
from nnc.ir.verify import verify
from nnc.lower import lower
from nnc.passes import PIPELINE
from nnc.syntax.parser import parse_spec


@pytest.mark.parametrize("path", SPEC_PATHS, ids=lambda p: p.stem)
def test_every_pass_keeps_the_ir_valid(path):
    prog = lower(parse_spec(path.read_text(), str(path)))
    verify(prog)
    prog = differentiate(prog)
    verify(prog)
    for run_pass in PIPELINE:
        prog = run_pass(prog)
        verify(prog)


@pytest.mark.parametrize("path", SPEC_PATHS, ids=lambda p: p.stem)
def test_printer_is_deterministic_and_shows_both_directions(path):
    def text():
        prog = lower(parse_spec(path.read_text(), str(path)))
        return print_program(differentiate(prog))

    first = text()
    assert first == text()
    assert "forward:" in first and "backward:" in first


def test_no_gradient_for_data_inputs_unless_asked():
    spec = "model m\ninput x : float[B, 3]\ninput y : float[B, 2]\nz = dense(x, 2)\nloss = mse(z, y)\n"
    prog = differentiate(lower(parse_spec(spec)))
    assert [n for n, _ in prog.grads] == ["z.W", "z.b"]
    names = {e.out.name for e in prog.backward}
    assert "d_x" not in names and "d_y" not in names
    asked = differentiate(lower(parse_spec(spec + "wrt x\n")))
    assert [n for n, _ in asked.grads] == ["z.W", "z.b", "x"]


def test_cse_merges_repeated_subexpressions():
    spec = "model m\ninput x : float[3]\nparam w : float[3]\nloss = sum(exp(w * x)) + sum(exp(w * x))\n"
    from nnc.api import build_program

    prog = build_program(spec)
    assert sum(e.prim == "exp" for e in prog.eqns) == 1


def test_dce_drops_what_neither_loss_outputs_nor_gradients_need():
    spec = ("model m\ninput x : float[3]\nparam w : float[3]\nunused = exp(x) * 2.0\nseen = tanh(w)\n"
            "loss = sum(w * x)\noutput seen\n")
    from nnc.api import build_program

    prog = build_program(spec)
    prims = [e.prim for e in prog.eqns]
    assert "exp" not in prims  # `unused` feeds nothing
    assert "tanh" in prims  # an output is kept even though the loss does not read it
    assert all(e.out.name != "d_seen" for e in prog.backward)  # no gradient flows from an output
