"""Structural checks of a Program, run between passes in tests."""

from __future__ import annotations

from ..primitives import PRIMITIVES
from .core import Program, Var


class IRError(AssertionError):
    """The IR broke an invariant: a compiler bug, never a user error."""


def verify(prog: Program) -> None:
    """Single assignment, definition before use, and every shape agreeing with its rule."""
    defined = {d.var.name for d in prog.inputs} | {p.var.name for p in prog.params}
    for eqn in prog.eqns + prog.backward:
        prim = PRIMITIVES.get(eqn.prim)
        if prim is None:
            raise IRError(f"unknown primitive {eqn.prim!r}")
        if len(eqn.inputs) != prim.arity:
            raise IRError(f"{eqn.out.name}: {eqn.prim} takes {prim.arity} operands")
        for a in eqn.inputs:
            if isinstance(a, Var) and a.name not in defined:
                raise IRError(f"{eqn.out.name}: operand {a.name} is used before it is defined")
        if eqn.out.name in defined:
            raise IRError(f"{eqn.out.name} is assigned twice")
        shape, dtype = prim.shape(eqn.inputs, dict(eqn.params))
        if tuple(shape) != tuple(eqn.out.shape) or dtype != eqn.out.dtype:
            raise IRError(f"{eqn.out.name}: {eqn.prim} gives {dtype}{list(shape)}, "
                          f"but the IR says {eqn.out.dtype}{list(eqn.out.shape)}")
        defined.add(eqn.out.name)
    params = {p.name: p.var for p in prog.params}
    inputs = {d.var.name: d.var for d in prog.inputs}
    for name, grad in prog.grads:
        var = params.get(name) or inputs.get(name)
        if var is None:
            raise IRError(f"gradient for unknown name {name!r}")
        if isinstance(grad, Var) and (grad.name not in defined or tuple(grad.shape) != tuple(var.shape)):
            raise IRError(f"gradient of {name} has shape {list(grad.shape)}, expected {list(var.shape)}")
