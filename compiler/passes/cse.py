"""Common-subexpression elimination over forward and backward equations together."""

from __future__ import annotations

from ..ir.core import Atom, Program
from .subst import substitute


def _key_atom(a: Atom):
    return (type(a).__name__, getattr(a, "name", None) or str(a))


def cse(prog: Program) -> Program:
    """Reuse the first of several equal equations; a user's name wins over a temporary."""
    while True:
        seen: dict[tuple, object] = {}
        mapping: dict[str, Atom] = {}

        def resolve(a: Atom, mapping: dict[str, Atom] = mapping) -> Atom:
            while getattr(a, "name", None) in mapping:
                a = mapping[a.name]
            return a

        for eqn in prog.eqns + prog.backward:
            # inputs as merged so far, so a chain of duplicates merges in one sweep (the loop
            # then runs once more, not once per link: compile time stays linear)
            key = (eqn.prim, tuple(_key_atom(resolve(a)) for a in eqn.inputs), eqn.params)
            first = seen.get(key)
            if first is None:
                seen[key] = eqn.out
                continue
            if first.temp and not eqn.out.temp:
                mapping[first.name] = eqn.out  # keep the readable name
                seen[key] = eqn.out
            else:
                mapping[eqn.out.name] = first
        if not mapping:
            return prog
        prog = _drop_redefinitions(substitute(prog, mapping))


def _drop_redefinitions(prog: Program) -> Program:
    """After merging, keep only the first equation defining each variable."""
    defined: set[str] = set()

    def keep(es):
        out = []
        for e in es:
            if e.out.name not in defined:
                defined.add(e.out.name)
                out.append(e)
        return tuple(out)

    return prog.with_(eqns=keep(prog.eqns), backward=keep(prog.backward))
