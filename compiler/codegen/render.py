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
from ..ir.naming import RESERVED, Namer
from ..optim import OPTIMIZERS, describe, schedule_source
from ..passes.dce import live_eqns
from ..runtime import checks as input_checks
from ..runtime import initializers, kernels, weights
from .emit import emit_body, emit_sections, result_text
from .forward_mode import forward_mode_functions

_WEIGHT_HELPERS = ("_to_numpy", "_check_weights", "_write_weights", "_read_weights")
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
    """Validation of every input at an entry point, cheap enough to run on every step.

    Per input, one `if` filters on rank, sizes (binding each symbolic dimension at its
    first use) and the dtype kind looked up in a cache; only when it fails (or sees a
    dtype for the first time) does the inlined `_check_input` run, which checks in full
    and raises a ValueError naming the input, the expected and the actual shape. Label
    inputs are also checked for range (two reductions).
    """
    chk = Check(name, [d.var.name for d in decls], [])
    where: dict[str, str] = {}  # dimension -> the input that bound it
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
        # `__class__`, not type(): a spec input may be called `type`
        conds.append(f'_DTYPE_KINDS.get(({v.name}.dtype.__class__, {v.name}.dtype)) != "{v.dtype}"')
        bound = ", ".join(f'"{dim}": ({dim}, "{where[dim]}")' for dim in dict.fromkeys(v.shape) if dim in where)
        chk.lines.append(f"if {' or '.join(conds)}:")
        chk.lines.append(f'    _check_input(_namespace({v.name}), "{v.name}", {v.name}, "{v.dtype}", '
                         f"{_shape_literal(v.shape)}, {{{bound}}})")
        for dim, i in new.items():
            chk.lines.append(f"{dim} = {v.name}.shape[{i}]")
            chk.dims.append(dim)
            where[dim] = v.name
        if d.classes is not None:
            chk.lines.append(f"xp = _namespace({v.name})")
            chk.lines.append(f"if {v.name}.shape[0] and (xp.min({v.name}) < 0 or xp.max({v.name}) >= {d.classes}):")
            chk.lines.append(f'    _check_labels(xp, "{v.name}", {v.name}, {d.classes})')
    return chk


def _check_helpers(checks: list[Check]) -> list[str]:
    """The inlined sources the input checks call (none when no entry point takes inputs)."""
    text = "\n".join(line for c in checks for line in c.lines)
    if not text:
        return []
    module = inspect.getsource(input_checks)
    cache = module[module.index("# (dtype.__class__"): module.index("\n\n\ndef ")]  # the cache, its comment
    out = [cache, inspect.getsource(input_checks._check_input).rstrip()]
    if "_check_labels(" in text:
        out.append(inspect.getsource(input_checks._check_labels).rstrip())
    return out


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
    forward_eqns = set(prog.eqns)  # once: a set per equation made this quadratic
    fwd_part = tuple(e for e in eqns if e in forward_eqns)
    bwd_part = tuple(e for e in eqns if e not in forward_eqns)
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

    direction = _direction_function(prog, all_check)
    if direction is not None:
        functions.append(direction)
    optimizer_model = _optimizer_model(prog)
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
        "optimizer": optimizer_model,
        "checks": checks,
        "functions": functions,
        "helpers": [inspect.getsource(getattr(kernels, k)).rstrip() for k in kernels_used] + _check_helpers(checks),
        "init_helpers": [inspect.getsource(getattr(initializers, k)).rstrip() for k in inits_used],
        "uses_math": bool(inits_used) or optimizer_model["uses_math"],
        "uses_rng": any("rng" in _init_expr(p) for p in prog.params),
        "weight_helpers": [inspect.getsource(getattr(weights, k)).rstrip() for k in _WEIGHT_HELPERS],
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
    source = first or (unpack[0].split(" = ", 1)[1] if unpack else None)  # params["W"]: xp comes before unpacking
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


# Names train_step uses itself; optimizer temporaries are named around them.
_STEP_NAMES = {"p", "g", "name", "step", "lr", "clip", "grad_norm", "xp", "math", "params", "state",
               "grads", "loss_value", "inputs"}


def _optimizer_model(prog: Program) -> dict:
    """The per-parameter update, built as IR by the optimizer's rule and emitted like the rest.

    Host-scalar equations (bias corrections, step sizes) go before the loop over
    parameters; the learning-rate schedule and gradient clipping come first.
    """
    name, hyper = prog.optimizer
    hp = dict(hyper)
    opt = OPTIMIZERS[name]
    buffers = opt.buffers(hp)
    b = Builder(Namer(_STEP_NAMES | set(buffers)))
    p, g = Var("p", (), "float"), Var("g", (), "float")
    step = Var("step", (), "float", host=True)
    schedule = schedule_source(hp)
    rule_hp = dict(hp, lr=Var("lr", (), "float", host=True) if schedule else Lit(float(hp["lr"])))
    bufs = {k: Var(k, (), "float") for k in buffers}
    new_p, new_bufs = opt.update(b, p, g, bufs, rule_hp, step)

    host = tuple(e for e in b.eqns if e.out.host)
    loop = tuple(e for e in b.eqns if not e.out.host)
    host_used = list(dict.fromkeys(a for e in loop for a in e.inputs if isinstance(a, Var) and a.host
                                   and a.name not in ("step", "lr")))
    renames = {v.name: k for k, v in new_bufs.items() if isinstance(v, Var) and v.temp}
    if isinstance(new_p, Var) and new_p.temp:
        renames[new_p.name] = "params[name]"
    body = [s for blk in emit_body(loop, [new_p, *new_bufs.values()], renames) for s in blk.statements]
    if not (isinstance(new_p, Var) and new_p.temp):
        body.append(f"params[name] = {result_text(new_p)}")
    stores = [f'state["{k}"][name] = {renames.get(v.name, result_text(v))}' for k, v in new_bufs.items()]

    prologue = []
    if schedule or any(step in e.inputs for e in b.eqns):
        prologue.append('step = state["step"] + 1  # the number of this update, from 1')
    if schedule:
        prologue.append(f"lr = {schedule}")
    grad = "grads[name]"
    if hp.get("clip_norm") and prog.params:
        # torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1
        prologue.append("grad_norm = math.sqrt(sum(float(xp.sum(grads[name] * grads[name])) "
                        "for name in PARAM_NAMES))")
        prologue.append(f"clip = min(1.0, {float(hp['clip_norm'])!r} / (grad_norm + 1e-06))")
        grad = "clip * grads[name]"
    prologue += [s for blk in emit_body(host, host_used) for s in blk.statements]
    if prog.params and any("xp." in s for s in prologue + body):
        prologue.insert(0, f'xp = _namespace(params["{prog.params[0].name}"])')
    elif any("xp." in s for s in body):  # no parameters: the loop never runs, but must be valid code
        body.insert(0, "xp = _namespace(p)")
    if opt.direction is not None:
        gradient = ["loss_value = loss(params, *inputs)", "grads = _perceptron_direction(params, *inputs)"]
    else:
        gradient = ["loss_value, grads = value_and_grad(params, *inputs)"]
    return {
        "name": name,
        "hyper": "{" + ", ".join(f'"{k}": {_py(v)}' for k, v in hyper) + "}",
        "summary": describe(name, hp),
        "buffers": list(bufs),
        "gradient": gradient,
        "prologue": prologue,
        "grad": grad,
        "body": body,
        "stores": stores,
        "uses_math": any("math." in s for s in prologue),
    }


def _direction_function(prog: Program, check: Check) -> Function | None:
    """`_perceptron_direction`: the step direction of an optimizer that replaces the gradient."""
    opt = OPTIMIZERS[prog.optimizer[0]]
    if opt.direction is None:
        return None
    taken = {e.out.name for e in prog.eqns + prog.backward} | {d.var.name for d in prog.inputs} | {
        p.var.name for p in prog.params} | RESERVED
    namer = Namer(taken)
    eqns, directions = opt.direction(prog, Builder(namer))
    results = list(directions.values())
    live = live_eqns(prog.eqns + eqns, results)
    fwd = tuple(e for e in live if e in set(prog.eqns))
    rule = tuple(e for e in live if e not in set(prog.eqns))
    used = {a.name for e in live for a in e.inputs if isinstance(a, Var)} | {
        a.name for a in results if isinstance(a, Var)}
    unpack = [f'{p.var.name} = params["{p.name}"]' for p in prog.params if p.var.name in used]
    ident = {p.name: p.var.name for p in prog.params}
    names = {a.name: namer.fresh(f"d_{ident[n]}") for n, a in directions.items() if isinstance(a, Var) and a.temp}
    fwd_blocks, rule_blocks = emit_sections([fwd, rule], results, names)
    items = [f'"{n}": {names.get(getattr(a, "name", None)) or result_text(a)}' for n, a in directions.items()]
    returns = "{" + ", ".join(items) + "}"
    if len(returns) > 80:
        returns = "{\n        " + ",\n        ".join(items) + ",\n    }"
    return _function(
        prog, "_perceptron_direction", ["params", *(d.var.name for d in prog.inputs)],
        "The perceptron rule's descent direction per parameter: (f(y) - t) times the layer input.",
        check, unpack, [("forward", fwd_blocks), ("perceptron rule", rule_blocks)], returns, list(prog.inputs))


def _py(v) -> str:
    if isinstance(v, str):
        return f'"{v}"'  # settings' strings are names such as "cosine"
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


