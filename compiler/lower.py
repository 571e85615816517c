"""AST -> IR: resolve names, check types and shapes, lower layers and losses to primitives."""

from __future__ import annotations

import functools
import math
import os
import re
from typing import Any

from . import optim
from .builtins import (
    ACTIVATIONS,
    ARRAY,
    AXIS,
    BOOL,
    BUILTINS,
    INIT,
    INIT_ARGS,
    INITIALIZERS,
    INSTEAD,
    INT,
    KEYWORD_INSTEAD,
    LABELS,
    NUM,
    REQUIRED,
    Builtin,
)
from .errors import Span, SpecError, SpecErrors, did_you_mean
from .ir.builder import Builder
from .ir.core import Atom, Eqn, InputDecl, Lit, ParamDecl, Program, Size, Var
from .ir.naming import Namer, identifier, is_reserved
from .optim import OPTIMIZERS
from .primitives import ShapeError
from .primitives.core import fmt_shape
from .syntax import ast
from .syntax.parser import KEYWORDS, MAX_SIZE, ONE_AXIS

_BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul", "^": "pow"}


class _Lowering:
    """One pass over the statements; collects independent errors instead of stopping."""

    def __init__(self, spec: ast.Spec):
        self.spec = spec
        self.errors: list[SpecError] = []
        self.env: dict[str, Atom] = {}
        self.decl_span: dict[str, Span] = {}
        self.inputs: list[InputDecl] = []
        self.params: list[ParamDecl] = []
        self.eqns: list[Eqn] = []
        # the equations of the statements lowered so far, by output name: the folds that look
        # through names (log's) see `p = sigmoid(z)` when a later line reads `log(p)`
        self.defs: dict[str, Eqn] = {}
        self.classes: dict[str, int] = {}
        self.dims: list[str] = []
        taken = {identifier(n) for n in self._all_names()} | set(self._all_dims())
        self.namer = Namer(taken)
        self.current: ast.DefineStmt | ast.LossStmt | None = None
        self.creating_call: ast.Call | None = None  # the parameter-creating call of this statement
        self.failed: set[str] = set()
        self.idents: dict[str, str] = {}  # Python identifier -> the spec name that claimed it
        self.defined: set[str] = set()  # names given by 'NAME = ...' (for wording of notes)

    @functools.cached_property
    def lines(self) -> list[str]:
        return self.spec.source.split("\n")

    def _all_names(self):
        for st in self.spec.statements:
            if isinstance(st, (ast.InputStmt, ast.ParamStmt, ast.DefineStmt)):
                yield st.name

    def _all_dims(self):
        for st in self.spec.statements:
            if isinstance(st, ast.InputStmt):
                yield from (d.value for d in st.type.dims if isinstance(d.value, str))

    # -- helpers used by builtins --
    def size(self, dims) -> Atom:
        dims = tuple(dims)
        if all(isinstance(d, int) for d in dims):
            n = 1
            for d in dims:
                n *= d
            return Lit(float(n))
        return Size(dims)

    def note_classes(self, labels: Atom, classes: int) -> None:
        if isinstance(labels, Var):
            self.classes.setdefault(labels.name, classes)

    def new_param(self, suffix: str, shape, init, call) -> Var:
        owner = self.current.name if isinstance(self.current, ast.DefineStmt) else "loss"
        name = f"{owner}.{suffix}"
        self._claim_identifier(name, call.span)
        var = Var(identifier(name), tuple(shape), "float")
        self.params.append(ParamDecl(name, var, init, call.span.line))
        self.env[name] = var
        self.decl_span[name] = call.span
        return var

    def error(self, message: str, span: Span | None, help: str | None = None) -> None:
        self.errors.append(SpecError(message, span, help))

    # -- statements --
    def run(self) -> Program:
        sts = self.spec.statements
        model_name = None
        if not sts:
            raise SpecErrors([SpecError("the spec is empty", Span.point(1, 1),
                                        help="a spec starts with 'model NAME'; see docs/language.md")])
        if not isinstance(sts[0], ast.ModelStmt):
            self.error("a spec must start with 'model NAME'", sts[0].span, help="add a first line such as 'model mlp'")
        loss_var, loss_span = None, None
        outputs, wrt, opt, opt_span = None, None, None, None
        last_def: str | None = None
        for st in sts:
            try:
                if isinstance(st, ast.ModelStmt):
                    if model_name is not None or st is not sts[0]:
                        self.error("'model' must be the first statement and appear once", st.span)
                    if st.name in KEYWORDS:
                        self.error(f"'{st.name}' is a keyword and cannot be used as a name", st.span,
                                   help=f"name the model otherwise, for example 'model {st.name}_net'")
                    model_name = st.name
                elif isinstance(st, ast.InputStmt):
                    self._declare_input(st)
                elif isinstance(st, ast.ParamStmt):
                    self._declare_param(st)
                elif isinstance(st, ast.DefineStmt):
                    self._define(st)
                    if isinstance(self.env.get(st.name), Var):  # a constant is no default output
                        last_def = st.name
                elif isinstance(st, ast.LossStmt):
                    if loss_span is not None:
                        self._twice("loss", st, loss_span)
                        continue
                    loss_span = st.span
                    loss_var = self._loss(st)
                    if outputs is None and last_def is not None:
                        outputs = ("default", last_def, st.span)
                elif isinstance(st, ast.NameListStmt) and st.keyword == "output":
                    if outputs is not None and outputs[0] == "given":
                        self._twice("output", st, outputs[2])
                    outputs = ("given", st.names, st.span)
                elif isinstance(st, ast.NameListStmt):
                    if wrt is not None:
                        self._twice("wrt", st, wrt.span)
                    wrt = st
                elif isinstance(st, ast.OptimizerStmt):
                    if opt_span is not None:
                        self._twice("optimizer", st, opt_span)
                    opt_span = st.span
                    opt = self._optimizer(st)
            except SpecError as err:
                if not isinstance(err, _Silent):
                    self.errors.append(err)
                if isinstance(st, (ast.DefineStmt, ast.InputStmt, ast.ParamStmt)) and st.name not in self.env:
                    self.failed.add(st.name)  # later uses are not reported again
        if loss_var is None and not any(isinstance(s, ast.LossStmt) for s in sts):
            where = sts[0].span if isinstance(sts[0], ast.ModelStmt) else Span.point(1, 1)
            self.error(f"model '{model_name or '?'}' defines no loss", where,
                       help="add a line such as 'loss = mse(pred, y)'; a model has exactly one loss")
        out_vars = self._outputs(outputs)
        wrt_names = self._wrt(wrt)
        if self.errors:
            raise SpecErrors(self.errors)
        inputs = tuple(InputDecl(d.var, self.classes.get(d.var.name), d.line) for d in self.inputs)
        prog = Program(
            name=model_name or "model", source_name=_source_name(self.spec.path),
            source_lines=tuple(self.spec.source.splitlines()), inputs=inputs, params=tuple(self.params),
            eqns=tuple(self.eqns), loss=loss_var, outputs=out_vars, wrt=wrt_names,
            optimizer=opt or ("sgd", tuple(optim.settings("sgd").items())), dims=tuple(self.dims),
        )
        if opt is not None:
            self._check_optimizer(prog)
        return prog

    def _twice(self, keyword: str, st, first: Span) -> None:
        err = SpecError(f"'{keyword}' is given twice", st.span, help=f"a model has one '{keyword}' statement")
        err.notes = ((f"the first '{keyword}' is here", first),)
        self.errors.append(err)

    def _check_new_name(self, name: str, span: Span) -> None:
        if name in self.env or name in self.failed:
            prev = self.decl_span.get(name)
            err = SpecError(f"'{name}' is already defined", span, help="each name is defined once; pick a new name")
            if prev:
                err.notes = ((f"'{name}' was first defined here", prev),)
            raise err
        if name in KEYWORDS:
            raise SpecError(f"'{name}' is a keyword and cannot be used as a name", span,
                            help=f"rename it, for example to '{name}_'")
        if is_reserved(name):
            raise SpecError(f"'{name}' is reserved in generated Python code", span,
                            help=f"rename it, for example to '{name.strip('_') or 'v'}_'")
        self._claim_identifier(name, span)

    def _claim_identifier(self, name: str, span: Span) -> None:
        """Two spec names may not become one Python identifier ('h1.W' and 'h1_W')."""
        ident = identifier(name)
        other = self.idents.get(ident)
        if other is not None and other != name:
            err = SpecError(f"'{name}' and '{other}' would both be '{ident}' in the generated code", span,
                            help="rename one of them")
            if other in self.decl_span:
                err.notes = ((f"'{other}' is defined here", self.decl_span[other]),)
            raise err
        self.idents[ident] = name

    def _type(self, t: ast.Type, allow_symbolic: bool) -> tuple:
        dims = []
        for d in t.dims:
            if isinstance(d.value, int) and d.value <= 0:
                raise SpecError(f"dimension sizes must be positive, got {d.value}", d.span)
            if isinstance(d.value, str):
                if not allow_symbolic:
                    raise SpecError(f"parameter shapes must be concrete; '{d.value}' is symbolic", d.span,
                                    help="write the size as a number")
                self._check_dim_name(d)
            dims.append(d.value)
        for d in t.dims:
            if isinstance(d.value, str) and d.value not in self.dims:
                self.dims.append(d.value)
        return tuple(dims)

    def _check_dim_name(self, d: ast.Dim) -> None:
        """A symbolic dimension becomes a Python variable in generated code: no clashes."""
        name = d.value
        if name in KEYWORDS:
            raise SpecError(f"'{name}' is a keyword and cannot be used as a dimension", d.span)
        if is_reserved(name):
            raise SpecError(f"'{name}' is reserved in generated Python code and cannot name a dimension",
                            d.span, help=f"rename it, for example to '{name.strip('_').upper() or 'N'}'")
        clash = self.value_statements.get(name)
        if clash is not None:
            err = SpecError(f"dimension '{name}' has the same name as a value", d.span,
                            help="dimensions and values need different names; sizes are usually upper case (B, N)")
            err.notes = ((f"'{clash.name}' is defined here", clash.span),)
            raise err

    @functools.cached_property
    def value_statements(self) -> dict[str, ast.Statement]:
        """Python identifier -> the first input, param or definition that names it."""
        found: dict[str, ast.Statement] = {}
        for st in self.spec.statements:
            if isinstance(st, (ast.InputStmt, ast.ParamStmt, ast.DefineStmt)):
                found.setdefault(identifier(st.name), st)
        return found

    def _declare_input(self, st: ast.InputStmt) -> None:
        self._check_new_name(st.name, st.name_span)
        var = Var(identifier(st.name), self._type(st.type, True), st.type.kind)
        self.inputs.append(InputDecl(var, None, st.span.line))
        self.env[st.name] = var
        self.decl_span[st.name] = st.span

    def _declare_param(self, st: ast.ParamStmt) -> None:
        self._check_new_name(st.name, st.name_span)
        if st.type.kind != "float":
            raise SpecError("parameters must be float", st.type.span)
        shape = self._type(st.type, False)
        init = self._init(st.init, shape) if st.init is not None else (
            ("glorot_uniform", ()) if len(shape) >= 2 else ("zeros", ()))
        var = Var(identifier(st.name), shape, "float")
        self.params.append(ParamDecl(st.name, var, init, st.span.line))
        self.env[st.name] = var
        self.decl_span[st.name] = st.span

    def _init(self, e: ast.Expr, shape: tuple | None) -> tuple[str, tuple]:
        """A parameter's initializer; `shape` None: a layer's weights (shape decided later)."""
        if isinstance(e, (ast.Num, ast.Neg, ast.ListLit)):
            value, got = self._literal(e)
            if got != shape and got != ():  # a single number fills the whole parameter
                raise SpecError(f"initial value has shape {fmt_shape(got)}, but the parameter is {fmt_shape(shape)}",
                                e.span, help="give one number, or a nested list of exactly the parameter's shape")
            return ("value", (value,))
        name = e.id if isinstance(e, ast.Name) else e.func if isinstance(e, ast.Call) else None
        if name not in INITIALIZERS:
            raise SpecError(f"unknown initializer '{name}'" if name else "expected a number, a list or an initializer",
                            e.span, help=did_you_mean(name, INITIALIZERS) if name else
                            "use a number, a list such as [[1, 2], [3, 4]], or one of " + ", ".join(INITIALIZERS))
        arg_names = INIT_ARGS[name]
        if isinstance(e, ast.Name):
            if arg_names:
                raise SpecError(f"initializer '{name}' needs arguments: {name}({', '.join(arg_names)})", e.span)
            args: tuple = ()
        else:
            args = self._init_args(e, arg_names)
        if name in ("glorot_uniform", "he_normal") and shape == ():
            raise SpecError(f"'{name}' needs a parameter with at least one axis", e.span,
                            help="use a number or normal(std) for a scalar parameter")
        if name == "normal" and args[0] < 0:
            raise SpecError(f"normal(std): std must not be negative, got {args[0]:g}", e.args[0].span
                            if e.args else e.span)
        if name == "uniform" and args[0] > args[1]:
            raise SpecError(f"uniform(low, high): low {args[0]:g} is greater than high {args[1]:g}", e.span)
        return (name, args)

    def _init_args(self, call: ast.Call, names: tuple[str, ...]) -> tuple[float, ...]:
        sig = f"{call.func}({', '.join(names)})"
        given = _match_args(call, list(names), sig, True)
        missing = [n for n in names if n not in given]
        if missing:
            raise SpecError(f"{call.func}() is missing argument '{missing[0]}'", call.span, help=f"signature: {sig}")
        return tuple(self._number(given[n]) for n in names)

    def _literal(self, e: ast.Expr) -> tuple[Any, tuple]:
        """A number or nested list literal and its shape; ragged lists are located by row.

        Iterative over the rows of each level, so a long list costs no recursion.
        """
        if not isinstance(e, ast.ListLit):
            return self._number(e), ()
        if not e.items:
            raise SpecError("empty list", e.span, help="a list literal needs at least one number")
        rows = [self._literal(item) for item in e.items]
        first = rows[0][1]
        for item, (_, shape) in zip(e.items, rows):
            if shape != first:
                raise SpecError(f"ragged list: this row has shape {fmt_shape(shape)}, the first has {fmt_shape(first)}",
                                item.span, help="every row of a list literal has the same length")
        return [v for v, _ in rows], (len(rows),) + first

    def _number(self, e: ast.Expr, what: str | None = None) -> float:
        if isinstance(e, ast.Num):
            return e.value
        if isinstance(e, ast.Neg) and isinstance(e.operand, ast.Num):
            return -e.operand.value
        text = self._source_text(e.span, 20)
        got = f", got '{text}'" if text else ""
        help = "write a constant such as 0.5 or -1e-3" if isinstance(e, (ast.Name, ast.Call)) else None
        if what and what.endswith("'axis'") and isinstance(e, ast.ListLit):
            help = ONE_AXIS
        raise SpecError(f"{what} must be a number{got}" if what else f"expected a number{got}", e.span, help=help)

    def _define(self, st: ast.DefineStmt) -> None:
        self._check_new_name(st.name, st.name_span)
        self.defined.add(st.name)
        self.env[st.name] = self._lower_statement(st, st.expr, identifier(st.name))
        self.decl_span[st.name] = st.span

    def _loss(self, st: ast.LossStmt) -> Var:
        value = self._lower_statement(st, st.expr, "loss")
        if value.shape != ():
            raise SpecError(f"the loss must be a scalar, but this expression has shape {fmt_shape(value.shape)}",
                            st.expr.span, help="reduce it, e.g. with mean(...) or sum(...)")
        if not isinstance(value, Var):
            raise SpecError("the loss is a constant; it must depend on parameters or inputs", st.expr.span)
        return value

    def _lower_statement(self, st, expr: ast.Expr, name: str) -> Atom:
        self.current, self.creating_call = st, None
        b = Builder(self.namer, st.span.line, named=self.defs)
        value = self._expr(b, expr)
        eqns = b.eqns
        if eqns and isinstance(value, Var) and eqns[-1].out == value:
            named = Var(self.namer.claim(name), value.shape, value.dtype)
            last = eqns[-1]
            inputs = last.inputs
            pre = inputs[0] if len(eqns) > 1 and ACTIVATIONS.get(last.prim) else None
            if isinstance(pre, Var) and pre.temp and eqns[-2].out == pre:
                # the pre-activation gets a readable name, so its adjoint reads `d_h1_pre`
                pre_named = Var(self.namer.fresh(f"{name}_pre"), pre.shape, pre.dtype, temp=True)
                prev = eqns[-2]
                eqns[-2] = Eqn(prev.prim, prev.inputs, pre_named, prev.params, prev.line)
                inputs = (pre_named,) + inputs[1:]
            eqns[-1] = Eqn(last.prim, inputs, named, last.params, last.line)
            value = named
        self.eqns.extend(eqns)
        self.defs.update((e.out.name, e) for e in eqns)
        return value

    # -- expressions --
    def _expr(self, b: Builder, e: ast.Expr) -> Atom:
        try:
            return self._expr_inner(b, e)
        except ShapeError as exc:
            raise SpecError(str(exc), e.span) from None

    def _expr_inner(self, b: Builder, e: ast.Expr) -> Atom:
        if isinstance(e, ast.Num):
            return Lit(e.value)
        if isinstance(e, ast.Name):
            return self._name(e)
        if isinstance(e, ast.Neg):
            return b.neg(self._float(b, e.operand))
        if isinstance(e, ast.BinOp) and e.op != "^":
            # `a + b + c + ...` nests to the left: walk that spine with a loop, so chains of
            # any length need no recursion (the parser bounds every other kind of nesting)
            spine = []
            while isinstance(e, ast.BinOp) and e.op != "^":
                spine.append(e)
                e = e.left
            acc = self._float(b, e)
            for node in reversed(spine):
                acc = self._binop(b, node, acc, self._float(b, node.right))
            return acc
        if isinstance(e, ast.BinOp):
            return self._binop(b, e, self._float(b, e.left), self._float(b, e.right))
        if isinstance(e, ast.Call):
            return self._call(b, e)
        if isinstance(e, ast.ListLit):
            raise SpecError("list literals are only allowed as initial values of parameters", e.span)
        raise AssertionError(e)

    def _binop(self, b: Builder, e: ast.BinOp, left: Atom, right: Atom) -> Atom:
        if e.op == "^" and isinstance(right, Lit) and right.value == 2.0:
            return b.square(left)
        try:
            out = b.emit(_BINOPS[e.op], left, right)
        except ShapeError as exc:
            raise self._shape_error(exc, e, left, right) from None
        except (OverflowError, ZeroDivisionError) as exc:  # constant folding, e.g. 3 ^ 1e308
            reason = "it overflows" if isinstance(exc, OverflowError) else str(exc)
            raise SpecError(f"this constant expression cannot be computed: {reason}", e.span) from None
        if isinstance(out, Lit) and not (isinstance(out.value, float) and math.isfinite(out.value)):
            what = "has no real value" if isinstance(out.value, complex) else "is not a finite number"
            raise SpecError(f"this constant expression {what}", e.span,
                            help="constants must be finite real numbers")
        return out

    def _shape_error(self, exc: ShapeError, e: ast.BinOp, left: Atom, right: Atom) -> SpecError:
        """`x @ W: [B, 4] @ [3, 2]: ...`, with a note saying where each operand's shape came from."""
        text = self._source_text(e.span)
        err = SpecError(f"{text}: {exc}" if text else str(exc), e.span)
        err.notes = self._operand_notes((e.left, e.right), (left, right))
        return err

    def _operand_notes(self, exprs, atoms) -> tuple:
        """Where each operand's shape came from: its declaration, or the subexpression itself."""
        notes = []
        for side, atom in zip(exprs, atoms):
            if not hasattr(atom, "shape"):
                continue
            if isinstance(side, ast.Name) and side.id in self.decl_span:
                verb = "created" if "." in side.id else "defined" if side.id in self.defined else "declared"
                notes.append((f"'{side.id}' is {fmt_shape(atom.shape)}, {verb} here", self.decl_span[side.id]))
            elif not isinstance(side, (ast.Name, ast.Num)) and not isinstance(atom, Lit):  # constants need no note
                side_text = self._source_text(side.span)
                if side_text:
                    notes.append((f"'{side_text}' is {fmt_shape(atom.shape)}", side.span))
        return tuple(notes)

    def _source_text(self, span: Span, limit: int = 40) -> str | None:
        """The spec text under a one-line span, if short enough to quote in a message."""
        if span.line != span.end_line or span.end_col - span.col > limit:
            return None
        lines = self.lines
        if not 1 <= span.line <= len(lines):
            return None
        return lines[span.line - 1][span.col - 1: span.end_col - 1] or None

    def _name(self, e: ast.Name) -> Atom:
        if e.id in self.env:
            return self.env[e.id]
        if e.id in self.failed or e.id.split(".")[0] in self.failed:
            raise _Silent("")
        if e.id in ("true", "false"):
            raise SpecError(f"'{e.id}' is only allowed as a keyword argument value", e.span)
        if e.id == "loss":
            raise SpecError("'loss' cannot be used in an expression; it is the model's objective", e.span,
                            help="give the shared part its own name and use that")
        if e.id in KEYWORDS:
            raise SpecError(f"'{e.id}' is a keyword, not a value", e.span)
        if e.id in BUILTINS:
            raise SpecError(f"'{e.id}' is a function; call it with arguments", e.span, help=f"write {e.id}(...)")
        if "." in e.id:
            raise self._not_a_parameter(e)
        later = self.first_definition.get(e.id)
        if later is not None:
            raise SpecError(f"'{e.id}' is used before it is defined (on line {later})", e.span,
                            help="move the definition above this line")
        raise SpecError(f"undefined name '{e.id}'", e.span, help=self._suggest(e.id, self.env))

    def _not_a_parameter(self, e: ast.Name) -> SpecError:
        owner = e.id.split(".")[0]
        busy = len(self.errors) > SpecErrors.MAX_REPORTED  # not shown: skip the scan
        known = [] if busy else [p.name for p in self.params if p.name.startswith(owner + ".")]
        return SpecError(f"'{e.id}' is not a parameter" + (
            f"; '{owner}' creates {', '.join(known)}" if known else ""), e.span,
            help=did_you_mean(e.id, known) or (f"'{owner}' must be defined by a layer call such as dense(...)"))

    def _suggest(self, name: str, candidates) -> str | None:
        """did_you_mean, but only while the errors collected so far will all be shown: it costs
        a comparison with every candidate, which a file full of errors must not multiply."""
        if len(self.errors) > SpecErrors.MAX_REPORTED:
            return None
        return did_you_mean(name, candidates)

    @functools.cached_property
    def first_definition(self) -> dict[str, int]:
        """Each name's first defining line (for 'used before it is defined')."""
        lines: dict[str, int] = {}
        for st in self.spec.statements:
            if isinstance(st, (ast.DefineStmt, ast.InputStmt, ast.ParamStmt)):
                lines.setdefault(st.name, st.span.line)
        return lines

    def _float(self, b: Builder, e: ast.Expr) -> Atom:
        atom = self._expr(b, e)
        if atom.dtype != "float":
            raise SpecError(f"'{_text(e)}' is {atom.dtype} (class labels); arithmetic needs float values", e.span,
                            help="int inputs can only be passed as labels to cross_entropy or hinge")
        return atom

    def _call(self, b: Builder, call: ast.Call) -> Atom:
        fn = BUILTINS.get(call.func)
        if fn is None:
            if call.func in INITIALIZERS:
                raise SpecError(f"'{call.func}' is an initializer, not a function", call.func_span)
            raise SpecError(f"unknown function '{call.func}'", call.func_span,
                            help=INSTEAD.get(call.func) or did_you_mean(call.func, BUILTINS))
        if fn.creates_params:
            if not isinstance(self.current, ast.DefineStmt):
                raise SpecError(f"'{call.func}' creates parameters and must be used in a definition 'NAME = ...'",
                                call.func_span, help=f"define it first, e.g. 'h = {call.func}(...)', then use h")
            first = self.creating_call
            if first is not None:
                owner = self.current.name
                err = SpecError(f"'{owner}' already creates parameters with {first.func}(); "
                                "only one parameter-creating call is allowed per definition", call.func_span,
                                help="one layer per definition: 'h = dense(x, 8)', then 'y = dense(h, 2)'")
                err.notes = ((f"the first parameter-creating call in '{owner}'", first.func_span),)
                raise err
            self.creating_call = call
        args = self._bind(b, fn, call)
        try:
            return fn.lower(self, b, args, call)
        except ShapeError as exc:
            text = str(exc)
            err = SpecError(text if text.startswith(call.func) else f"{call.func}: {text}", call.span, exc.help)
            err.notes = self._operand_notes(call.args, [args[p[0]] for p in fn.params[: len(call.args)]])
            raise err from None

    def _bind(self, b: Builder, fn: Builtin, call: ast.Call) -> dict:
        sig = _signature(call.func, fn)
        given = _match_args(call, [p[0] for p in fn.params], sig, all(p[2] is REQUIRED for p in fn.params))
        out = {}
        for name, kind, default in fn.params:
            if name not in given:
                if default is REQUIRED:
                    raise SpecError(f"{call.func}() is missing argument '{name}'", call.span, help=f"signature: {sig}")
                out[name] = default
                continue
            out[name] = self._arg(b, call.func, name, kind, given[name])
        return out

    def _arg(self, b: Builder, func: str, name: str, kind: str, e: ast.Expr):
        if kind == ARRAY:
            return self._float(b, e)
        if kind == LABELS:
            return self._expr(b, e)
        if kind == BOOL:
            if isinstance(e, ast.Name) and e.id in ("true", "false"):
                return e.id == "true"
            raise SpecError(f"{func}(): '{name}' must be true or false", e.span)
        if kind == INIT:
            if isinstance(e, (ast.Num, ast.Neg, ast.ListLit)):
                raise SpecError(f"{func}(): '{name}' must be an initializer such as he_normal or normal(0.1)", e.span,
                                help="initializers: " + ", ".join(INIT_ARGS))
            return self._init(e, None)
        if kind in (INT, AXIS) and not isinstance(e, (ast.Num, ast.Neg, ast.ListLit)):
            text = self._source_text(e.span, 20)
            if kind == AXIS:
                help = ("write the axis as a number (axis=1, axis=-1); leave axis out to reduce over "
                        "every element" + (" (there is no None)" if text == "None" else ""))
            else:
                help = f"write the number itself ({func}(x, 3)): a name in a spec stands for an array"
            raise SpecError(f"{func}(): '{name}' must be an integer written as a number, got '{text}'",
                            e.span, help=help)
        value = self._number(e, f"{func}(): '{name}'")
        if kind in (INT, AXIS):
            if value != int(value):
                raise SpecError(f"{func}(): '{name}' must be an integer, got {value:g}", e.span)
            if abs(value) > MAX_SIZE:
                raise SpecError(f"{func}(): '{name}' is too large ({value:g})", e.span,
                                help=f"sizes must be at most {MAX_SIZE}")
            return int(value)
        return value

    def _optimizer(self, st: ast.OptimizerStmt):
        opt = OPTIMIZERS.get(st.name)
        if opt is None:
            raise SpecError(f"unknown optimizer '{st.name}'", st.name_span,
                            help=did_you_mean(st.name, OPTIMIZERS) or "available: " + ", ".join(sorted(OPTIMIZERS)))
        hyper = optim.settings(st.name)
        given = set()
        for kw in st.kwargs:
            if kw.name not in hyper:
                raise SpecError(f"{st.name}() has no setting '{kw.name}'", kw.span,
                                help=did_you_mean(kw.name, hyper) or "settings: " + ", ".join(hyper))
            if kw.name in given:
                raise SpecError(f"{st.name}() got setting '{kw.name}' twice", kw.span)
            given.add(kw.name)
            hyper[kw.name] = self._setting(st.name, kw)
        problem = optim.check_settings(hyper)
        if problem:
            raise SpecError(f"{st.name}(): {problem}", st.span)
        self.optimizer_span = st.span
        return (st.name, tuple(hyper.items()))

    def _setting(self, opt: str, kw: ast.Kwarg):
        kind = optim.setting_kind(kw.name)
        if kind == "bool":
            return self._arg(None, opt, kw.name, BOOL, kw.value)
        if kind == "choice":
            choices = optim.CHOICES[kw.name]
            name = kw.value.id if isinstance(kw.value, ast.Name) else None
            if name not in choices:
                raise SpecError(f"{opt}(): '{kw.name}' must be one of {', '.join(choices)}", kw.value.span,
                                help=did_you_mean(name, choices) if name else None)
            return name
        value = self._arg(None, opt, kw.name, INT if kind == "int" else NUM, kw.value)
        problem = optim.check_value(kw.name, value)
        if problem:
            raise SpecError(f"{opt}(): {problem}", kw.value.span)
        return value

    def _check_optimizer(self, prog: Program) -> None:
        """Optimizers with requirements on the model (the perceptron rule) check them here."""
        opt = OPTIMIZERS[prog.optimizer[0]]
        if opt.direction is not None:
            found = opt.direction(prog, Builder(Namer({e.out.name for e in prog.eqns})))
            if isinstance(found, str):
                raise SpecErrors([SpecError(found, self.optimizer_span)])

    def _outputs(self, outputs) -> tuple[Var, ...]:
        if outputs is None:
            return ()
        if outputs[0] == "default":
            atom = self.env.get(outputs[1])
            return (atom,) if isinstance(atom, Var) else ()
        result = []
        for n in outputs[1]:
            atom = self.env.get(n.id)
            if atom is None and (n.id in self.failed or n.id.split(".")[0] in self.failed):  # h.W of a failed h
                continue
            if atom is None and n.id == "loss":
                self.error("'loss' cannot be an output: loss() and value_and_grad() return it", n.span,
                           help="'output' lists the other values forward() should return")
            elif atom is None and "." in n.id:
                self.errors.append(self._not_a_parameter(n))
            elif atom is None:
                self.error(f"undefined name '{n.id}' in output", n.span, self._suggest(n.id, self.env))
            elif not isinstance(atom, Var):
                self.error(f"output '{n.id}' is a constant", n.span)
            else:
                result.append(atom)
        return tuple(result)

    def _wrt(self, st: ast.NameListStmt | None) -> tuple[str, ...]:
        if st is None:
            return ()
        names = []
        input_names = {d.var.name: d for d in self.inputs}
        first: dict[str, Span] = {}
        for n in st.names:
            if n.id in first:  # WRT would name it twice, and nnc check report its gradient twice
                err = SpecError(f"'{n.id}' is named twice in wrt", n.span, help="name each input once")
                err.notes = ((f"'{n.id}' is first named here", first[n.id]),)
                self.errors.append(err)
                continue
            first[n.id] = n.span
            if n.id in input_names and input_names[n.id].var.dtype == "float":
                names.append(n.id)
            elif n.id in input_names:
                self.error(f"'{n.id}' is an int input; gradients are only defined for float inputs", n.span)
            elif n.id in self.env:
                self.error(f"'wrt' names inputs; '{n.id}' is not an input", n.span,
                           help="parameters always get gradients")
            elif n.id not in self.failed:
                self.error(f"undefined input '{n.id}' in wrt", n.span, self._suggest(n.id, input_names))
        return tuple(names)


def _match_args(call: ast.Call, names: list[str], sig: str, all_required: bool) -> dict[str, ast.Expr]:
    """Pair a call's positional and keyword arguments with parameter `names` (Python's rules)."""
    if len(call.args) > len(names):
        most = "" if all_required else "at most "
        raise SpecError(f"{call.func}() takes {most}{_count(len(names), 'argument')}, got {len(call.args)}",
                        call.span, help=f"signature: {sig}")
    given = dict(zip(names, call.args))
    if call.kwargs and call.args and call.args[-1].span > call.kwargs[0].span:
        late = next(a for a in call.args if a.span > call.kwargs[0].span)
        raise SpecError(f"{call.func}(): a positional argument follows a keyword argument", late.span,
                        help=f"signature: {sig}")
    for kw in call.kwargs:
        if kw.name not in names:
            raise SpecError(f"{call.func}() has no argument '{kw.name}'", kw.span,
                            help=KEYWORD_INSTEAD.get(kw.name) or did_you_mean(kw.name, names) or f"signature: {sig}")
        if kw.name in given:
            raise SpecError(f"{call.func}() got argument '{kw.name}' twice", kw.span)
        given[kw.name] = kw.value
    return given


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _signature(name: str, fn: Builtin) -> str:
    parts = [p[0] if p[2] is REQUIRED else f"{p[0]}={_show_default(p[2])}" for p in fn.params]
    return f"{name}({', '.join(parts)})"


def _show_default(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "..." if v is None else str(v)


def _text(e: ast.Expr) -> str:
    return e.id if isinstance(e, ast.Name) else "this value"


def _source_name(path: str) -> str:
    """The spec's file name as generated code quotes it: no folders, no characters that could
    end a string or a comment (a file may be called anything; generated code must stay valid).
    Folders are split as this platform splits them: a backslash separates them on Windows, and
    is a character of the name elsewhere (back\\slash.nn is back_slash.nn)."""
    name = os.path.basename(path)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name) or "spec"


class _Silent(SpecError):
    """A consequence of an error already reported (a use of a name whose definition failed)."""


def lower(spec: ast.Spec) -> Program:
    """Lower a parsed spec to a forward IR Program; raises SpecErrors listing every problem."""
    return _Lowering(spec).run()
