"""Pathological specs: each gets a located error or compiles quickly; nothing recurses or hangs."""

from __future__ import annotations

import time

import numpy as np
import pytest

from helpers import load_source
from nnc.api import compile_spec
from nnc.errors import Span, SpecError, SpecErrors, render_errors
from nnc.syntax.parser import MAX_BRACKETS, MAX_DEPTH, MAX_TOKENS

HEAD = "model m\ninput x : float[B, 2]\n"


def located(text: str) -> SpecError:
    """Compile `text`, expecting bad-spec errors; return the first, which must have a span."""
    with pytest.raises((SpecError, SpecErrors)) as info:
        compile_spec(text, "p.nn")
    errors = info.value.errors if isinstance(info.value, SpecErrors) else [info.value]
    for err in errors:
        assert isinstance(err.span, Span) and err.span.line >= 1 and err.span.col >= 1, err
    return errors[0]


def timed(fn, limit: float):
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    assert elapsed < limit, f"took {elapsed:.1f}s"
    return result


def test_ten_thousand_nested_parentheses():
    text = HEAD + "h = " + "(" * 10_000 + "x" + ")" * 10_000 + "\nloss = l2(h)\n"
    err = timed(lambda: located(text), 5)
    assert "nested too deeply" in err.message and err.span.line == 3
    assert err.span.col == 5 + MAX_BRACKETS  # the first bracket over the limit


def test_ten_thousand_nested_lists():
    text = "model m\ninput x : float[2]\nparam w : float[2] = " + "[" * 10_000 + "1" + "]" * 10_000 + "\n"
    err = timed(lambda: located(text), 5)
    assert "nested too deeply" in err.message


def test_unclosed_deep_parentheses():
    err = timed(lambda: located(HEAD + "h = " + "(" * 150 + "x\nloss = l2(h)\n"), 5)
    assert err.message == "'(' is never closed"


@pytest.mark.parametrize("nest", [
    lambda k: "tanh(" * k + "x" + ")" * k,
    lambda k: "-" * k + "x",
    lambda k: " ^ ".join(["x"] * k),
    lambda k: "x" + " + (x" * k + ")" * k,  # right-nested through parentheses
])
def test_nesting_limit(nest):
    """Up to MAX_DEPTH levels compile (and import); one more is a located error."""
    ok = compile_spec(HEAD + f"h = {nest(MAX_DEPTH - 1)}\nloss = l2(h)\n", "p.nn")
    compile(ok, "p.py", "exec")  # the generated module is valid Python, however deep the spec
    err = located(HEAD + f"h = {nest(MAX_DEPTH + 5)}\nloss = l2(h)\n")
    assert "nested too deeply" in err.message


def test_long_left_chain_compiles_and_runs(tmp_path):
    """`x + x + ... + x` is flat: lowered with a loop, emitted in chunks Python can compile."""
    n = 10_000
    text = HEAD + "h = " + " + ".join(["x"] * n) + "\nloss = sum(h)\n"
    source = timed(lambda: compile_spec(text, "chain.nn"), 20)
    mod = load_source(source, tmp_path, "chain")
    x = np.arange(6.0).reshape(3, 2)
    value, grads = mod.value_and_grad(mod.init_params(dtype="float64"), x)
    assert float(value) == n * x.sum()
    code = [line for line in source.splitlines() if line.startswith("    ") and not line.lstrip().startswith("#")]
    assert max(map(len, code)) < 1000  # the chain is split into readable statements


def test_long_mixed_chain():
    text = HEAD + "h = " + " - ".join(["x * 2"] * 3_000) + "\nloss = l2(h)\n"
    timed(lambda: compile_spec(text, "p.nn"), 20)


def test_too_many_tokens_is_a_clear_error():
    """A multi-megabyte spec gets a located error quickly instead of a long compile."""
    lines = [f"h{i} = tanh(h{i - 1} * 0.5 + 1.0)" for i in range(1, 200_000)]
    text = HEAD + "h0 = tanh(x)\n" + "\n".join(lines) + "\nloss = l2(h1)\n"
    assert len(text.encode()) > 5_000_000
    err = timed(lambda: located(text), 10)
    assert "too long" in err.message and str(MAX_TOKENS) in err.message


def test_multi_megabyte_comment_compiles():
    text = HEAD + "# " + "x" * 5_000_000 + "\nloss = l2(x)\n"
    timed(lambda: compile_spec(text, "p.nn"), 10)


def test_huge_single_line_error_is_windowed():
    text = HEAD + "h = " + "x + " * 20_000 + "$\nloss = l2(h)\n"
    err = located(text)
    shown = render_errors(err, text, "p.nn")
    assert max(len(line) for line in shown.splitlines()) < 200


def test_empty_and_blank_specs():
    for text in ["", "\n\n\n", "   \t\n", "# only a comment", "\ufeff"]:
        err = located(text)
        assert err.message == "the spec is empty"


@pytest.mark.parametrize("blob", [bytes(range(256)), b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"\x00" * 100])
def test_binary_bytes(blob: bytes):
    text = blob.decode("latin-1")  # whatever the bytes, as text: still a located error
    located(text)


def test_very_long_name_and_number():
    name = "a" * 100_000
    err = located(HEAD + f"h = {name}\nloss = l2(h)\n")
    assert err.message.startswith("undefined name")
    err = located(HEAD + f"h = x * {'9' * 400}\nloss = l2(h)\n")
    assert "too large" in err.message
    err = located("model m\ninput x : float[" + "7" * 5000 + "]\nloss = l2(x)\n")
    assert "too large" in err.message


def test_many_independent_errors_are_all_collected():
    lines = [f"h{i} = nosuch(x)" for i in range(500)]
    with pytest.raises(SpecErrors) as info:
        compile_spec(HEAD + "\n".join(lines) + "\nloss = l2(x)\n", "p.nn")
    assert len(info.value.errors) == 500


def test_a_file_full_of_errors_stays_fast():
    """Suggestions compare a name with every name in scope: only for the errors shown."""
    n = 1500
    lines = [f"h{i} = dense(x, 2)" for i in range(n)] + [f"g{i} = tanh(hx{i}) + h{i}.Q + foo{i}(x)" for i in range(n)]
    dims = "\n".join(f"input i{i} : float[B{i}, D]" for i in range(500))
    with pytest.raises(SpecErrors) as info:
        timed(lambda: compile_spec(HEAD + dims + "\n" + "\n".join(lines) + "\nloss = l2(x)\n", "p.nn"), 10)
    assert len(info.value.errors) == n
    assert info.value.errors[0].help == "did you mean 'h0'?"
