"""Forward mode: push tangents through the equations in order, one JVP rule per primitive.

Each equation is followed by the equations of its tangent, so generated code reads like
forward accumulation by hand (`w3 = x1 * x2` then `dot_w3 = x2 * dot_x1 + x1 * dot_x2`).
A tangent nobody seeded is symbolically zero (None) and costs no code. Applied to the
forward and backward equations together (forward-over-reverse), the tangents of the
gradients are a Hessian-vector product.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir.builder import Builder
from ..ir.core import Atom, Eqn, Lit, Program, Var
from ..ir.naming import Namer, tangent
from ..passes import simplify
from ..passes.dce import live_eqns
from ..primitives import PRIMITIVES


@dataclass(frozen=True)
class Linearized:
    """A program whose equations interleave primal values and their tangents.

    `seeds` maps each parameter (by spec name) and `wrt` input to the variable holding its
    tangent, read from the caller's dict; `results` maps each result name to its tangent
    (Lit(0.0) where it is zero): `("loss", dot_loss)` for a JVP, the gradients' tangents
    (keyed like `grads`) for an HVP.
    """

    prog: Program
    seeds: tuple[tuple[str, Var], ...]
    results: tuple[tuple[str, Atom], ...]


def _namer(prog: Program) -> Namer:
    taken = {d.var.name for d in prog.inputs} | {p.var.name for p in prog.params}
    for e in prog.eqns + prog.backward:
        taken.add(e.out.name)
    return Namer(taken | set(prog.dims))


def _seeds(prog: Program, namer: Namer) -> list[tuple[str, Var]]:
    wanted = [(p.name, p.var) for p in prog.params] + [
        (d.var.name, d.var) for d in prog.inputs if d.var.name in prog.wrt]
    return [(name, Var(namer.fresh(tangent(v.name)), v.shape, v.dtype)) for name, v in wanted]


def push_tangents(eqns: tuple[Eqn, ...], tangents: dict[str, Atom], namer: Namer) -> list[Eqn]:
    """Each equation followed by its tangent equations; `tangents` (name -> tangent) grows.

    The tangent of a named value `h1` is called `dot_h1`; those of temporaries stay
    temporaries, so code generation may inline them.
    """
    b = Builder(namer)
    out: list[Eqn] = []
    renames: dict[str, str] = {}
    for eqn in eqns:
        out.append(eqn)
        dots = tuple(tangents.get(a.name) if isinstance(a, Var) else None for a in eqn.inputs)
        if all(d is None for d in dots):
            continue
        b.line, start = eqn.line, len(b.eqns)
        rule = PRIMITIVES[eqn.prim].jvp
        if rule is None:
            raise NotImplementedError(f"primitive {eqn.prim!r} has no tangent (JVP) rule")
        dot = rule(b, eqn, dots)
        made = b.eqns[start:]
        out.extend(made)
        if dot is None:
            continue
        tangents[eqn.out.name] = dot
        if (not eqn.out.temp and isinstance(dot, Var) and dot.temp
                and any(e.out.name == dot.name for e in made)):
            renames[dot.name] = namer.fresh(tangent(eqn.out.name))
    for name, dot in list(tangents.items()):
        tangents[name] = _renamed(dot, renames)
    return [Eqn(e.prim, tuple(_renamed(a, renames) for a in e.inputs), _renamed(e.out, renames),
                e.params, e.line) for e in out]


def _renamed(a: Atom, renames: dict[str, str]) -> Atom:
    if isinstance(a, Var) and a.name in renames:
        return Var(renames[a.name], a.shape, a.dtype, temp=False, host=a.host)
    return a


def _result(tangents: dict[str, Atom], value: Atom) -> Atom:
    dot = tangents.get(value.name) if isinstance(value, Var) else None
    return Lit(0.0) if dot is None else dot


def jvp_program(prog: Program) -> Linearized:
    """The loss and its directional derivative: forward accumulation over the forward equations."""
    namer = _namer(prog)
    seeds = _seeds(prog, namer)
    tangents: dict[str, Atom] = {v.name: s for (_, s), v in zip(seeds, _seed_vars(prog))}
    eqns = push_tangents(live_eqns(prog.eqns, [prog.loss]), tangents, namer)
    result = _result(tangents, prog.loss)
    lin = prog.with_(eqns=tuple(eqns), backward=(), outputs=(), grads=(("loss", result),))
    lin = simplify(lin)
    return Linearized(lin, tuple(seeds), lin.grads)


def hvp_program(prog: Program) -> Linearized:
    """Hessian-vector products, forward-over-reverse: tangents of the gradient program.

    `prog` must already be differentiated; the tangent of each gradient along the seed
    direction v is H v, with the Hessian over all parameters and `wrt` inputs together.
    """
    namer = _namer(prog)
    seeds = _seeds(prog, namer)
    tangents: dict[str, Atom] = {v.name: s for (_, s), v in zip(seeds, _seed_vars(prog))}
    fwd = push_tangents(prog.eqns, tangents, namer)
    bwd = push_tangents(prog.backward, tangents, namer)
    results = tuple((name, _result(tangents, g)) for name, g in prog.grads)
    lin = simplify(prog.with_(eqns=tuple(fwd), backward=tuple(bwd), outputs=(), grads=results))
    return Linearized(lin, tuple(seeds), lin.grads)


def _seed_vars(prog: Program) -> list[Var]:
    return [p.var for p in prog.params] + [d.var for d in prog.inputs if d.var.name in prog.wrt]
