"""Build the render model of a differentiated Program and fill the module template."""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import jinja2

from .. import __version__
from ..cache import cache_folder
from ..ir.builder import Builder
from ..ir.core import Atom, Eqn, Lit, Program, Var, is_host
from ..ir.naming import Namer
from ..optim import OPTIMIZERS, describe, direction_split, schedule_source
from ..passes.dce import live_eqns, live_split
from .cuda import elementwise_kernel
from .emit import (
    Block,
    Read,
    argument_groups,
    caller_arrays,
    emit_body,
    emit_sections,
    handed_out,
    result_text,
    view_base,
)
from .forward_mode import forward_mode_functions
from .inline import function_source, module_source
from .wrap import wrap_condition, wrap_items, wrap_statement

_WEIGHT_HELPERS = ("_to_numpy", "_float_dtype", "_check_weights", "_write_weights", "_read_weights")
_KERNELS = {"softmax": "_softmax", "log_softmax": "_log_softmax", "onehot": "_onehot"}


@dataclass
class Function:
    name: str
    args: list[str]
    doc: str
    check: str  # the input-check statement ("" for none)
    unpack: list[Read]  # reads of parameters (and tangents)
    shape_check: list[str]  # the shape tests of what was read from params (and tangents)
    sections: list[tuple[str, list[tuple[str, list[str]]]]]  # (title, [(comment, statements)])
    returns: str
    uses_xp: bool = False
    xp_source: str = ""
    input_cast: list[str] = field(default_factory=list)  # float inputs to the parameters' dtype


@dataclass
class Check:
    name: str
    args: list[str]
    dims: list[str]
    lines: list[str] = field(default_factory=list)


def _comment(prog: Program, line: int) -> str:
    """`# spec.nn:7  h2 = relu(dense(h1, 256))` above the code of a statement. A statement
    continued over several lines is quoted whole, line for line, as the spec lays it out."""
    lines = prog.statement_lines(line)
    if len(lines) <= 1:
        return f"# {prog.source_name}:{line}  {' '.join(lines[0].split())}" if lines else ""
    head = f"# {prog.source_name}:{line}-{line + len(lines) - 1}  "
    first = lines[0].rstrip()
    start = len(first) - len(first.lstrip())  # the spec's column of the statement's first character
    rest = [text.rstrip()[start:] if text[:start].isspace() or not start else text.strip() for text in lines[1:]]
    pad = "    #" + " " * (len(head) - 1)  # continuation lines: the template indents the first only
    return head + first[start:] + "".join(f"\n{pad}{text}".rstrip() for text in rest)


def _sections(prog, titled_blocks) -> list:
    out = []
    for title, blocks in titled_blocks:
        if blocks:
            out.append((title, [(_comment(prog, b.line), [wrap_statement(s, indent=4) for s in b.statements])
                                for b in blocks]))
    return out


def _uses(text_lists, word: str) -> bool:
    """Whether generated statements use `word` as a whole name: the dimension `B`, not the
    B of `BaseException` (a spec name), nor the `xp.` of `zxp.dtype`."""
    start = r"(?<![\w.])" if word[0].isalnum() or word[0] == "_" else ""
    end = r"(?!\w)" if word[-1].isalnum() or word[-1] == "_" else ""
    pattern = re.compile(start + re.escape(word) + end)
    return any(pattern.search(s) for s in text_lists)


def _all_statements(fn_sections) -> list[str]:
    return [s for _, blocks in fn_sections for _, stmts in blocks for s in stmts]


def _shape_words(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _check_function(name: str, decls, nonempty: bool = False) -> Check:
    """Validation of every input at an entry point, cheap enough to run on every step.

    Per input, one `if` filters on rank, sizes (binding each symbolic dimension at its
    first use) and the dtype kind looked up in a cache; only when it fails (or sees a
    dtype for the first time) does the inlined `_check_input` run, which checks in full
    and raises a ValueError naming the input, the expected and the actual shape. Label
    inputs are also checked for range (two reductions). With `nonempty` (entry points that
    compute the loss), a symbolic dimension of size 0 is an error: a mean over it would be
    nan and its gradient a division by zero, and an empty slice is a common slip in a
    hand-written training loop.
    """
    chk = Check(name, [d.var.name for d in decls], [])
    where: dict[str, str] = {}  # dimension -> the input that bound it
    first = decls[0].var.name if decls else None
    for d in decls:
        v = d.var
        # of the first input's library: NumPy labels with PyTorch features fail obscurely
        other_class = f"{v.name}.__class__ is not {first}.__class__" if v.name != first else None
        new: dict[str, int] = {}
        if all(isinstance(dim, int) or dim in chk.dims for dim in v.shape):
            # every size known: one tuple comparison checks the rank and the sizes
            conds = [f"{v.name}.shape != {_tuple_literal([str(dim) for dim in v.shape])}"]
        else:
            conds = [f"{v.name}.ndim != {len(v.shape)}"]  # first, so shape[i] below is safe
            for i, dim in enumerate(v.shape):
                if isinstance(dim, int) or dim in chk.dims:
                    conds.append(f"{v.name}.shape[{i}] != {dim}")
                elif dim in new:
                    conds.append(f"{v.name}.shape[{i}] != {v.name}.shape[{new[dim]}]")
                else:
                    new[dim] = i
        # `__class__`, not type(): a spec input may be called `type`
        conds.append(f'_DTYPE_KINDS.get(({v.name}.__class__, {v.name}.dtype)) != "{v.dtype}"')
        if other_class:
            conds.append(other_class)
        bound = ", ".join(f'"{dim}": ({dim}, "{where[dim]}")' for dim in dict.fromkeys(v.shape) if dim in where)
        chk.lines.append(f"if {' or '.join(conds)}:")
        chk.lines.append(f'    _check_input(_namespace({v.name}), "{v.name}", {v.name}, "{v.dtype}", '
                         f"{_shape_literal(v.shape)}, {{{bound}}})")
        if other_class:
            chk.lines.append(f"    if {other_class}:")
            chk.lines.append(f"        _check_library({first}, {v.name}, \"input '{v.name}'\")")
        for dim, i in new.items():
            chk.lines.append(f"{dim} = {v.name}.shape[{i}]")
            if nonempty:
                chk.lines.append(f"if not {dim}:")
                chk.lines.append(f"    raise ValueError(\"input '{v.name}' is empty ({dim} = 0): the loss needs at least "
                                 f"one example along {dim}\")")
            chk.dims.append(dim)
            where[dim] = v.name
        if d.classes is not None:
            label_check = f'_check_labels(_namespace({v.name}), "{v.name}", {v.name}, {d.classes})'
            # the minimum of no labels is an error: an empty batch is refused above, or skipped here
            chk.lines += [label_check] if nonempty else [f"if {v.name}.shape[0]:", "    " + label_check]
    if not decls:
        return chk
    # a list or a number fails the filter with AttributeError; try costs nothing when nothing is raised
    expected = ", ".join(f'("{d.var.name}", {d.var.name}, "{d.var.dtype}{_shape_words(d.var.shape)}")' for d in decls)
    chk.lines[:] = (["try:"] + ["    " + wrap_condition(line, indent=8) for line in chk.lines]
                    + ["except AttributeError:  # an input that is not an array: say which",
                       f"    _check_arrays({expected})", "    raise"])
    return chk


def _check_helpers(checks: list[Check]) -> list[str]:
    """The inlined sources the input checks call (none when no entry point takes inputs)."""
    text = "\n".join(line for c in checks for line in c.lines)
    if not text:
        return []
    module = module_source("checks")
    cache = module[module.index("# (array class"): module.index("\n\n\ndef ")]  # the cache, its comment
    out = [cache, function_source("checks", "_check_input"), function_source("checks", "_check_arrays")]
    if "_check_labels(" in text:
        out.append(function_source("checks", "_check_labels"))
    return out


def _reads(prog: Program, eqns, extra: list[Atom]) -> tuple[list[Read], list]:
    """What code running `eqns` (and returning `extra`) reads: the parameters it uses (from
    `params`), and the inputs it uses."""
    used = {a.name for e in eqns for a in e.inputs if isinstance(a, Var)} | {
        a.name for a in extra if isinstance(a, Var)}
    unpack = [Read(p.var, "params", p.name) for p in prog.params if p.var.name in used]
    return unpack, [d for d in prog.inputs if d.var.name in used]


def build_model(prog: Program) -> dict:
    """Everything the template needs, decided here; the template only lays it out."""
    inputs_all = list(prog.inputs)
    functions = []
    checks = []

    # forward(): only the outputs
    fwd_eqns = live_eqns(prog.eqns, list(prog.outputs))
    unpack, fwd_inputs = _reads(prog, fwd_eqns, list(prog.outputs))
    fwd_check = _check_function("_check_forward_inputs", fwd_inputs)
    all_check = _check_function("_check_inputs", inputs_all, nonempty=True)
    # forward() shares the loss's check when it reads the same inputs and the check holds
    # nothing more (the loss's refuses empty batches; forward maps them to empty outputs)
    same_inputs = ([d.var.name for d in fwd_inputs] == [d.var.name for d in inputs_all]
                   and all_check.lines == _check_function("_check_inputs", inputs_all).lines)
    checks.append(all_check)
    if not same_inputs and fwd_inputs:
        checks.append(fwd_check)
    outputs_text = ", ".join(handed_out(list(prog.outputs), caller_arrays(prog), fwd_eqns)) or "None"
    spec_names = {d.var: d.name for d in prog.params}  # `output h1.W` says h1.W, not h1_W
    functions.append(_function(
        prog, "forward", ["params", *(d.var.name for d in fwd_inputs)],
        f"Compute {', '.join(spec_names.get(o, o.name) for o in prog.outputs) or 'nothing'} (the spec's outputs).",
        fwd_check if not same_inputs else all_check, unpack,
        [("", emit_body(fwd_eqns, list(prog.outputs), groups=argument_groups(prog), autograd=True))], outputs_text, fwd_inputs))

    loss_eqns = live_eqns(prog.eqns, [prog.loss])
    unpack, _ = _reads(prog, loss_eqns, [prog.loss])
    functions.append(_function(
        prog, "loss", ["params", *(d.var.name for d in inputs_all)], "The scalar loss.", all_check, unpack,
        [("", emit_body(loss_eqns, [prog.loss], groups=argument_groups(prog), autograd=True))], handed_out([prog.loss], caller_arrays(prog), loss_eqns)[0], inputs_all))

    # value_and_grad(): forward, then backward
    functions.append(_grad_function(
        prog, "value_and_grad", "The loss and its gradient with respect to every parameter" + (
            " and to " + ", ".join(prog.wrt) if prog.wrt else "") + ".", all_check))
    functions += forward_mode_functions(prog, _function, all_check, inputs_all)  # jvp, hvp

    optimizer_functions = []  # rendered after init_optimizer, in the optimizer section
    direction = _direction_function(prog, all_check)
    if direction is not None:
        optimizer_functions.append(direction)
    optimizer_model = _optimizer_model(prog)
    scaled = optimizer_model["scaled_program"]
    if optimizer_model["fused_step"]:
        optimizer_functions.append(_sgd_step_function(scaled, optimizer_model, all_check))
    elif scaled is not None:
        optimizer_functions.append(_grad_function(
            scaled, optimizer_model["grads_fn"], "The loss and each parameter's plain SGD step, "
            f"{optimizer_model['scale']!r} times its gradient\n    (the backward starts from the learning rate, "
            "so no update multiplies).", all_check))

    shape_checks = any(fn.shape_check for fn in functions + optimizer_functions)
    used_eqns = prog.eqns + prog.backward + (scaled.backward if scaled is not None else ())
    kernels_used = sorted({_KERNELS[e.prim] for e in used_eqns if e.prim in _KERNELS})
    inits_used = sorted({f"_{p.init[0]}" for p in prog.params if p.init[0] in ("glorot_uniform", "he_normal")})
    updates_in_place = bool(prog.params or not optimizer_model["fused_step"])
    check_helpers = _check_helpers(checks)
    return {
        "version": __version__,
        "model": prog.name,
        "spec": prog.source_name,
        "source": "\n".join(prog.source_lines),
        "inputs": [_input_meta(d) for d in inputs_all],
        "params": [(p.name, _shape_literal(p.var.shape), _init_expr(p)) for p in prog.params],
        "wrt": _tuple_literal([f'"{n}"' for n in prog.wrt]),
        "outputs": _tuple_literal([f'"{spec_names.get(o, o.name)}"' for o in prog.outputs]),
        "optimizer": optimizer_model,
        "checks": checks,
        "functions": functions,
        "optimizer_functions": optimizer_functions,
        "numpy_namespace": function_source("numpy_fast", "_NumPy"),
        "cuda_helper": function_source("cuda", "_CudaKernel") if optimizer_model["cuda"] else None,
        "scalar_args_namespace": function_source("scalar_args", "_ScalarArgs"),
        "helpers": ([function_source("kernels", k) for k in kernels_used]
                    + [function_source("kernels", "_copy")] * any(
                        "_copy(xp, " in fn.returns for fn in functions + optimizer_functions)
                    + check_helpers
                    + [function_source("checks", "_check_params")] * shape_checks
                    + [function_source("checks", k) for k in ("_check_tangents", "_check_directions")] * any(
                        r.source != "params" for fn in functions for r in fn.unpack)
                    # init_optimizer's check that train_step can update each parameter; the loop's
                    # error naming the parameter it could not update (which calls the check)
                    + [function_source("checks", k) for k in ("_check_writable", "_check_trainable",
                                                               "_update_failed")] * updates_in_place
                    + [function_source("checks", "_check_state")] * bool(optimizer_model["buffers"])
                    # what the dtype messages of inputs, parameters and trainable parameters say of ml_dtypes
                    + [function_source("checks", "_ml_dtypes_note")] * bool(
                        check_helpers or shape_checks or updates_in_place)),
        "shape_checks": shape_checks,
        "init_helpers": [function_source("initializers", k) for k in inits_used],
        "uses_math": bool(inits_used) or optimizer_model["uses_math"],
        "uses_rng": any("rng" in _init_expr(p) for p in prog.params),
        "float32_overflow": _float32_overflow(prog),
        "weight_helpers": [function_source("files", "_replace_file")]
                          + [function_source("weights", k) for k in _WEIGHT_HELPERS],
    }


def _grad_function(prog: Program, name: str, doc: str, check: Check) -> Function:
    """A function returning the loss and the gradients `prog.grads`: forward, then backward."""
    param_ident = {p.name: p.var.name for p in prog.params}
    grads_needed = [a for _, a in prog.grads]
    fwd_part, bwd_part = live_split(prog.eqns, prog.backward, [prog.loss, *grads_needed])
    eqns = fwd_part + bwd_part
    # a parameter with a constant gradient (zero or not) is read by zeros_like / full_like
    grad_of = dict(prog.grads)
    const_grads = [p.var for p in prog.params if is_host(grad_of.get(p.name, Lit(0.0)))]
    unpack, _ = _reads(prog, eqns, grads_needed + const_grads)
    fwd_blocks, bwd_blocks = emit_sections([fwd_part, bwd_part], [prog.loss, *grads_needed],
                                           groups=argument_groups(prog), autograd=True)
    # never hand out an input, a parameter or the loss itself, nor one array twice
    loss_text, *arrays = handed_out([prog.loss, *(g for _, g in prog.grads)], caller_arrays(prog), eqns)
    grad_items = []
    for (gname, g), text in zip(prog.grads, arrays):
        ident = param_ident.get(gname, gname)
        if isinstance(g, Lit) and g.value == 0.0:
            grad_items.append(f'"{gname}": xp.zeros_like({ident})')
        elif is_host(g):  # a constant such as d(0.5 * p)/dp: an array of p's shape and dtype
            grad_items.append(f'"{gname}": xp.full_like({ident}, {result_text(g)})')
        else:
            grad_items.append(f'"{gname}": {text}')
    returns = loss_text + ", {" + ", ".join(grad_items) + "}"
    if len(returns) > 80:
        returns = loss_text + ", {\n        " + ",\n        ".join(grad_items) + ",\n    }"
    inputs = list(prog.inputs)
    return _function(prog, name, ["params", *(d.var.name for d in inputs)], doc, check, unpack,
                     [("forward", fwd_blocks), ("backward", bwd_blocks)], returns, inputs)


def _sgd_step_function(prog: Program, optimizer: dict, check: Check) -> Function:
    """One fused plain-SGD step: the lr-seeded forward and backward of `prog`, then
    `W -= step` for every parameter (written in place; rebinding where arrays are
    immutable, so `params[...] = W` stores it back)."""
    params = {p.name: p.var for p in prog.params}
    updates, names, stores = [], {}, []
    for gname, g in prog.grads:
        if gname not in params or (isinstance(g, Lit) and g.value == 0.0):
            continue  # no gradient, no update
        v = params[gname]
        new = Var(v.name + "'", v.shape, v.dtype, temp=True)  # a name no spec can use
        updates.append(Eqn("sub", (v, g), new))
        names[new.name] = v.name
        stores.append(f'params["{gname}"] = {v.name}')
    steps = [g for _, g in prog.grads]
    fwd_part, bwd_part = live_split(prog.eqns, prog.backward, [prog.loss, *steps])
    eqns = fwd_part + bwd_part
    unpack, _ = _reads(prog, eqns + tuple(updates), [])
    owned = frozenset(v.name for v in params.values())
    fwd, bwd, upd = emit_sections([fwd_part, bwd_part, tuple(updates)],
                                  [prog.loss, *(Var(n, (), "float") for n in names)], names, owned,
                                  argument_groups(prog))
    # a parameter that cannot be written (read-only, an inference tensor) is named (_update_failed)
    updating = ["    " + line for b in upd for line in b.statements]
    if updating:
        updating = ["try:", *updating, "except (ValueError, TypeError, RuntimeError) as exc:  # a read-only parameter",
                    "    _update_failed(None, params, state, exc)"]
    upd[:] = [Block(0, updating + stores + ['state["step"] += 1'])]
    inputs = list(prog.inputs)
    doc = (f"One {optimizer['summary']} step: updates params and state in place, returns the loss.\n\n"
           "    Forward, backward and update in one pass; the backward starts from the learning rate,\n"
           "    so each d_* below is already lr * gradient.")
    return _function(prog, optimizer["fused_step"], ["params", "state", *(d.var.name for d in inputs)], doc,
                     check, unpack, [("forward", fwd), ("backward", bwd), ("update", upd)], prog.loss.name, inputs)


def _scaled_program(prog: Program, optimizer: dict) -> Program | None:
    """The program differentiated with the loss seeded by the SGD scale (see _sgd_scale)."""
    if optimizer.get("scale") is None:
        return None
    from ..autodiff import differentiate
    from ..passes import simplify

    base = prog.with_(backward=(), grads=(), wrt=())
    return simplify(differentiate(base, seed=optimizer["scale"]))


def _function(prog, name, args, doc, check: Check, unpack: list[Read], sections, returns, decls) -> Function:
    secs = _sections(prog, sections)
    statements = _all_statements(secs) + [returns]
    dims = [d for d in check.dims if _uses(statements, d)]
    if dims:
        # a dimension this function does not read is unpacked into `_` (ruff's RUF059)
        call = f"{', '.join(d if d in dims else '_' for d in check.dims)} = {check.name}({', '.join(check.args)})"
        if len(check.dims) == 1:
            call = f"{check.dims[0]} = {check.name}({', '.join(check.args)})"
    else:
        call = f"{check.name}({', '.join(check.args)})" if check.args else ""
    first = decls[0].var.name if decls else None
    uses_xp = _uses(statements, "xp.") or _uses(statements, "(xp,")
    if prog.params and any(d.var.dtype == "float" for d in decls):
        uses_xp = True  # float inputs take the parameters' dtype (_input_cast), with xp.astype
        if not any(r.source == "params" for r in unpack):  # one parameter is read for its dtype
            unpack = [Read(prog.params[0].var, "params", prog.params[0].name), *unpack]
    # with no inputs, the namespace comes from a parameter, read before it is unpacked
    source = first or (unpack[0].expr if unpack else None)
    params = [r.var for r in unpack if r.source == "params"]
    if first and params:  # the parameters must be of the inputs' library (_check_library)
        source = f"{first}, {params[0].name}"
    reference = _dtype_reference(decls, params)
    cast = _input_cast(decls, params, unpack, reference)
    checks = _param_check(params) + _tangent_check(prog, unpack, reference)
    fn = Function(name, args, doc, call, unpack, checks, secs, returns, input_cast=cast)
    fn.uses_xp = uses_xp or bool(cast)
    if fn.uses_xp and source is None:
        fn.uses_xp = False
    fn.xp_source = source or ""
    return fn


def _param_check(params: list[Var]) -> list[str]:
    """An `if` that calls _check_params when one of the parameters read has another shape
    than the spec gives it: a bias of shape (1,) would broadcast, and train, silently wrong.
    Inline tuple comparisons, as the input checks: 40 ns a parameter. A parameter that is no
    array (has no .shape) reaches _check_params too, which names it; a try costs nothing."""
    conds = [f"{v.name}.shape != {_tuple_literal([str(d) for d in v.shape])}" for v in params]
    if not conds:
        return []
    return _shape_test(conds, "_check_params(params, _PARAMS, _SPEC)", "a parameter")


def _shape_test(conds: list[str], call: str, what: str) -> list[str]:
    """`if conds: call`, with `call` also made when an operand is no array (has no .shape),
    so that the checker names it: a try costs nothing when nothing raises."""
    test = "    " + wrap_condition(f"if {' or '.join(conds)}:", indent=8)  # continuations: absolute
    return ["try:", test, f"        {call}", f"except _NoShape:  # {what} that is no array (AttributeError)", f"    {call}"]


def _input_cast(decls, params: list[Var], unpack: list[Read], reference: str | None) -> list[str]:
    """Float inputs and jvp's tangents, hvp's vector (along inputs and parameters alike) of
    another dtype than the parameters are cast to theirs: float arrays have the dtype
    init_params chose (DESIGN.md), and float64 data or directions (np.ones' default) with
    float32 parameters would otherwise compute in float64 on NumPy and fail on
    array_api_strict, which refuses in-place updates that promote. One comparison an array
    when the dtypes agree. Without parameters the first float input sets the dtype ("a spec
    without parameters computes in the dtype of its first float input"), for the same reasons."""
    seeds = [r for r in unpack if r.source != "params"]
    floats = [d.var.name for d in decls if d.var.dtype == "float"] + [r.var.name for r in seeds]
    floats = floats if params else floats[1:]
    if not floats:
        return []
    dtype = f"{reference}.dtype"
    conds = " or ".join(f"{x}.dtype != {dtype}" for x in floats)
    casts = [f"{', '.join(floats)} = {', '.join(f'xp.astype({x}, {dtype})' for x in floats)}"]
    if 8 + len(casts[0]) > 100:  # too long for one line: one line an array
        casts = [f"{x} = xp.astype({x}, {dtype})" for x in floats]
    what = "the parameters' dtype" if params else f"the dtype of {reference} (there are no parameters)"
    # integer parameters would truncate the inputs cast to them: named (a test where dtypes differ)
    integral = ([f'    if not xp.isdtype({dtype}, "real floating"):', "        _check_params(params, _PARAMS, _SPEC, xp)"]
                if params else [])
    # complex directions: the cast would drop their imaginary part
    complex_directions = [f'    _check_directions(xp, "{src}", {src})' for src in dict.fromkeys(r.source for r in seeds)]
    return [f"# float inputs in {what}", wrap_condition(f"if {conds}:", indent=4), *integral, *complex_directions,
            *("    " + cast for cast in casts)]


def _dtype_reference(decls, params: list[Var]) -> str | None:
    """The array whose dtype the float inputs take, and whose library the directions share:
    the first parameter read, else the first float input."""
    if params:
        return params[0].name
    return next((d.var.name for d in decls if d.var.dtype == "float"), None)


def _tangent_check(prog: Program, unpack: list[Read], reference: str | None) -> list[str]:
    """The same for jvp's `tangents` and hvp's `vector`: each entry must be an array of the
    library of `reference` (NumPy directions with PyTorch parameters would fail in xp.astype on
    an AttributeError of no help, and array_api_strict warns when its dtypes are compared with
    NumPy's) with its parameter's shape, or its input's (compared with the input passed, whose
    size may be symbolic). Tested here, before the dtypes are compared."""
    seeds = [r for r in unpack if r.source != "params"]
    if not seeds:
        return []
    inputs = {d.var.name for d in prog.inputs}
    conds = []
    for r in seeds:
        if reference:
            conds.append(f"{r.var.name}.__class__ is not {reference}.__class__")
        conds.append(f"{r.var.name}.shape != " + (f"{r.key}.shape" if r.key in inputs else
                                                   _tuple_literal([str(d) for d in r.var.shape])))
    return _shape_test(conds, _tangent_call(prog, seeds, reference), "an entry")


def _tangent_call(prog: Program, seeds: list[Read], like: str | None = None) -> str:
    """The call of _check_tangents for jvp's `tangents` or hvp's `vector` (read into `seeds`):
    with `like`, an array the directions must share a library with."""
    inputs = {d.var.name for d in prog.inputs}
    shapes = ", ".join(f'"{r.key}": {r.key}.shape' for r in seeds if r.key in inputs)
    arg = seeds[0].source
    return (f'_check_tangents("{arg}", {arg}, {"{**_PARAMS, " + shapes + "}" if shapes else "_PARAMS"}'
            + (f", {like}, _check_library)" if like else ")"))


def _input_meta(d) -> str:
    v = d.var
    extra = f', "classes": {d.classes}' if d.classes is not None else ""
    return f'"{v.name}": {{"kind": "{v.dtype}", "shape": {_shape_literal(v.shape)}{extra}}}'


def _shape_literal(shape) -> str:
    return _tuple_literal([f'"{d}"' if isinstance(d, str) else str(d) for d in shape])


def _tuple_literal(items: list[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


_FLOAT32_MAX = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max, without importing NumPy (60 ms)


def _float32_overflow(prog: Program) -> list[tuple[str, float]]:
    """(name, largest magnitude) of the first parameter whose given initial value float32
    cannot hold, if any: init_params refuses float32 for it (a cast would make it inf with
    NumPy's overflow warning)."""
    for p in prog.params:
        kind, args = p.init
        if kind in ("value", "constant", "uniform"):
            largest = max(map(abs, _flat(args if kind == "uniform" else args[0])), default=0.0)
            if largest > _FLOAT32_MAX:
                return [(p.name, float(largest))]
    return []


def _flat(value) -> list[float]:
    """The numbers of a nested list (a literal initial value), or of one number."""
    if isinstance(value, (list, tuple)):
        return [x for item in value for x in _flat(item)]
    return [float(value)]


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
               "grads", "loss_value", "inputs", "kernel"}


def _optimizer_model(prog: Program) -> dict:
    """The per-parameter update, built as IR by the optimizer's rule and emitted like the rest.

    Host-scalar equations (bias corrections, step sizes) go before the loop over
    parameters; the learning-rate schedule and gradient clipping come first. Parameters
    and state buffers are overwritten in place (`p -= 0.1 * g`), then stored back
    (`params[name] = p`): on NumPy, CuPy and PyTorch that store is a no-op, and on
    immutable arrays (JAX), where `-=` rebinds `p`, it is the update. In place is skipped
    when a gradient may share memory with a parameter (updating one would change another's
    gradient before its own update).
    """
    name, hyper = prog.optimizer
    hp = dict(hyper)
    opt = OPTIMIZERS[name]
    buffers = opt.buffers(hp)
    b = Builder(Namer(_STEP_NAMES | set(buffers)))
    shape = ("n",)  # the rule is elementwise: one symbolic shape stands for every parameter's
    p, g = Var("p", shape, "float"), Var("g", shape, "float")
    step = Var("step", (), "float", host=True)
    schedule = schedule_source(hp)
    rule_hp = dict(hp, lr=Var("lr", (), "float", host=True) if schedule else Lit(float(hp["lr"])))
    bufs = {k: Var(k, shape, "float") for k in buffers}
    new_p, new_bufs = opt.update(b, p, g, bufs, rule_hp, step)

    host = tuple(e for e in b.eqns if e.out.host)
    loop = tuple(e for e in b.eqns if not e.out.host)
    host_used = list(dict.fromkeys(a for e in loop for a in e.inputs if isinstance(a, Var) and a.host
                                   and a.name not in ("step", "lr")))
    renames = {v.name: k for k, v in new_bufs.items() if isinstance(v, Var) and v.temp}
    if isinstance(new_p, Var) and new_p.temp:
        renames[new_p.name] = "p"
    plain = not schedule and not hp.get("clip_norm") and opt.direction is None
    scale = _sgd_scale(loop, p, g, new_p, new_bufs) if plain else None
    if scale is not None:  # p - lr * g: the gradients come pre-scaled (see _scaled_program)
        new_p = b.sub(p, g)
        loop = (b.defs[new_p.name],)
        renames[new_p.name] = "p"
    scaled = _scaled_program(prog, {"scale": scale})
    aliased = _grads_may_alias(prog if scaled is None else scaled)
    owned = frozenset() if aliased else frozenset({"p", *(v.name for v in bufs.values())})
    body = [s for blk in emit_body(loop, [new_p, *new_bufs.values()], renames, owned) for s in blk.statements]
    if not (isinstance(new_p, Var) and new_p.temp) and result_text(new_p) != "p":
        body.append(f"p = {result_text(new_p)}")
    body.append("params[name] = p")
    stores = [f'state["{k}"][name] = {renames.get(v.name, result_text(v))}' for k, v in new_bufs.items()]

    prologue = []
    if schedule or any(step in e.inputs for e in b.eqns):
        prologue.append('step = state["step"] + 1  # the number of this update, from 1')
    traced = schedule_source(hp, traced=True)
    if schedule and traced != schedule and prog.params:
        # the count is a Python int, but an array when jax.jit traces train_step (math.cos of
        # one raises); with a NumPy scalar count, the array branch would make lr float64
        prologue += ["if isinstance(step, (int, np.integer)):", f"    lr = {schedule}",
                     "else:  # a traced step count (jax.jit): the same rate, in array operations",
                     f"    lr = {traced}"]
    elif schedule:
        prologue.append(f"lr = {schedule}")
    grad = "grads[name]"
    if hp.get("clip_norm") and prog.params:
        # torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
        # The norm stays an array: no wait for a GPU, one lazy graph on Dask (a float() per
        # parameter computed the gradients once each), traceable by jax.jit.
        prologue.append("grad_norm = xp.sqrt(sum(xp.sum(grads[name] * grads[name]) for name in PARAM_NAMES))")
        prologue.append(f"clip = xp.minimum({float(hp['clip_norm'])!r} / (grad_norm + 1e-06), 1.0)")
        grad = "clip * grads[name]"
    prologue += [s for blk in emit_body(host, host_used) for s in blk.statements]
    if prog.params and any("xp." in s for s in prologue + body):
        prologue.insert(0, f'xp = _namespace(params["{prog.params[0].name}"])')
    elif any("xp." in s for s in body):  # no parameters: the loop never runs, but must be valid code
        body.insert(0, "xp = _namespace(p)")
    cuda = None if aliased or not prog.params else _cuda_update(prog, loop, new_p, new_bufs, b.namer, bool(hp.get("clip_norm")))
    # train_step takes the inputs by name, as value_and_grad does, unless one is named like a
    # global or builtin its body reads (PARAM_NAMES, min, sum, value_and_grad: spec names may be)
    names = [d.var.name for d in prog.inputs]
    read = set(re.findall(r"[A-Za-z_]\w*", "\n".join(prologue + body + stores + [str(v) for v in (cuda or {}).values()])))
    read |= {"PARAM_NAMES", "value_and_grad", "loss"} | set(dir(builtins))
    # (then it passes them on as it got them, by position or keyword: value_and_grad binds them)
    step_args = ["*inputs", "**named_inputs"] if read & set(names) else names
    args = "".join(", " + a for a in step_args)
    if opt.direction is not None:
        gradient = [f"loss_value = loss(params{args})", f"grads = _perceptron_direction(params{args})"]
    else:
        fn = "value_and_grad" if scale is None else "_loss_and_sgd_steps"
        gradient = [f"loss_value, grads = {fn}(params{args})"]
    return {
        "name": name,
        "metadata": wrap_items(f'OPTIMIZER = ("{name}", {{', [f'"{k}": {_py(v)}' for k, v in hyper], "})"),
        "summary": describe(name, hp),
        "buffers": list(bufs),
        "gradient": gradient,
        "step_args": step_args,
        "inputs_doc": "" if step_args == names else (
            f"`inputs` and `named_inputs` are value_and_grad's, by position or keyword: {', '.join(names)}."),
        "prologue": prologue,
        "grad": grad,
        "body": body,
        "stores": stores,
        "uses_math": any("math." in s for s in prologue),
        "cuda": cuda,
        "scale": scale,
        "scaled_program": scaled,
        "grads_fn": "value_and_grad" if scale is None else "_loss_and_sgd_steps",  # see `gradient`
        # plain SGD, no step aliasing a parameter: train_step is one function, forward,
        # lr-seeded backward, then `W -= d_W` per parameter (no grads dict, no loop)
        # not fused when the loss is a parameter itself: the update would rebind the returned name
        "fused_step": ("train_step" if scale is not None and not aliased
                       and prog.loss.name not in {p.var.name for p in prog.params} else None),
    }


def _cuda_update(prog: Program, loop, new_p: Atom, new_bufs: dict, namer: Namer, clipped: bool) -> dict | None:
    """train_step's update loop as one CUDA kernel a parameter, for CuPy arrays (codegen/cuda.py):
    the kernel's definition and the statements that pick and call it. With gradient clipping
    the kernel scales the gradient itself (`g = clip * unclipped_g`). None when the loop is
    one array operation already, or has one the kernel cannot compute."""
    if len(loop) < 2:
        return None
    g = Var("g", ("n",), "float")
    if clipped:
        unclipped = Var(namer.fresh("unclipped_g"), g.shape, "float")
        loop = (Eqn("mul", (Var("clip", (), "float", host=True), unclipped), g),) + tuple(loop)
        g = unclipped
    kernel = elementwise_kernel(f"{prog.name}_{prog.optimizer[0]}_update", loop, {"p": new_p, **new_bufs})
    if kernel is None or kernel.arrays not in ((), (g.name,)):
        return None
    states = "".join(f', state["{k}"]' for k in kernel.outputs if k != "p")
    args = ["grads[name]"] * len(kernel.arrays) + list(kernel.scalars)
    args += ["params[name]" if k == "p" else f'state["{k}"][name]' for k in kernel.outputs]
    operation = "".join(f"    {line}\n" for line in kernel.body)
    return {
        "definition": (f'_CUDA_UPDATE = _CudaKernel(\n    "{kernel.in_params}",\n    "{kernel.out_params}",\n'
                       f'    """\n{operation}    """,\n    "{kernel.name}",\n)'),
        "select": f"kernel = _CUDA_UPDATE.on(PARAM_NAMES, params, grads{states})",
        "call": wrap_items(" " * 12 + "kernel(", args, ")")[12:],
        # the kernel takes host scalars: the clip factor, an array, is read once a step
        "before": ["clip = float(clip)  # one wait for the GPU a step"] if clipped else [],
    }


def _direction_function(prog: Program, check: Check) -> Function | None:
    """`_perceptron_direction`: the step direction of an optimizer that replaces the gradient."""
    split = direction_split(prog)
    if split is None:
        return None
    fwd, rule, directions, namer = split
    results = list(directions.values())
    unpack, _ = _reads(prog, fwd + rule, results)
    ident = {p.name: p.var.name for p in prog.params}
    names = {a.name: namer.fresh(f"d_{ident[n]}") for n, a in directions.items() if isinstance(a, Var) and a.temp}
    fwd_blocks, rule_blocks = emit_sections([fwd, rule], results, names, groups=argument_groups(prog))
    items = [f'"{n}": {names.get(getattr(a, "name", None)) or result_text(a)}' for n, a in directions.items()]
    returns = "{" + ", ".join(items) + "}"
    if len(returns) > 80:
        returns = "{\n        " + ",\n        ".join(items) + ",\n    }"
    return _function(
        prog, "_perceptron_direction", ["params", *(d.var.name for d in prog.inputs)],
        "The perceptron rule's descent direction per parameter: (f(y) - t) times the layer input.",
        check, unpack, [("forward", fwd_blocks), ("perceptron rule", rule_blocks)], returns, list(prog.inputs))


def _sgd_scale(eqns, p: Var, g: Var, new_p: Atom, new_bufs: dict) -> float | None:
    """c when the update is exactly `p - c * g` with no state (plain SGD), else None.

    Gradients are linear in the loss's seed, so starting the backward from c instead of
    1 yields c * g directly and the update is a bare `p -= step`: one pass over every
    parameter saved, and c usually folds into a constant the backward has anyway."""
    if new_bufs or len(eqns) != 2 or not isinstance(new_p, Var):
        return None
    mul, sub = eqns
    if sub.prim != "sub" or sub.out != new_p or sub.inputs != (p, mul.out) or mul.prim != "mul":
        return None
    a, b = mul.inputs
    c, other = (a, b) if isinstance(a, Lit) else (b, a)
    return float(c.value) if isinstance(c, Lit) and other == g and c.value != 0.0 else None


def _grads_may_alias(prog: Program) -> bool:
    """True when some gradient may be (a view of) a parameter or input array."""
    defs, external = {e.out.name: e for e in prog.eqns + prog.backward}, caller_arrays(prog)
    return any(isinstance(base := view_base(a, defs), Var) and base.name in external for _, a in prog.grads)


def _py(v) -> str:
    if isinstance(v, str):
        return f'"{v}"'  # settings' strings are names such as "cosine"
    return repr(v) if isinstance(v, bool) else repr(float(v)) if isinstance(v, (int, float)) else repr(v)


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """The template compiled to Python code, kept between runs in the user's cache folder:
    compiling it costs ~40 ms a process. Jinja keys it by the template's checksum; a file
    that cannot be read or written is passed over."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - damaged: compile afresh and overwrite it
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _template_source(name: str) -> str:
    return resources.files("nnc.templates").joinpath(name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    folder = cache_folder()
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_template_source),
        bytecode_cache=None if folder is None else _TemplateCache(folder, "template-%s.cache"),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False,
    )
    return env.get_template("module.py.jinja")


_XP_NAMES_SLOT = "__XP_NAMES__"
_XP_NAME = re.compile(r"\bxp\.([A-Za-z_]\w*)")


def render_module(prog: Program) -> str:
    """The generated module's text: deterministic for a given Program and nnc version.

    `_XP_NAMES` lists every `xp.NAME` the text holds (a name mentioned in a message is
    listed too: all are standard), plus the float dtypes `init_params` looks up by name."""
    text = _template().render(**build_model(prog), xp_names=_XP_NAMES_SLOT)
    names = sorted(set(_XP_NAME.findall(text)) | {"float32", "float64"})
    return text.replace(_XP_NAMES_SLOT, wrap_items("_XP_NAMES = (", [f'"{n}"' for n in names], ")"), 1)


