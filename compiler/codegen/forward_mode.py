"""Render models of the generated `jvp` and `hvp` functions (forward mode, second order)."""

from __future__ import annotations

from collections.abc import Callable

from ..autodiff.forward import Linearized, hvp_program, jvp_program
from ..ir.core import Atom, Lit, Program, Var
from ..passes.dce import live_eqns, live_split
from .emit import Read, argument_groups, caller_arrays, emit_sections, handed_out


def _unpack(lin: Linearized, eqns, results: list[Atom], arg: str) -> list[Read]:
    """Reads of the parameters and tangent seeds that `eqns` and `results` use (a zero
    result is `xp.zeros_like(param)`, so it reads its parameter too)."""
    used = {a.name for e in eqns for a in e.inputs if isinstance(a, Var)}
    used |= {a.name for a in results if isinstance(a, Var)}
    used |= {v.name for (name, a), v in zip(lin.results, _result_vars(lin)) if _is_zero(a)}
    reads = [Read(p.var, "params", p.name) for p in lin.prog.params if p.var.name in used]
    return reads + [Read(v, arg, name) for name, v in lin.seeds if v.name in used]


def _is_zero(a: Atom) -> bool:
    return isinstance(a, Lit) and a.value == 0.0


def _result_vars(lin: Linearized) -> list[Var]:
    """The variable each result is shaped like: the loss, or the parameter / input differentiated."""
    by_name = {p.name: p.var for p in lin.prog.params} | {d.var.name: d.var for d in lin.prog.inputs}
    return [by_name.get(name, lin.prog.loss) for name, _ in lin.results]


def _external(lin: Linearized) -> set[str]:
    """The names of the arrays the caller passes in: inputs, parameters, tangent seeds."""
    return caller_arrays(lin.prog) | {v.name for _, v in lin.seeds}


def forward_mode_functions(prog: Program, make_function: Callable, check, decls) -> list:
    """`jvp(params, tangents, *inputs)` and `hvp(params, vector, *inputs)` for a differentiated
    program; `make_function` is render's Function builder, `check` its input check."""
    names = [d.var.name for d in decls]
    keys = ", ".join(n for n, _ in prog.grads)
    out = []

    lin = jvp_program(prog)
    (_, dot_loss), loss = lin.results[0], lin.prog.loss
    eqns = live_eqns(lin.prog.eqns, [loss, dot_loss])
    [blocks] = emit_sections([eqns], [loss, dot_loss], groups=argument_groups(prog), autograd=True)
    loss_text, dot_text = handed_out([loss, dot_loss], _external(lin), eqns)
    out.append(make_function(
        prog, "jvp", ["params", "tangents", *names],
        f"The loss and its directional derivative along `tangents` (keys: {keys}), by forward mode.",
        check, _unpack(lin, eqns, [loss, dot_loss], "tangents"), [("forward with tangents", blocks)],
        f"{loss_text}, {f'xp.zeros_like({loss.name})' if _is_zero(dot_loss) else dot_text}", decls))

    lin = hvp_program(prog)
    results = [a for _, a in lin.results]
    fwd, bwd = live_split(lin.prog.eqns, lin.prog.backward, results)
    eqns = fwd + bwd
    fwd_blocks, bwd_blocks = emit_sections([fwd, bwd], results, groups=argument_groups(prog), autograd=True)
    idents = {p.name: p.var.name for p in prog.params}
    # never hand out an entry of `vector`, an input or a parameter itself, nor one array twice
    texts = handed_out(results, _external(lin), eqns)
    items = [f'"{name}": ' + (f"xp.zeros_like({idents.get(name, name)})" if _is_zero(a) else text)
             for (name, a), text in zip(lin.results, texts)]
    returns = "{" + ", ".join(items) + "}"
    if len(returns) > 80:
        returns = "{\n        " + ",\n        ".join(items) + ",\n    }"
    out.append(make_function(
        prog, "hvp", ["params", "vector", *names],
        f"The Hessian of the loss times `vector` (keys: {keys}), by forward-over-reverse mode.",
        check, _unpack(lin, eqns, results, "vector"),
        [("forward with tangents", fwd_blocks), ("backward with tangents", bwd_blocks)], returns, decls))
    return out
