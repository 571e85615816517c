"""Fuzzing: every input either compiles to valid Python or gets located spec errors.

Two generators: strings from the grammar itself (hypothesis.extra.lark) and byte-level
mutations of the example specs. Anything else escaping (an IndexError, a RecursionError,
a Lark exception, an error without a position) fails the test. The example counts keep
CI to a few seconds; set NNC_FUZZ_EXAMPLES=5000 for a longer local run (the grammar
generator draws a third of that: its drawing is slow).
"""

from __future__ import annotations

import os
from importlib import resources

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from lark import Lark

from helpers import SPEC_PATHS
from nnc.api import compile_spec
from nnc.cli import _not_utf8
from nnc.errors import SpecError, SpecErrors, render_errors

EXAMPLES = int(os.environ.get("NNC_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_outcome(text: str) -> str:
    """Compile `text`; the only allowed failures are spec errors with valid positions."""
    try:
        source = compile_spec(text, "fuzz.nn")
    except (SpecError, SpecErrors) as exc:
        errors = exc.errors if isinstance(exc, SpecErrors) else [exc]
        assert errors
        n_lines = text.count("\n") + 1
        for err in errors:
            assert err.span is not None, err
            assert 1 <= err.span.line <= n_lines and err.span.col >= 1, (err, n_lines)
            for _, note_span in err.notes:
                assert note_span is None or 1 <= note_span.line <= n_lines
        rendered = render_errors(exc, text, "fuzz.nn")
        assert rendered.startswith(f"fuzz.nn:{errors[0].span.line}:{errors[0].span.col}: error: ")
        return "error"
    compile(source, "fuzz_module.py", "exec")  # what compiles is valid Python
    return "ok"


def _grammar() -> Lark:
    text = resources.files("nnc.grammar").joinpath("nn.lark").read_text(encoding="utf-8")
    return Lark(text, parser="lalr")


# Comments in drawn programs: printable text (control characters are rejected on purpose
# and tested elsewhere; here they would hide everything behind that one error).
_COMMENT = st.from_regex(r"#[ -~]{0,20}", fullmatch=True)


@settings(FUZZ, max_examples=max(1, EXAMPLES // 3))  # drawing from the grammar is the slow part
@given(from_lark(_grammar(), explicit={"COMMENT": _COMMENT}))
def test_grammar_strings(text: str):
    check_outcome(text)


_WORDS = [b"model m\n", b"input ", b"param ", b"loss = ", b"output ", b"wrt ", b"optimizer sgd(", b"dense(",
          b"(", b")", b"[", b"]", b",", b"=", b":", b"\n", b" + ", b" @ ", b"^", b"-", b"float[", b"int[",
          b"1e999", b"0", b"B", b"x", b"y", b"h1.W", b"#", b"\\\n", b"\r\n", b"\xff", b"\x00", "\u00e9".encode()]


@st.composite
def mutated_spec(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SPEC_PATHS)).read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "word", "truncate"]))
        if op == "insert":
            data[pos:pos] = bytes([draw(st.integers(0, 255))])
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif op == "replace" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "duplicate":
            end = min(len(data), pos + draw(st.integers(1, 40)))
            data[pos:pos] = data[pos:end]
        elif op == "word":
            data[pos:pos] = draw(st.sampled_from(_WORDS))
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


@FUZZ
@given(mutated_spec())
def test_mutated_example_specs(data: bytes):
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:  # what the CLI reports for such a file
        err = _not_utf8(data, exc)
        assert err.span is not None and err.span.line >= 1 and err.span.col >= 1
        return
    check_outcome(text)


@pytest.mark.parametrize("path", SPEC_PATHS, ids=lambda p: p.stem)
def test_every_line_dropped(path):
    """Deleting any one line of an example spec still gives a located outcome."""
    lines = path.read_text().splitlines(keepends=True)
    for i in range(len(lines)):
        check_outcome("".join(lines[:i] + lines[i + 1:]))


@pytest.mark.parametrize("path", SPEC_PATHS, ids=lambda p: p.stem)
def test_every_prefix(path):
    """Every truncation of an example spec (a file cut short) gives a located outcome."""
    text = path.read_text()
    for cut in range(0, len(text), 7):
        check_outcome(text[:cut])


# ---- structured specs: plausible programs, so the fuzzing reaches lowering and codegen ----

_FUNCS = ["sigmoid", "tanh", "relu", "step", "softplus", "gelu", "exp", "log", "abs", "identity",
          "leaky_relu", "elu", "maximum", "transpose", "softmax", "log_softmax", "sum", "mean", "flatten",
          "dense", "prelu", "mse", "sse", "l2", "cross_entropy", "bce", "hinge", "nosuch"]
_KWARGS = ["alpha", "axis", "units", "bias", "init", "margin", "x", "bogus"]
_KWVALUES = ["0", "1", "-1", "2", "0.5", "true", "false", "he_normal", "normal(0.1)", "zeros", "x"]
_NAMES = ["x", "y", "t", "type", "h", "g", "W", "b", "h.W", "h.b", "g.alpha", "B"]
_NUMBERS = ["0", "1", "2", "0.5", "-1", "3", "1e-3", "1e308", "4"]


def _expr(depth: int):
    leaf = st.sampled_from(_NAMES + _NUMBERS)
    if depth == 0:
        return leaf
    sub = _expr(depth - 1)
    binop = st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "@", "^"]), sub).map(" ".join)
    neg = sub.map(lambda e: f"-{e}")
    kwarg = st.tuples(st.sampled_from(_KWARGS), st.sampled_from(_KWVALUES)).map("=".join)
    call = st.tuples(st.sampled_from(_FUNCS), st.lists(sub, max_size=3), st.lists(kwarg, max_size=2)).map(
        lambda c: f"{c[0]}({', '.join(c[1] + c[2])})")
    return st.one_of(leaf, binop, neg, call, sub.map(lambda e: f"({e})"))


_DIM = st.sampled_from(["B", "N", "1", "2", "3", "4"])
_TYPE = st.tuples(st.sampled_from(["float", "float", "int"]), st.lists(_DIM, max_size=3)).map(
    lambda t: t[0] + (f"[{', '.join(t[1])}]" if t[1] else ""))
_INIT = st.sampled_from(["", " = 0.5", " = [1, 2]", " = [[1, 2], [3, 4]]", " = [[1], [2, 3]]", " = zeros",
                         " = normal(0.1)", " = uniform(-1, 1)", " = glorot_uniform", " = nosuch"])


@st.composite
def structured_spec(draw) -> str:
    lines = ["model fuzz"]
    for name in draw(st.lists(st.sampled_from(["x", "y", "t", "type"]), max_size=3)):
        lines.append(f"input {name} : {draw(_TYPE)}")
    for name in draw(st.lists(st.sampled_from(["W", "b"]), max_size=2)):
        lines.append(f"param {name} : {draw(_TYPE)}{draw(_INIT)}")
    for name in draw(st.lists(st.sampled_from(["h", "g", "z"]), max_size=3)):
        lines.append(f"{name} = {draw(_expr(2))}")
    if draw(st.booleans()) or draw(st.booleans()):
        lines.append(f"loss = {draw(_expr(2))}")
    extra = st.sampled_from(["output h", "output h, g", "wrt x", "wrt y", "optimizer sgd(lr=0.1)",
                             "optimizer sgd(lr=0.1, momentum=0.9, nesterov=true)", "optimizer sgd(0.1)"])
    lines += draw(st.lists(extra, max_size=2))
    return "\n".join(lines) + "\n"


def _run_module(source: str, tmp_path) -> None:
    """A spec that compiles runs: no shape error from inside the generated code."""
    import numpy as np

    from helpers import load_source, random_inputs

    try:
        mod = load_source(source, tmp_path, "fuzzed")
        params = mod.init_params(dtype="float64")
        inputs = random_inputs(mod, np.random.default_rng(0))
        with np.errstate(all="ignore"):  # values may overflow (exp of exp); shapes must not fail
            mod.loss(params, *inputs)
            mod.value_and_grad(params, *inputs)
            mod.train_step(params, mod.init_optimizer(params), *inputs)
    except Exception as exc:  # one stable failure site, so hypothesis can shrink it
        raise AssertionError(f"the generated module failed: {type(exc).__name__}: {exc}") from None


@FUZZ
@given(structured_spec())
def test_structured_specs(tmp_path_factory, text: str):
    if check_outcome(text) == "ok":
        _run_module(compile_spec(text, "fuzz.nn"), tmp_path_factory.mktemp("fuzz"))
