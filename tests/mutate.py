"""Planted derivative bugs: edits of the backward code of generated modules.

An edit finds its line by the adjoint's name (d_W2, d_h1_pre: fixed by the naming
convention) and rewrites the right-hand side as a whole or by a small pattern, so it
survives changes to how expressions are printed; an edit that no longer applies fails
loudly instead of silently testing nothing.
"""

from __future__ import annotations

import re

from helpers import SPECS
from nnc.api import compile_spec


def negate(rhs: str) -> str:
    return f"-({rhs})"


def transpose(rhs: str) -> str:
    return f"({rhs}).T"


def times(factor: str):
    return lambda rhs: f"({rhs}) * {factor}"


def becomes(text: str):
    return lambda rhs: text


def sub(pattern: str, repl: str):
    """Rewrite the one match of `pattern` in the right-hand side."""
    def rewrite(rhs: str) -> str:
        new, n = re.subn(pattern, repl, rhs)
        assert n == 1, f"{pattern!r} matches {n} times in {rhs!r}; update this mutation"
        return new
    return rewrite


def generated(spec: str) -> str:
    """The module generated from a bundled spec's name, or from spec text."""
    if "\n" in spec:
        return compile_spec(spec, "model.nn")
    path = SPECS / f"{spec}.nn"
    return compile_spec(path.read_text(), str(path))


def mutate(spec: str, var: str | None, edit) -> str:
    """The generated module with the backward assignment `var = RHS` rewritten to `edit(RHS)`
    (or, for var None, the whole backward section of value_and_grad rewritten by `edit`)."""
    text = generated(spec)
    start = text.index("# ---- backward ----")
    end = text.index("\ndef ", start)
    section = text[start:end]
    if var is None:
        return text[:start] + edit(section) + text[end:]
    line = re.compile(rf"^(\s+{re.escape(var)} = )(.*)$", re.M).search(section)
    assert line, f"no assignment to {var} in the backward code; update this mutation"
    section = section[:line.start(2)] + edit(line.group(2)) + section[line.end(2):]
    return text[:start] + section + text[end:]
