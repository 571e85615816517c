"""The grammar and the AST it produces."""

from __future__ import annotations

import pytest

from nnc.errors import SpecError
from nnc.syntax import ast
from nnc.syntax.parser import parse_spec


def stmts(text: str):
    return parse_spec(text).statements


def expr(text: str):
    (st,) = stmts(f"a = {text}\n")
    return st.expr


def show(e) -> str:
    """Fully parenthesised form of an expression, to read precedence off."""
    if isinstance(e, ast.Num):
        return e.text
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Neg):
        return f"(-{show(e.operand)})"
    if isinstance(e, ast.BinOp):
        return f"({show(e.left)} {e.op} {show(e.right)})"
    if isinstance(e, ast.Call):
        args = [show(a) for a in e.args] + [f"{k.name}={show(k.value)}" for k in e.kwargs]
        return f"{e.func}({', '.join(args)})"
    if isinstance(e, ast.ListLit):
        return "[" + ", ".join(show(i) for i in e.items) + "]"
    raise AssertionError(e)


@pytest.mark.parametrize("text,tree", [
    ("a + b * c", "(a + (b * c))"),
    ("a - b - c", "((a - b) - c)"),
    ("a / b * c", "((a / b) * c)"),
    ("x @ W + b", "((x @ W) + b)"),
    ("-x ^ 2", "(-(x ^ 2))"),
    ("x ^ 2 ^ 3", "(x ^ (2 ^ 3))"),
    ("x ** 2", "(x ^ 2)"),
    ("2 ^ -x", "(2 ^ (-x))"),
    ("-a * b", "((-a) * b)"),
    ("(a + b) * c", "((a + b) * c)"),
    ("f(x) ^ 2", "(f(x) ^ 2)"),
    ("h1.W @ x", "(h1.W @ x)"),
    ("leaky_relu(x, alpha=0.2)", "leaky_relu(x, alpha=0.2)"),
    ("dense(x, 10, bias=false, init=he_normal)", "dense(x, 10, bias=false, init=he_normal)"),
    ("1e-4 * l2(w)", "(1e-4 * l2(w))"),
    ("sum(x, axis=-1)", "sum(x, axis=(-1))"),
])
def test_precedence_and_associativity(text, tree):
    assert show(expr(text)) == tree


def test_every_statement_kind():
    sts = stmts("""# comment line
model m   # trailing comment
input x : float[B, 784]
input y : int[B]
param W : float[2, 2] = [[0.15, 0.2], [0.25, 0.3]]
param b : float = 0.35
param V : float[3, 3] = normal(0.1)
h = dense(x, 3)
loss = mse(h, h)
output h, x
wrt x
optimizer sgd(lr=0.1, momentum=0.9, nesterov=true)
""")
    kinds = [type(s).__name__ for s in sts]
    assert kinds == ["ModelStmt", "InputStmt", "InputStmt", "ParamStmt", "ParamStmt", "ParamStmt",
                     "DefineStmt", "LossStmt", "NameListStmt", "NameListStmt", "OptimizerStmt"]
    x = sts[1]
    assert [d.value for d in x.type.dims] == ["B", 784] and x.type.kind == "float"
    assert sts[2].type.kind == "int"
    assert show(sts[3].init) == "[[0.15, 0.2], [0.25, 0.3]]"
    assert sts[4].type.dims == ()
    assert [n.id for n in sts[8].names] == ["h", "x"]
    assert [k.name for k in sts[10].kwargs] == ["lr", "momentum", "nesterov"]


def test_keywords_are_whole_words():
    sts = stmts("modelx = inputs + paramy\nlosses = outputs\n")
    assert [s.name for s in sts] == ["modelx", "losses"]


def test_a_line_continues_while_a_bracket_is_open():
    sts = stmts("h = dense(x,\n        10)\nparam W : float[2, 2] = [[1, 2],\n   [3, 4]]\nloss = sum(h)\n")
    assert len(sts) == 3
    assert sts[0].span.line == 1 and sts[0].expr.span.end_line == 2


def test_spans_are_one_based_and_point_at_names():
    (st,) = stmts("\n  h = relu(x)\n")
    assert (st.name_span.line, st.name_span.col) == (2, 3)
    assert (st.expr.func_span.line, st.expr.func_span.col) == (2, 7)


def test_blank_lines_and_crlf():
    sts = stmts("model m\r\n\r\n\r\nh = x\r\n")
    assert len(sts) == 2


@pytest.mark.parametrize("text", ["a = (b + c\n", "a = b +\n", "model\n", "a = b c\n", "input x : double\n"])
def test_syntax_errors_are_spec_errors_with_a_location(text):
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert info.value.span is not None and info.value.span.line >= 1 and info.value.span.col >= 1
