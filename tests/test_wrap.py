"""Breaking long generated lines: the same code (equal ASTs), within the width when it can be."""

from __future__ import annotations

import ast

from hypothesis import given, settings
from hypothesis import strategies as st

from nnc.codegen.wrap import WIDTH, wrap_condition, wrap_items, wrap_statement

_atoms = st.sampled_from(["x", "h1_W", "xp.sum(d, axis=0)", "0.5", "t7", "-y", "xp.tanh(0.5 * z)",
                          "(a - b)", "a[:, None]", "B"])


@st.composite
def _expression(draw, depth: int = 3) -> str:
    if depth == 0 or draw(st.booleans()):
        return draw(_atoms)
    left, right = draw(_expression(depth - 1)), draw(_expression(depth - 1))
    op = draw(st.sampled_from([" + ", " - ", " * ", " / ", " @ "]))
    text = left + op + right
    return f"({text})" if draw(st.booleans()) else text


@settings(max_examples=300, deadline=None)
@given(st.lists(_expression(), min_size=1, max_size=12), st.sampled_from(["=", "+=", "-=", "*="]),
       st.sampled_from([4, 8]))
def test_wrapping_keeps_the_statement_and_the_width(terms, op, indent):
    statement = f"d_h2_pre {op} " + " + ".join(terms)
    wrapped = wrap_statement(statement, indent)
    assert ast.dump(ast.parse(wrapped)) == ast.dump(ast.parse(statement))
    if wrapped != statement:
        assert len(wrapped.splitlines()) > 1 and len(statement) + indent > WIDTH
    if all(len(t) < 40 for t in terms):  # short terms: every line fits
        first, *rest = wrapped.splitlines()  # continuation lines carry their own indentation
        assert indent + len(first) <= WIDTH and all(len(line) <= WIDTH for line in rest)


def test_short_lines_and_unbreakable_lines_stay():
    assert wrap_statement("h1 = x @ h1_W", 4) == "h1 = x @ h1_W"
    long_call = "h1 = xp.maximum(" + ", ".join(["a_long_argument_name"] * 8) + ")"
    assert wrap_statement(long_call, 4) == long_call  # no top-level + or -
    quoted = 'params["h1.W"] = ' + " + ".join(["t"] * 60)
    assert wrap_statement(quoted, 4) == quoted  # text with strings is left alone


def test_a_loss_breaks_before_its_plus():
    line = ("loss = -xp.sum(logp_logits * _onehot(xp, y, 10, logits)) / B"
            " + 0.0001 * (xp.sum(xp.square(h1_W)) + xp.sum(xp.square(h2_W)))")
    assert wrap_statement(line, 4) == (
        "loss = (-xp.sum(logp_logits * _onehot(xp, y, 10, logits)) / B\n"
        "            + 0.0001 * (xp.sum(xp.square(h1_W)) + xp.sum(xp.square(h2_W))))")


def test_items_fill_lines_and_stay_valid_python():
    items = [f'"setting_{k}": {k}.5' for k in range(20)]
    text = wrap_items('OPTIMIZER = ("sgd", {', items, "})")
    assert all(len(line) <= WIDTH for line in text.splitlines()) and len(text.splitlines()) > 1
    namespace: dict = {}
    exec(compile(text, "<test>", "exec"), namespace)  # our own generated text, not user input
    assert namespace["OPTIMIZER"] == ("sgd", {f"setting_{k}": k + 0.5 for k in range(20)})


def test_long_conditions_break_before_or():
    line = ('if y.ndim != 2 or y.shape[0] != B or y.shape[1] != 4'
            ' or _DTYPE_KINDS.get((y.__class__, y.dtype)) != "float":')
    wrapped = wrap_condition(line, 8)
    assert wrapped == ('if (y.ndim != 2 or y.shape[0] != B or y.shape[1] != 4\n'
                       '                or _DTYPE_KINDS.get((y.__class__, y.dtype)) != "float"):')
    body = "\n    pass"
    assert ast.dump(ast.parse(wrapped + body)) == ast.dump(ast.parse(line + body))
    assert wrap_condition('if x.ndim != 2 or "a or b" == s:', 8) == 'if x.ndim != 2 or "a or b" == s:'  # short
