"""Dead-code elimination: keep only equations that the loss, outputs or gradients need."""

from __future__ import annotations

from ..ir.core import Atom, Eqn, Program, Var


def live_eqns(eqns: tuple[Eqn, ...], roots: list[Atom]) -> tuple[Eqn, ...]:
    """The equations needed to compute `roots`, in their original order."""
    needed = {a.name for a in roots if isinstance(a, Var)}
    kept = []
    for eqn in reversed(eqns):
        if eqn.out.name in needed:
            kept.append(eqn)
            needed.update(a.name for a in eqn.inputs if isinstance(a, Var))
    return tuple(reversed(kept))


def live_split(first: tuple[Eqn, ...], then: tuple[Eqn, ...],
               roots: list[Atom]) -> tuple[tuple[Eqn, ...], tuple[Eqn, ...]]:
    """The equations `roots` need, split into those from `first` (e.g. the forward) and
    those from `then` (e.g. the backward), each in order."""
    live = live_eqns(first + then, roots)
    in_first = set(first)  # built once: a set per equation made compile time quadratic
    return tuple(e for e in live if e in in_first), tuple(e for e in live if e not in in_first)


def dce(prog: Program) -> Program:
    roots = [prog.loss, *prog.outputs, *(a for _, a in prog.grads)]
    everything = live_eqns(prog.eqns + prog.backward, roots)
    keep = {e.out.name for e in everything}
    return prog.with_(eqns=tuple(e for e in prog.eqns if e.out.name in keep),
                      backward=tuple(e for e in prog.backward if e.out.name in keep))
