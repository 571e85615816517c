"""Planted derivative bugs, two ways: wrong VJP rules, and hand edits of generated modules.

A wrong rule (`planted`) goes through the whole pipeline, so the bug lands in the
backward code wherever and however code generation prints it. A hand edit (`edit_grad`)
rewrites one entry of the dict that value_and_grad returns, which every generated
module has whatever its body looks like. Both fail loudly when they no longer apply.
"""

from __future__ import annotations

import dataclasses
import re

from helpers import SPECS
from nnc.api import compile_spec
from nnc.primitives import PRIMITIVES


def generated(spec: str) -> str:
    """The module generated from a bundled spec's name, or from spec text."""
    if "\n" in spec:
        return compile_spec(spec, "model.nn")
    path = SPECS / f"{spec}.nn"
    return compile_spec(path.read_text(), str(path))


def planted(monkeypatch, prim: str, wrong_vjp) -> None:
    """Replace `prim`'s VJP rule for the rest of the test; wrong_vjp(original, b, eqn, g)."""
    original = PRIMITIVES[prim].vjp
    replaced = dataclasses.replace(PRIMITIVES[prim], vjp=lambda b, eqn, g: wrong_vjp(original, b, eqn, g))
    monkeypatch.setitem(PRIMITIVES, prim, replaced)


def edit_grad(spec: str, name: str, edit) -> str:
    """The module with value_and_grad's returned gradient `"name": d_x` replaced by edit("d_x")."""
    text = generated(spec)
    start = text.index("\ndef value_and_grad(")
    end = text.index("\ndef ", start + 1)
    body, n = re.subn(rf'("{re.escape(name)}": )([A-Za-z_]\w*)\b', lambda m: m[1] + edit(m[2]),
                      text[start:end])
    assert n == 1, f"value_and_grad returns {name!r} {n} times as a plain name; update this edit"
    return text[:start] + body + text[end:]
