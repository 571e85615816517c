"""Reverse mode: walk the forward equations backwards, one VJP rule per primitive.

Cotangents are accumulated per variable; a variable nobody propagates to has a
symbolically zero cotangent and no code at all. Only values that depend on a
parameter or a `wrt` input are differentiated, so data inputs get no gradient.
"""

from __future__ import annotations

from ..errors import Span, SpecError
from ..ir.builder import Builder
from ..ir.core import Atom, Eqn, Lit, Program, Var, is_host
from ..ir.naming import Namer, adjoint
from ..primitives import PRIMITIVES
from ..primitives.core import ShapeError
from ..primitives.nn import batch_size


def _active(prog: Program) -> set[str]:
    """Variables whose value depends on something we differentiate with respect to."""
    active = {p.var.name for p in prog.params} | set(prog.wrt)
    for eqn in prog.eqns:
        if PRIMITIVES[eqn.prim].differentiable and any(
                isinstance(a, Var) and a.name in active for a in eqn.inputs):
            active.add(eqn.out.name)
    return active


def _fused_log_softmax_nll(b: Builder, eqn: Eqn, g: Atom, defs: dict[str, Eqn], uses: dict[str, int]):
    """softmax + cross-entropy with one-hot targets: d_logits = (softmax - onehot) * g / N.

    Applies when the nll reads a log_softmax over the last axis used nowhere else, and
    a one-hot target (rows sum to one, which the identity needs).
    """
    logp, target = eqn.inputs
    src = defs.get(getattr(logp, "name", None))
    onehot = defs.get(getattr(target, "name", None))
    if (src is None or src.prim != "log_softmax" or uses.get(logp.name) != 1 or onehot is None
            or onehot.prim != "onehot" or src.param("axis") not in (-1, len(logp.shape) - 1)):
        return None
    # The one-hot is rebuilt from the labels (an input, always at hand) instead of kept
    # from the forward: B*C fewer floats saved between the passes, for one comparison.
    target = b.emit("onehot", onehot.inputs[0], logp, **dict(onehot.params))
    probs = b.exp(logp)
    return src, b.mul(b.sub(probs, target), b.div(g, batch_size(logp)))


def differentiate(prog: Program, seed: float = 1.0) -> Program:
    """Append backward equations computing d loss / d (params and wrt inputs).

    `seed` scales every gradient (the loss's own cotangent): `seed=lr` gives the plain
    SGD steps directly, with lr folded into the backward's constants.
    """
    taken = {e.out.name for e in prog.eqns} | {d.var.name for d in prog.inputs} | {
        p.var.name for p in prog.params} | set(prog.dims)  # dimensions are variables in generated code too
    namer = Namer(taken)
    b = Builder(namer)
    active = _active(prog)
    defs = {e.out.name: e for e in prog.eqns}
    uses: dict[str, int] = {}
    for e in prog.eqns:
        for a in e.inputs:
            if isinstance(a, Var):
                uses[a.name] = uses.get(a.name, 0) + 1

    contributions: dict[str, list[Atom]] = {prog.loss.name: [Lit(seed)]}
    renames: dict[str, str] = {}
    done: dict[str, Atom] = {}
    skip: set[str] = set()

    def total(var: Var) -> Atom:
        """The whole cotangent of `var`, named `d_var` when it is computed here."""
        if var.name in done:
            return done[var.name]
        parts = contributions.pop(var.name)
        acc = parts[0]
        for part in parts[1:]:
            acc = b.add(acc, part)
        if isinstance(acc, Var) and acc.name in b.defs and acc.temp and acc.name not in renames:
            renames[acc.name] = namer.fresh(adjoint(var.name))
        done[var.name] = acc
        return acc

    wanted = [(p.name, p.var) for p in prog.params] + [
        (d.var.name, d.var) for d in prog.inputs if d.var.name in prog.wrt]
    wanted_names = {v.name for _, v in wanted}
    first_use: dict[str, int] = {}
    for i, e in enumerate(prog.eqns):
        for a in e.inputs:
            if isinstance(a, Var) and a.name in wanted_names:
                first_use.setdefault(a.name, i)

    for index in range(len(prog.eqns) - 1, -1, -1):
        eqn = prog.eqns[index]
        out = eqn.out
        if out.name in skip or out.name not in contributions or out.name not in active:
            continue
        b.line = eqn.line
        g = total(out)
        cts = None
        if eqn.prim == "nll":
            fused = _fused_log_softmax_nll(b, eqn, g, defs, uses)
            if fused is not None:
                src, d_logits = fused
                skip.add(src.out.name)
                cts = (None, None)
                x = src.inputs[0]
                if isinstance(x, Var) and x.name in active:
                    contributions.setdefault(x.name, []).append(d_logits)
        if cts is None:
            if is_host(g) and PRIMITIVES[eqn.prim].kink:
                # a mask over two constants, xp.where(m, 0.5, 0.0), would be float64 whatever
                # the model's dtype: give the constant cotangent the output's array type first
                g = b.full_like(eqn.out, g)
            try:
                cts = PRIMITIVES[eqn.prim].vjp(b, eqn, g)
            except ShapeError as exc:  # a derivative with no finite value: located at the spec line
                raise SpecError(f"this line has no derivative: {exc}",
                                Span.point(eqn.line, 1) if eqn.line else None) from None
        for inp, ct in zip(eqn.inputs, cts):
            if ct is not None and isinstance(inp, Var) and inp.name in active:
                contributions.setdefault(inp.name, []).append(ct)
        for inp in eqn.inputs:  # a gradient is complete at its parameter's first use
            if isinstance(inp, Var) and first_use.get(inp.name) == index and inp.name in contributions:
                total(inp)

    grads: list[tuple[str, Atom]] = []
    for name, var in wanted:
        if var.name in contributions or var.name in done:
            grads.append((name, total(var)))
        else:
            grads.append((name, Lit(0.0)))  # the loss does not depend on it
    backward = _rename(b.eqns, renames)
    grads = [(n, _sub(a, renames)) for n, a in grads]
    return prog.with_(backward=tuple(backward), grads=tuple(grads))


def _sub(a: Atom, renames: dict[str, str]) -> Atom:
    if isinstance(a, Var) and a.name in renames:
        return Var(renames[a.name], a.shape, a.dtype, temp=False, host=a.host)
    return a


def _rename(eqns: list[Eqn], renames: dict[str, str]) -> list[Eqn]:
    return [Eqn(e.prim, tuple(_sub(a, renames) for a in e.inputs), _sub(e.out, renames), e.params, e.line)
            for e in eqns]
