"""A deterministic text form of the IR (what `nnc ir` prints)."""

from __future__ import annotations

from ..ir.core import Atom, Eqn, Program, Var


def _type(v) -> str:
    dims = ", ".join(map(str, v.shape))
    return f"{v.dtype}[{dims}]" if v.shape else v.dtype


def _atom(a: Atom) -> str:
    return a.name if isinstance(a, Var) else str(a)


def print_eqn(e: Eqn) -> str:
    params = "".join(f" {k}={v!r}" for k, v in e.params)
    args = " ".join(_atom(a) for a in e.inputs)
    where = f"  # line {e.line}" if e.line else ""
    return f"  {e.out.name}: {_type(e.out)} = {e.prim}{params} {args}{where}"


def print_program(prog: Program) -> str:
    lines = [f"model {prog.name}  ({prog.source_name})"]
    for d in prog.inputs:
        lines.append(f"  input {d.var.name}: {_type(d.var)}")
    for p in prog.params:
        kind, args = p.init
        lines.append(f"  param {p.name}: {_type(p.var)} = {kind}{args if args else ''}")
    lines.append("forward:")
    lines += [print_eqn(e) for e in prog.eqns]
    lines.append(f"  loss: {_atom(prog.loss)}")
    if prog.outputs:
        lines.append("  outputs: " + ", ".join(_atom(o) for o in prog.outputs))
    if prog.backward or prog.grads:
        lines.append("backward:")
        lines += [print_eqn(e) for e in prog.backward]
        lines += [f"  grad {n}: {_atom(a)}" for n, a in prog.grads]
    return "\n".join(lines)
