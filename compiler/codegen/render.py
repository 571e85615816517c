"""Build the render model of a differentiated Program and fill the module template."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import jinja2

from .. import __version__
from ..ir.builder import Builder
from ..ir.core import Atom, Lit, Program, Var, is_host
from ..ir.naming import Namer
from ..optim import OPTIMIZERS
from ..passes.dce import live_eqns
from ..runtime import initializers, kernels
from .emit import emit_body, emit_sections, result_text
from .forward_mode import forward_mode_functions

_KERNELS = {"softmax": "_softmax", "log_softmax": "_log_softmax", "onehot": "_onehot"}


@dataclass
class Function:
    name: str
    args: list[str]
    doc: str
    check: str  # the input-check statement ("" for none)
    unpack: list[str]  # parameter reads
    sections: list[tuple[str, list[tuple[str, list[str]]]]]  # (title, [(comment, statements)])
    returns: str
    uses_xp: bool = False
    xp_source: str = ""


@dataclass
class Check:
    name: str
    args: list[str]
    dims: list[str]
    lines: list[str] = field(default_factory=list)


def _comment(prog: Program, line: int) -> str:
    if 1 <= line <= len(prog.source_lines):
        text = " ".join(prog.source_lines[line - 1].split())
        return f"# {prog.source_name}:{line}  {text}"
    return ""


def _sections(prog, titled_blocks) -> list:
    out = []
    for title, blocks in titled_blocks:
        if blocks:
            out.append((title, [(_comment(prog, b.line), b.statements) for b in blocks]))
    return out


def _uses(text_lists, word: str) -> bool:
    return any(word in s for s in text_lists)


def _all_statements(fn_sections) -> list[str]:
    return [s for _, blocks in fn_sections for _, stmts in blocks for s in stmts]


def _shape_words(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _check_function(name: str, decls) -> Check:
    """Cheap validation of rank and sizes; binds each symbolic dimension at its first use."""
    chk = Check(name, [d.var.name for d in decls], [])
    for d in decls:
        v = d.var
        conds = [f"{v.name}.ndim != {len(v.shape)}"]  # first, so shape[i] below is safe
        new: dict[str, int] = {}
        for i, dim in enumerate(v.shape):
            if isinstance(dim, int) or dim in chk.dims:
                conds.append(f"{v.name}.shape[{i}] != {dim}")
            elif dim in new:
                conds.append(f"{v.name}.shape[{i}] != {v.name}.shape[{new[dim]}]")
            else:
                new[dim] = i
        known = [dim for dim in dict.fromkeys(v.shape) if isinstance(dim, str) and dim in chk.dims]
        where = " (" + ", ".join(f"{dim}={{{dim}}}" for dim in known) + ")" if known else ""
        chk.lines.append(f"if {' or '.join(conds)}:")
        chk.lines.append(f"    raise ValueError(f\"input '{v.name}' must have shape {_shape_words(v.shape)}"
                         f"{where}, got {{tuple({v.name}.shape)}}\")")
        for dim, i in new.items():
            chk.lines.append(f"{dim} = {v.name}.shape[{i}]")
            chk.dims.append(dim)
    return chk


def build_model(prog: Program) -> dict:
    """Everything the template needs, decided here; the template only lays it out."""
    param_ident = {p.name: p.var.name for p in prog.params}
    inputs_all = list(prog.inputs)
    grads_needed = [a for _, a in prog.grads]

    def reads(eqns, extra: list[Atom]) -> tuple[list[str], list]:
        used = {a.name for e in eqns for a in e.inputs if isinstance(a, Var)} | {
            a.name for a in extra if isinstance(a, Var)}
        unpack = [f'{p.var.name} = params["{p.name}"]' for p in prog.params if p.var.name in used]
        needed_inputs = [d for d in inputs_all if d.var.name in used]
        return unpack, needed_inputs

    functions = []
    checks = []

    # forward(): only the outputs
    fwd_eqns = live_eqns(prog.eqns, list(prog.outputs))
    unpack, fwd_inputs = reads(fwd_eqns, list(prog.outputs))
    fwd_check = _check_function("_check_forward_inputs", fwd_inputs)
    all_check = _check_function("_check_inputs", inputs_all)
    same_inputs = [d.var.name for d in fwd_inputs] == [d.var.name for d in inputs_all]
    checks.append(all_check)
    if not same_inputs and fwd_inputs:
        checks.append(fwd_check)
    outputs_text = ", ".join(o.name for o in prog.outputs) or "None"
    functions.append(_function(
        prog, "forward", ["params", *(d.var.name for d in fwd_inputs)],
        f"Compute {', '.join(o.name for o in prog.outputs) or 'nothing'} (the spec's outputs).",
        fwd_check if not same_inputs else all_check, unpack,
        [("", emit_body(fwd_eqns, list(prog.outputs)))], outputs_text, fwd_inputs))

    loss_eqns = live_eqns(prog.eqns, [prog.loss])
    unpack, _ = reads(loss_eqns, [prog.loss])
    functions.append(_function(
        prog, "loss", ["params", *(d.var.name for d in inputs_all)], "The scalar loss.", all_check, unpack,
        [("", emit_body(loss_eqns, [prog.loss]))], prog.loss.name, inputs_all))

    # value_and_grad(): forward, then backward
    eqns = live_eqns(prog.eqns + prog.backward, [prog.loss, *grads_needed])
    fwd_part = tuple(e for e in eqns if e in set(prog.eqns))
    bwd_part = tuple(e for e in eqns if e not in set(prog.eqns))
    # a parameter with a constant gradient (zero or not) is read by zeros_like / full_like
    const_grads = [p.var for p in prog.params if is_host(dict(prog.grads).get(p.name, Lit(0.0)))]
    unpack, _ = reads(eqns, grads_needed + const_grads)
    fwd_blocks, bwd_blocks = emit_sections([fwd_part, bwd_part], [prog.loss, *grads_needed])
    grad_items = []
    declared = {d.var.name for d in prog.inputs} | {p.var.name for p in prog.params}
    for name, g in prog.grads:
        ident = param_ident.get(name, name)
        if isinstance(g, Lit) and g.value == 0.0:
            grad_items.append(f'"{name}": xp.zeros_like({ident})')
        elif is_host(g):  # a constant such as d(0.5 * p)/dp: an array of p's shape and dtype
            grad_items.append(f'"{name}": xp.full_like({ident}, {result_text(g)})')
        elif isinstance(g, Var) and g.name in declared:  # never hand out an input or parameter itself
            grad_items.append(f'"{name}": xp.asarray({g.name}, copy=True)')
        else:
            grad_items.append(f'"{name}": {result_text(g)}')
    returns = prog.loss.name + ", {" + ", ".join(grad_items) + "}"
    if len(returns) > 80:
        returns = prog.loss.name + ", {\n        " + ",\n        ".join(grad_items) + ",\n    }"
    functions.append(_function(
        prog, "value_and_grad", ["params", *(d.var.name for d in inputs_all)],
        "The loss and its gradient with respect to every parameter" + (
            " and to " + ", ".join(prog.wrt) if prog.wrt else "") + ".",
        all_check, unpack, [("forward", fwd_blocks), ("backward", bwd_blocks)], returns, inputs_all))
    functions += forward_mode_functions(prog, _function, all_check, inputs_all)  # jvp, hvp

    kernels_used = sorted({_KERNELS[e.prim] for e in prog.eqns + prog.backward if e.prim in _KERNELS})
    inits_used = sorted({f"_{p.init[0]}" for p in prog.params if p.init[0] in ("glorot_uniform", "he_normal")})
    return {
        "version": __version__,
        "model": prog.name,
        "spec": prog.source_name,
        "source": "\n".join(prog.source_lines),
        "inputs": [_input_meta(d) for d in inputs_all],
        "params": [(p.name, _shape_literal(p.var.shape), _init_expr(p)) for p in prog.params],
        "wrt": _tuple_literal([f'"{n}"' for n in prog.wrt]),
        "outputs": _tuple_literal([f'"{o.name}"' for o in prog.outputs]),
        "optimizer": _optimizer_model(prog),
        "checks": checks,
        "functions": functions,
        "helpers": [inspect.getsource(getattr(kernels, k)).rstrip() for k in kernels_used],
        "init_helpers": [inspect.getsource(getattr(initializers, k)).rstrip() for k in inits_used],
        "uses_math": bool(inits_used),
        "uses_rng": any("rng" in _init_expr(p) for p in prog.params),
        "input_names": [d.var.name for d in inputs_all],
    }


def _function(prog, name, args, doc, check: Check, unpack, sections, returns, decls) -> Function:
    secs = _sections(prog, sections)
    statements = _all_statements(secs) + [returns]
    dims = [d for d in check.dims if _uses(statements, d)]
    if dims:
        call = f"{', '.join(check.dims)} = {check.name}({', '.join(check.args)})"
        if len(check.dims) == 1:
            call = f"{check.dims[0]} = {check.name}({', '.join(check.args)})"
    else:
        call = f"{check.name}({', '.join(check.args)})" if check.args else ""
    first = decls[0].var.name if decls else None
    # without inputs, the namespace comes from a parameter (read before it is unpacked)
    source = first or (unpack[0].split(" = ", 1)[1] if unpack else None)
    fn = Function(name, args, doc, call, unpack, secs, returns)
    fn.uses_xp = _uses(statements, "xp.") or _uses(statements, "(xp,")
    if fn.uses_xp and source is None:
        fn.uses_xp = False
    fn.xp_source = source or ""
    return fn


def _input_meta(d) -> str:
    v = d.var
    extra = f', "classes": {d.classes}' if d.classes is not None else ""
    return f'"{v.name}": {{"kind": "{v.dtype}", "shape": {_shape_literal(v.shape)}{extra}}}'


def _shape_literal(shape) -> str:
    return _tuple_literal([f'"{d}"' if isinstance(d, str) else str(d) for d in shape])


def _tuple_literal(items: list[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _init_expr(p) -> str:
    kind, args = p.init
    shape = _shape_literal(p.var.shape)
    if kind == "value" and not isinstance(args[0], list):
        return f"np.full({shape}, {float(args[0])!r})"
    if kind == "value":
        return f"np.array({args[0]!r})"
    if kind == "zeros":
        return f"np.zeros({shape})"
    if kind == "ones":
        return f"np.ones({shape})"
    if kind == "constant":
        return f"np.full({shape}, {float(args[0])!r})"
    if kind == "normal":
        return f"rng.normal(0.0, {float(args[0])!r}, size={shape})"
    if kind == "uniform":
        return f"rng.uniform({float(args[0])!r}, {float(args[1])!r}, size={shape})"
    return f"_{kind}(rng, {shape})"


def _optimizer_model(prog: Program) -> dict:
    """The per-parameter update, built as IR by the optimizer's rule and emitted like the rest."""
    name, hyper = prog.optimizer
    hp = dict(hyper)
    opt = OPTIMIZERS[name]
    namer = Namer({"p", "g", "name"})
    b = Builder(namer)
    p, g = Var("p", (), "float"), Var("g", (), "float")
    bufs = {k: Var(namer.claim(k), (), "float") for k in opt.buffers(hp)}
    new_p, new_bufs = opt.update(b, p, g, bufs, hp)
    renames = {v.name: k for k, v in new_bufs.items() if isinstance(v, Var) and v.temp}
    if isinstance(new_p, Var) and new_p.temp:
        renames[new_p.name] = "params[name]"
    blocks = emit_body(tuple(b.eqns), [new_p, *new_bufs.values()], renames)
    body = [s for blk in blocks for s in blk.statements]
    if not (isinstance(new_p, Var) and new_p.temp):
        body.append(f"params[name] = {result_text(new_p)}")
    stores = [f'state["{k}"][name] = {renames.get(v.name, result_text(v))}' for k, v in new_bufs.items()]
    hp_text = ", ".join(f"{k}={_py(v)}" for k, v in hyper)
    return {
        "name": name,
        "hyper": "{" + ", ".join(f'"{k}": {_py(v)}' for k, v in hyper) + "}",
        "summary": f"{name}({hp_text})",
        "buffers": list(bufs),
        "body": body,
        "stores": stores,
    }


def _py(v) -> str:
    return repr(v) if isinstance(v, bool) else repr(float(v)) if isinstance(v, (int, float)) else repr(v)


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    text = resources.files("nnc.templates").joinpath("module.py.jinja").read_text(encoding="utf-8")
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False,
    )
    return env.from_string(text)


def render_module(prog: Program) -> str:
    """The generated module's text: deterministic for a given Program and nnc version."""
    return _template().render(**build_model(prog))


