"""Substituting variables throughout a Program (shared by the passes)."""

from __future__ import annotations

from ..ir.core import Atom, Eqn, Program, Var


def substitute(prog: Program, mapping: dict[str, Atom]) -> Program:
    if not mapping:
        return prog

    def sub(a: Atom) -> Atom:
        while isinstance(a, Var) and a.name in mapping:
            a = mapping[a.name]
        return a

    def eqns(es):
        return tuple(Eqn(e.prim, tuple(sub(a) for a in e.inputs), sub(e.out), e.params, e.line) for e in es)

    return prog.with_(
        eqns=eqns(prog.eqns), backward=eqns(prog.backward), loss=sub(prog.loss),
        outputs=tuple(sub(o) for o in prog.outputs), grads=tuple((n, sub(a)) for n, a in prog.grads),
    )
