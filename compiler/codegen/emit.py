"""Equations -> Python statements: per-primitive emission, inlining single-use temporaries."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.core import Atom, Eqn, Lit, Size, Var
from ..primitives import PRIMITIVES
from ..primitives.core import ATOM, MUL, UNARY, size_text


def atom_text(a: Atom) -> tuple[str, int]:
    if isinstance(a, Var):
        return a.name, ATOM
    if isinstance(a, Lit):
        text = repr(float(a.value))
        if text in ("inf", "-inf", "nan"):  # not Python literals (a folded constant can overflow)
            return f'float("{text}")', ATOM
        return text, (UNARY if text.startswith("-") else ATOM)
    assert isinstance(a, Size)
    text = size_text(a.dims)
    return text, (MUL if " " in text else ATOM)


# A temporary is inlined into its single use only up to this many levels of nesting: deeper
# expressions are unreadable, and Python's own parser gives up on very deep ones (a spec
# summing 100,000 terms must still give an importable module).
MAX_INLINE_DEPTH = 24


def _wrap(text: str, prec: int, min_prec: int) -> str:
    return f"({text})" if prec < min_prec else text


@dataclass
class Block:
    """Statements that came from one spec line."""

    line: int
    statements: list[str] = field(default_factory=list)


def _operand_counts(eqn: Eqn) -> list[int]:
    fmt = PRIMITIVES[eqn.prim].emit(eqn.inputs, dict(eqn.params)).fmt
    return [fmt.count(f"{{{i}}}") for i in range(len(eqn.inputs))]


def emit_sections(sections: list[tuple[Eqn, ...]], results: list[Atom],
                  names: dict[str, str] | None = None) -> list[list[Block]]:
    """Statements computing `results`, section by section (e.g. forward, backward).

    A temporary used exactly once is folded into the expression that uses it, so the
    code reads like hand-written array code. `names` renames variables in the text: a
    variable mapped to a target such as `params[name]` is assigned there directly.
    """
    names = names or {}
    uses: dict[str, int] = {}
    for a in results:
        if isinstance(a, Var) and a.name not in names:
            uses[a.name] = uses.get(a.name, 0) + 2  # returned values are never inlined
    for eqns in sections:
        for eqn in eqns:
            for a, n in zip(eqn.inputs, _operand_counts(eqn)):
                if isinstance(a, Var):
                    uses[a.name] = uses.get(a.name, 0) + n
    exprs: dict[str, tuple[str, int]] = {}
    depth: dict[str, int] = {}  # inlined temporary -> nesting depth of its expression
    out_sections: list[list[Block]] = []
    for eqns in sections:
        blocks: list[Block] = []
        for eqn in eqns:
            spec = PRIMITIVES[eqn.prim].emit(eqn.inputs, dict(eqn.params))
            args = []
            level = 1
            for i, a in enumerate(eqn.inputs):
                if isinstance(a, Var) and a.name in exprs:
                    text, prec = exprs.pop(a.name)
                    level = max(level, depth.pop(a.name) + 1)
                elif isinstance(a, Var) and a.name in names:
                    text, prec = names[a.name], ATOM
                else:
                    text, prec = atom_text(a)
                need = spec.arg_prec[i] if i < len(spec.arg_prec) else 0
                args.append(_wrap(text, prec, need))
            code = spec.fmt.format(*args)
            out = eqn.out
            if out.temp and uses.get(out.name, 0) == 1 and out.name not in names and level < MAX_INLINE_DEPTH:
                exprs[out.name] = (code, spec.prec)
                depth[out.name] = level
                continue
            if not blocks or blocks[-1].line != eqn.line:
                blocks.append(Block(eqn.line))
            blocks[-1].statements.append(f"{names.get(out.name, out.name)} = {code}")
        out_sections.append(blocks)
    return out_sections


def emit_body(eqns: tuple[Eqn, ...], results: list[Atom], names: dict[str, str] | None = None) -> list[Block]:
    return emit_sections([eqns], results, names)[0]


def result_text(a: Atom) -> str:
    return atom_text(a)[0]
