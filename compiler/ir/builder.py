"""Builder: appends equations, inferring each output's shape from the primitive registry."""

from __future__ import annotations

from collections import ChainMap
from functools import partial
from typing import Any

from ..primitives import PRIMITIVES
from .core import Atom, Eqn, Lit, Var, is_host
from .naming import Namer


def as_atom(x: Atom | float | int) -> Atom:
    return x if isinstance(x, (Var, Lit)) or hasattr(x, "dims") else Lit(float(x))


def _evaluate_literals(prim: str, atoms: tuple[Lit, ...], params: dict[str, Any]) -> Lit | None:
    """A primitive of numbers, computed now: its own emission evaluated on float64 0-d arrays
    of array_api_compat's NumPy namespace (NumPy's own lacks `astype` before 2.1), so the number
    is what the generated line would have computed. Generated code must not call the namespace
    on Python floats: array_api_strict and PyTorch refuse them, NumPy upcasts. None when the
    emission cannot take numbers (it is then emitted as it is)."""
    import array_api_compat.numpy as xp
    import numpy as np

    from ..primitives.core import ShapeError
    from .interpret import evaluate

    operands = tuple(Var(f"operand{i}", (), "float") for i in range(len(atoms)))  # 0-d float64 arrays
    eqn = Eqn(prim, operands, Var("value", (), "float"), tuple(sorted(params.items())))
    try:
        with np.errstate(all="ignore"):
            env = {v.name: np.asarray(float(a.value)) for v, a in zip(operands, atoms)}
            value = float(evaluate([eqn], env, xp)["value"])
    except Exception:  # noqa: BLE001 - a rule written for arrays only (a reduction over an axis)
        return None
    if not np.isfinite(value):
        args = ", ".join(repr(float(a.value)) for a in atoms)
        raise ShapeError(f"{prim}({args}) has no finite real value")
    return Lit(value)


class Builder:
    """Appends equations to `eqns`; `b.mul(x, y)` is short for `b.emit("mul", x, y)`.

    Each primitive's `fold(inputs, params, defs)` may return an existing atom instead
    (x * 1 -> x, constants folded), or a simpler `(prim, *inputs)` to emit in its place,
    so rules can be written plainly without emitting dead code. `defs` holds this builder's
    equations; a primitive registered with `fold_through_names=True` also sees `named`, the
    equations of earlier statements (log(p) with p = sigmoid(z) on a line above).
    """

    def __init__(self, namer: Namer, line: int = 0, named: dict[str, Eqn] | None = None):
        self.namer = namer
        self.line = line
        self.eqns: list[Eqn] = []
        self.defs: dict[str, Eqn] = {}
        self.named = named or {}

    def emit(self, prim: str, *inputs: Atom | float, hint: str | None = None, **params: Any) -> Atom:
        p = PRIMITIVES[prim]
        atoms = tuple(as_atom(x) for x in inputs)
        if len(atoms) != p.arity:
            raise TypeError(f"{prim} takes {p.arity} operands, got {len(atoms)}")
        if p.fold is not None:
            defs = ChainMap(self.defs, self.named) if p.fold_through_names and self.named else self.defs
            folded = p.fold(atoms, params, defs)
            if isinstance(folded, tuple):  # a simpler expression, possibly nested
                return self._emit_folded(folded)
            if folded is not None:
                return folded
        shape, dtype = p.shape(atoms, params)
        if atoms and shape == () and dtype == "float" and all(isinstance(a, Lit) for a in atoms):
            value = _evaluate_literals(prim, atoms, params)  # sigmoid(1.0): a number, not xp on floats
            if value is not None:
                return value
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
