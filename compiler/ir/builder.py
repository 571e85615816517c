"""Builder: appends equations, inferring each output's shape from the primitive registry."""

from __future__ import annotations

from functools import partial
from typing import Any

from ..primitives import PRIMITIVES
from .core import Atom, Eqn, Lit, Var, is_host
from .naming import Namer


def as_atom(x: Atom | float | int) -> Atom:
    return x if isinstance(x, (Var, Lit)) or hasattr(x, "dims") else Lit(float(x))


class Builder:
    """Appends equations to `eqns`; `b.mul(x, y)` is short for `b.emit("mul", x, y)`.

    Each primitive's `fold(inputs, params, defs)` may return an existing atom instead
    (x * 1 -> x, constants folded), or a simpler `(prim, *inputs)` to emit in its place,
    so rules can be written plainly without emitting dead code.
    """

    def __init__(self, namer: Namer, line: int = 0):
        self.namer = namer
        self.line = line
        self.eqns: list[Eqn] = []
        self.defs: dict[str, Eqn] = {}

    def emit(self, prim: str, *inputs: Atom | float, hint: str | None = None, **params: Any) -> Atom:
        p = PRIMITIVES[prim]
        atoms = tuple(as_atom(x) for x in inputs)
        if len(atoms) != p.arity:
            raise TypeError(f"{prim} takes {p.arity} operands, got {len(atoms)}")
        if p.fold is not None:
            folded = p.fold(atoms, params, self.defs)
            if isinstance(folded, tuple):  # a simpler expression, possibly nested
                return self._emit_folded(folded)
            if folded is not None:
                return folded
        shape, dtype = p.shape(atoms, params)
        host = all(is_host(a) for a in atoms)
        out = Var(self.namer.fresh(hint), shape, dtype, temp=True, host=host)
        eqn = Eqn(prim, atoms, out, tuple(sorted(params.items())), self.line)
        self.eqns.append(eqn)
        self.defs[out.name] = eqn
        return out

    def _emit_folded(self, expr: tuple) -> Atom:
        """Emit `(prim, *operands[, params])`: operands may be nested tuples of the same form."""
        prim, *rest = expr
        params = rest.pop() if rest and isinstance(rest[-1], dict) else {}
        return self.emit(prim, *(self._emit_folded(a) if isinstance(a, tuple) else a for a in rest), **params)

    def __getattr__(self, prim: str):
        if prim in PRIMITIVES:
            return partial(self.emit, prim)
        raise AttributeError(prim)
