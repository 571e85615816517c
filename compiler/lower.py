"""AST -> IR: resolve names, check types and shapes, lower layers and losses to primitives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import optim
from .errors import Span, SpecError, SpecErrors, did_you_mean
from .ir.builder import Builder
from .ir.core import Atom, Eqn, InputDecl, Lit, ParamDecl, Program, Size, Var
from .ir.naming import Namer, identifier, is_reserved
from .optim import OPTIMIZERS
from .primitives import ShapeError
from .primitives.core import fmt_shape, normalize_axis
from .syntax import ast

INITIALIZERS = {  # name -> number of numeric arguments
    "zeros": 0, "ones": 0, "glorot_uniform": 0, "he_normal": 0,
    "constant": 1, "normal": 1, "uniform": 2,
}
_ARRAY, _LABELS, _NUM, _INT, _BOOL, _INIT, _AXIS = "array", "labels", "num", "int", "bool", "init", "axis"
_NONE = object()  # "no default": the argument is required


@dataclass(frozen=True)
class Builtin:
    params: tuple[tuple[str, str, Any], ...]  # (name, kind, default)
    lower: Callable[..., Atom]  # (lowering, b, args: dict, call) -> atom
    creates_params: bool = False


BUILTINS: dict[str, Builtin] = {}


def builtin(name: str, *params: tuple[str, str, Any], creates_params: bool = False):
    def register(fn):
        BUILTINS[name] = Builtin(tuple(params), fn, creates_params)
        return fn

    return register


def _x(name="x"):
    return (name, _ARRAY, _NONE)


# ---- activations and math: one primitive each ----------------------------------------------

_UNARY = {
    "sigmoid": "sigmoid", "tanh": "tanh", "arctan": "arctan", "relu": "relu", "step": "step",
    "sign": "sign", "softplus": "softplus", "silu": "silu", "gelu": "gelu", "exp": "exp",
    "log": "log", "sqrt": "sqrt", "abs": "abs", "sin": "sin", "cos": "cos",
}
for _fn, _prim in _UNARY.items():
    builtin(_fn, _x())(lambda lw, b, a, call, _p=_prim: b.emit(_p, a["x"]))

builtin("identity", _x())(lambda lw, b, a, call: a["x"])
builtin("leaky_relu", _x(), ("alpha", _NUM, 0.01))(
    lambda lw, b, a, call: b.leaky_relu(a["x"], alpha=a["alpha"]))
builtin("elu", _x(), ("alpha", _NUM, 1.0))(lambda lw, b, a, call: b.elu(a["x"], alpha=a["alpha"]))
builtin("maximum", _x("a"), _x("b"))(lambda lw, b, a, call: b.maximum(a["a"], a["b"]))
builtin("minimum", _x("a"), _x("b"))(lambda lw, b, a, call: b.minimum(a["a"], a["b"]))
builtin("transpose", _x())(lambda lw, b, a, call: b.transpose(a["x"]))


@builtin("softmax", _x(), ("axis", _AXIS, -1))
def _softmax(lw, b, a, call):
    return b.softmax(a["x"], axis=a["axis"])


@builtin("log_softmax", _x(), ("axis", _AXIS, -1))
def _log_softmax(lw, b, a, call):
    return b.log_softmax(a["x"], axis=a["axis"])


def _reduce_axes(x: Atom, axis) -> tuple[int, ...] | None:
    return None if axis is None else (normalize_axis(axis, len(x.shape)),)


@builtin("sum", _x(), ("axis", _AXIS, None))
def _sum(lw, b, a, call):
    return b.sum(a["x"], axes=_reduce_axes(a["x"], a["axis"]), keepdims=False)


@builtin("mean", _x(), ("axis", _AXIS, None))
def _mean(lw, b, a, call):
    x = a["x"]
    axes = _reduce_axes(x, a["axis"])
    count = x.shape if axes is None else tuple(x.shape[i] for i in axes)
    return b.div(b.sum(x, axes=axes, keepdims=False), lw.size(count))


@builtin("flatten", _x())
def _flatten(lw, b, a, call):
    x = a["x"]
    if len(x.shape) < 2:
        raise ShapeError(f"flatten needs at least 2 axes, got {fmt_shape(x.shape)}")
    rest = x.shape[1:]
    if not all(isinstance(d, int) for d in rest):
        raise ShapeError(f"flatten needs concrete sizes after the first axis, got {fmt_shape(x.shape)}")
    n = 1
    for d in rest:
        n *= d
    return b.reshape(x, shape=(x.shape[0], n))


# ---- layers --------------------------------------------------------------------------------

def _features(x: Atom, fn: str) -> int:
    if len(x.shape) < 1 or not isinstance(x.shape[-1], int):
        raise ShapeError(f"{fn} needs a concrete feature size on the last axis, got {fmt_shape(x.shape)}")
    return x.shape[-1]


@builtin("dense", _x(), ("units", _INT, _NONE), ("bias", _BOOL, True), ("init", _INIT, None),
         creates_params=True)
def _dense(lw, b, a, call):
    x, units = a["x"], a["units"]
    if units <= 0:
        raise SpecError(f"dense: units must be positive, got {units}", call.span)
    n_in = _features(x, "dense")
    w = lw.new_param("W", (n_in, units), a["init"] or ("glorot_uniform", ()), call)
    h = b.matmul(x, w)
    if a["bias"]:
        h = b.add(h, lw.new_param("b", (units,), ("zeros", ()), call))
    return h


@builtin("prelu", _x(), creates_params=True)
def _prelu(lw, b, a, call):
    x = a["x"]
    alpha = lw.new_param("alpha", (_features(x, "prelu"),), ("constant", (0.25,)), call)
    return b.prelu(x, alpha)


# ---- losses (scalar) -------------------------------------------------------------------------

@builtin("mse", _x("pred"), _x("target"))
def _mse(lw, b, a, call):
    diff = b.emit("sub", a["pred"], a["target"], hint="residual")
    return b.div(b.sum(b.square(diff), axes=None, keepdims=False), lw.size(diff.shape))


@builtin("sse", _x("pred"), _x("target"))
def _sse(lw, b, a, call):
    diff = b.emit("sub", a["target"], a["pred"], hint="residual")
    return b.mul(0.5, b.sum(b.square(diff), axes=None, keepdims=False))


@builtin("l2", _x())
def _l2(lw, b, a, call):
    return b.sum(b.square(a["x"]), axes=None, keepdims=False)


def _class_targets(lw, b, logits: Atom, labels: Atom, call) -> Atom:
    """Labels as float rows: one-hot of int class indices, or given probabilities."""
    if labels.dtype != "int":
        if labels.shape != logits.shape:
            raise ShapeError(f"targets {fmt_shape(labels.shape)} do not match scores {fmt_shape(logits.shape)}")
        return labels
    if len(logits.shape) != 2 or labels.shape != logits.shape[:1]:
        raise ShapeError(f"labels {fmt_shape(labels.shape)} do not match scores {fmt_shape(logits.shape)}; "
                         "expected scores [N, C] and int labels [N]")
    classes = logits.shape[1]
    if not isinstance(classes, int):
        raise ShapeError(f"the number of classes must be concrete, got {fmt_shape(logits.shape)}")
    lw.note_classes(labels, classes)
    return b.emit("onehot", labels, logits, classes=classes, hint=f"onehot_{labels.name}")


@builtin("cross_entropy", _x("logits"), ("labels", _LABELS, _NONE))
def _cross_entropy(lw, b, a, call):
    logits = a["logits"]
    target = _class_targets(lw, b, logits, a["labels"], call)
    logp = b.emit("log_softmax", logits, axis=-1, hint=f"logp_{logits.name}" if isinstance(logits, Var) else None)
    return b.nll(logp, target)


@builtin("bce", _x("logits"), _x("targets"))
def _bce(lw, b, a, call):
    # -[t log s(z) + (1 - t) log(1 - s(z))] = softplus(z) - t z, stable for any z
    z, t = a["logits"], a["targets"]
    per = b.sub(b.softplus(z), b.mul(t, z))
    return b.div(b.sum(per, axes=None, keepdims=False), lw.size(per.shape))


@builtin("hinge", _x("scores"), ("labels", _LABELS, _NONE), ("margin", _NUM, 1.0))
def _hinge(lw, b, a, call):
    # L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + margin); mean over the batch
    s = a["scores"]
    onehot = _class_targets(lw, b, s, a["labels"], call)
    correct = b.emit("sum", b.mul(onehot, s), axes=(1,), keepdims=True, hint="correct_score")
    margins = b.emit("relu", b.add(b.sub(s, correct), a["margin"]), hint="margins")
    wrong = b.mul(margins, b.emit("sub", 1.0, onehot, hint="other_classes"))
    return b.div(b.sum(wrong, axes=None, keepdims=False), lw.size(s.shape[:1]))


_ACTIVATION = {p: True for p in (*_UNARY.values(), "leaky_relu", "elu", "prelu", "softmax", "log_softmax")}
_BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul", "^": "pow"}
_KEYWORDS = ("model", "input", "param", "loss", "output", "wrt", "optimizer", "float", "int")


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
        self.classes: dict[str, int] = {}
        self.dims: list[str] = []
        taken = {identifier(n) for n in self._all_names()}
        self.namer = Namer(taken)
        self.current: ast.DefineStmt | ast.LossStmt | None = None
        self.created: list[str] = []
        self.failed: set[str] = set()

    def _all_names(self):
        for st in self.spec.statements:
            if isinstance(st, (ast.InputStmt, ast.ParamStmt, ast.DefineStmt)):
                yield st.name

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
        if self.created and self.created[0].split(".")[0] == owner and name in self.created:
            raise SpecError(f"only one parameter-creating call is allowed per definition ('{owner}')",
                            call.span, help="give each layer its own definition")
        self.created.append(name)
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
        if not sts or not isinstance(sts[0], ast.ModelStmt):
            where = sts[0].span if sts else Span.point(1, 1)
            self.error("a spec must start with 'model NAME'", where, help="add a first line such as 'model mlp'")
        loss_var = None
        outputs, wrt, opt = None, None, None
        last_def: str | None = None
        for st in sts:
            try:
                if isinstance(st, ast.ModelStmt):
                    if model_name is not None or st is not sts[0]:
                        self.error("'model' must be the first statement and appear once", st.span)
                    model_name = st.name
                elif isinstance(st, ast.InputStmt):
                    self._declare_input(st)
                elif isinstance(st, ast.ParamStmt):
                    self._declare_param(st)
                elif isinstance(st, ast.DefineStmt):
                    self._define(st)
                    last_def = st.name
                elif isinstance(st, ast.LossStmt):
                    if loss_var is not None:
                        self.error("the loss is defined twice; a model has exactly one 'loss'", st.span)
                        continue
                    loss_var = self._loss(st)
                    if outputs is None and last_def is not None:
                        outputs = ("default", last_def, st.span)
                elif isinstance(st, ast.NameListStmt) and st.keyword == "output":
                    outputs = ("given", st.names, st.span)
                elif isinstance(st, ast.NameListStmt):
                    wrt = st
                elif isinstance(st, ast.OptimizerStmt):
                    if opt is not None:
                        self.error("the optimizer is given twice", st.span)
                    opt = self._optimizer(st)
            except SpecError as err:
                if not isinstance(err, _Silent):
                    self.errors.append(err)
                if isinstance(st, (ast.DefineStmt, ast.InputStmt, ast.ParamStmt)) and st.name not in self.env:
                    self.failed.add(st.name)  # later uses are not reported again
        if loss_var is None and not any(isinstance(s, ast.LossStmt) for s in sts):
            self.error("the spec defines no loss", Span.point(len(self.spec.source.splitlines()) or 1, 1),
                       help="add a line such as 'loss = mse(pred, y)'")
        out_vars = self._outputs(outputs)
        wrt_names = self._wrt(wrt)
        if self.errors:
            raise SpecErrors(self.errors)
        inputs = tuple(InputDecl(d.var, self.classes.get(d.var.name), d.line) for d in self.inputs)
        prog = Program(
            name=model_name or "model", source_name=self.spec.path.rsplit("/", 1)[-1],
            source_lines=tuple(self.spec.source.splitlines()), inputs=inputs, params=tuple(self.params),
            eqns=tuple(self.eqns), loss=loss_var, outputs=out_vars, wrt=wrt_names,
            optimizer=opt or ("sgd", tuple(optim.settings("sgd").items())), dims=tuple(self.dims),
        )
        if opt is not None:
            self._check_optimizer(prog)
        return prog

    def _check_new_name(self, name: str, span: Span) -> None:
        if name in self.env:
            prev = self.decl_span.get(name)
            err = SpecError(f"'{name}' is already defined", span, help="each name is defined once; pick a new name")
            if prev:
                err.notes = ((f"'{name}' was first defined here", prev),)
            raise err
        if is_reserved(name):
            raise SpecError(f"'{name}' is reserved in generated Python code", span,
                            help=f"rename it, for example to '{name.strip('_')}_' ")

    def _type(self, t: ast.Type, allow_symbolic: bool) -> tuple:
        dims = []
        for d in t.dims:
            if isinstance(d.value, int) and d.value <= 0:
                raise SpecError(f"dimension sizes must be positive, got {d.value}", d.span)
            if isinstance(d.value, str):
                if not allow_symbolic:
                    raise SpecError(f"parameter shapes must be concrete; '{d.value}' is symbolic", d.span,
                                    help="write the size as a number")
                if d.value not in self.dims:
                    self.dims.append(d.value)
            dims.append(d.value)
        return tuple(dims)

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

    def _init(self, e: ast.Expr, shape: tuple) -> tuple[str, tuple]:
        if isinstance(e, (ast.Num, ast.Neg)) or (isinstance(e, ast.ListLit)):
            value = self._literal(e)
            got = _literal_shape(value, e)
            if got != shape and not (got == () and True):
                raise SpecError(f"initial value has shape {fmt_shape(got)}, but the parameter is {fmt_shape(shape)}",
                                e.span)
            return ("value", (value,))
        if isinstance(e, ast.Name) and e.id in INITIALIZERS:
            if INITIALIZERS[e.id]:
                raise SpecError(f"initializer '{e.id}' takes {INITIALIZERS[e.id]} argument(s)", e.span)
            return (e.id, ())
        if isinstance(e, ast.Call) and e.func in INITIALIZERS:
            if len(e.args) != INITIALIZERS[e.func] or e.kwargs:
                raise SpecError(f"initializer '{e.func}' takes {INITIALIZERS[e.func]} number argument(s)", e.span)
            return (e.func, tuple(self._number(a) for a in e.args))
        name = e.id if isinstance(e, ast.Name) else e.func if isinstance(e, ast.Call) else None
        raise SpecError(f"unknown initializer '{name}'" if name else "expected a number, a list or an initializer",
                        e.span, help=did_you_mean(name, INITIALIZERS) if name else
                        "use a number, a list such as [[1, 2], [3, 4]], or one of " + ", ".join(INITIALIZERS))

    def _literal(self, e: ast.Expr):
        if isinstance(e, ast.ListLit):
            if not e.items:
                raise SpecError("empty list", e.span)
            return [self._literal(i) for i in e.items]
        return self._number(e)

    def _number(self, e: ast.Expr) -> float:
        if isinstance(e, ast.Num):
            return e.value
        if isinstance(e, ast.Neg) and isinstance(e.operand, ast.Num):
            return -e.operand.value
        raise SpecError("expected a number", e.span)

    def _define(self, st: ast.DefineStmt) -> None:
        self._check_new_name(st.name, st.name_span)
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
        self.current, self.created = st, []
        b = Builder(self.namer, st.span.line)
        value = self._expr(b, expr)
        eqns = b.eqns
        if eqns and isinstance(value, Var) and eqns[-1].out == value:
            named = Var(self.namer.claim(name), value.shape, value.dtype)
            last = eqns[-1]
            inputs = last.inputs
            pre = inputs[0] if len(eqns) > 1 and _ACTIVATION.get(last.prim) else None
            if isinstance(pre, Var) and pre.temp and eqns[-2].out == pre:
                # the pre-activation gets a readable name, so its adjoint reads `d_h1_pre`
                pre_named = Var(self.namer.fresh(f"{name}_pre"), pre.shape, pre.dtype, temp=True)
                prev = eqns[-2]
                eqns[-2] = Eqn(prev.prim, prev.inputs, pre_named, prev.params, prev.line)
                inputs = (pre_named,) + inputs[1:]
            eqns[-1] = Eqn(last.prim, inputs, named, last.params, last.line)
            value = named
        self.eqns.extend(eqns)
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
        if isinstance(e, ast.BinOp):
            left, right = self._float(b, e.left), self._float(b, e.right)
            if e.op == "^" and isinstance(right, Lit) and right.value == 2.0:
                return b.square(left)
            try:
                return b.emit(_BINOPS[e.op], left, right)
            except ShapeError as exc:
                raise self._shape_error(exc, e) from None
        if isinstance(e, ast.Call):
            return self._call(b, e)
        if isinstance(e, ast.ListLit):
            raise SpecError("list literals are only allowed as initial values of parameters", e.span)
        raise AssertionError(e)

    def _shape_error(self, exc: ShapeError, e: ast.BinOp) -> SpecError:
        err = SpecError(str(exc), e.span)
        notes = []
        for side in (e.left, e.right):
            if isinstance(side, ast.Name) and side.id in self.decl_span:
                atom = self.env[side.id]
                notes.append((f"'{side.id}' is {fmt_shape(atom.shape)}, declared here", self.decl_span[side.id]))
        err.notes = tuple(notes)
        return err

    def _name(self, e: ast.Name) -> Atom:
        if e.id in self.env:
            return self.env[e.id]
        if e.id in self.failed or e.id.split(".")[0] in self.failed:
            raise _Silent("")
        if e.id in ("true", "false"):
            raise SpecError(f"'{e.id}' is only allowed as a keyword argument value", e.span)
        if e.id in BUILTINS:
            raise SpecError(f"'{e.id}' is a function; call it with arguments", e.span, help=f"write {e.id}(...)")
        if "." in e.id:
            owner = e.id.split(".")[0]
            known = [k for k in self.env if k.startswith(owner + ".")]
            raise SpecError(f"'{e.id}' is not a parameter" + (
                f"; '{owner}' creates {', '.join(known)}" if known else ""), e.span,
                help=did_you_mean(e.id, known) or (f"'{owner}' must be defined by a layer call such as dense(...)"))
        later = [st for st in self.spec.statements if isinstance(st, (ast.DefineStmt, ast.InputStmt, ast.ParamStmt))
                 and st.name == e.id]
        if later:
            raise SpecError(f"'{e.id}' is used before it is defined (on line {later[0].span.line})", e.span,
                            help="move the definition above this line")
        raise SpecError(f"undefined name '{e.id}'", e.span, help=did_you_mean(e.id, self.env))

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
                            help=did_you_mean(call.func, BUILTINS))
        if fn.creates_params and not isinstance(self.current, ast.DefineStmt):
            raise SpecError(f"'{call.func}' creates parameters and must be used in a definition 'NAME = ...'",
                            call.func_span)
        args = self._bind(b, fn, call)
        try:
            return fn.lower(self, b, args, call)
        except ShapeError as exc:
            raise SpecError(f"{call.func}: {exc}", call.span) from None

    def _bind(self, b: Builder, fn: Builtin, call: ast.Call) -> dict:
        names = [p[0] for p in fn.params]
        given: dict[str, ast.Expr] = {}
        if len(call.args) > len(fn.params):
            raise SpecError(f"{call.func}() takes at most {len(fn.params)} argument(s), got {len(call.args)}",
                            call.span, help=f"signature: {_signature(call.func, fn)}")
        for p, a in zip(fn.params, call.args):
            given[p[0]] = a
        for kw in call.kwargs:
            if kw.name not in names:
                raise SpecError(f"{call.func}() has no argument '{kw.name}'", kw.span,
                                help=did_you_mean(kw.name, names) or f"signature: {_signature(call.func, fn)}")
            if kw.name in given:
                raise SpecError(f"{call.func}() got argument '{kw.name}' twice", kw.span)
            given[kw.name] = kw.value
        out = {}
        for name, kind, default in fn.params:
            if name not in given:
                if default is _NONE:
                    raise SpecError(f"{call.func}() is missing argument '{name}'", call.span,
                                    help=f"signature: {_signature(call.func, fn)}")
                out[name] = default
                continue
            out[name] = self._arg(b, call.func, name, kind, given[name])
        return out

    def _arg(self, b: Builder, func: str, name: str, kind: str, e: ast.Expr):
        if kind == _ARRAY:
            return self._float(b, e)
        if kind == _LABELS:
            return self._expr(b, e)
        if kind == _BOOL:
            if isinstance(e, ast.Name) and e.id in ("true", "false"):
                return e.id == "true"
            raise SpecError(f"{func}(): '{name}' must be true or false", e.span)
        if kind == _INIT:
            init = self._init(e, ())
            if init[0] == "value":
                raise SpecError(f"{func}(): '{name}' must be an initializer name such as he_normal", e.span)
            return init
        value = self._number(e)
        if kind in (_INT, _AXIS):
            if value != int(value):
                raise SpecError(f"{func}(): '{name}' must be an integer, got {value}", e.span)
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
            return self._arg(None, opt, kw.name, _BOOL, kw.value)
        if kind == "choice":
            choices = optim.CHOICES[kw.name]
            name = kw.value.id if isinstance(kw.value, ast.Name) else None
            if name not in choices:
                raise SpecError(f"{opt}(): '{kw.name}' must be one of {', '.join(choices)}", kw.value.span,
                                help=did_you_mean(name, choices) if name else None)
            return name
        value = self._arg(None, opt, kw.name, _INT if kind == "int" else _NUM, kw.value)
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
            if atom is None and n.id in self.failed:
                continue
            if atom is None:
                self.error(f"undefined name '{n.id}' in output", n.span, did_you_mean(n.id, self.env))
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
        for n in st.names:
            if n.id in input_names and input_names[n.id].var.dtype == "float":
                names.append(n.id)
            elif n.id in input_names:
                self.error(f"'{n.id}' is an int input; gradients are only defined for float inputs", n.span)
            elif n.id in self.env:
                self.error(f"'wrt' names inputs; '{n.id}' is not an input", n.span,
                           help="parameters always get gradients")
            else:
                self.error(f"undefined input '{n.id}' in wrt", n.span, did_you_mean(n.id, input_names))
        return tuple(names)


def _signature(name: str, fn: Builtin) -> str:
    parts = [p[0] if p[2] is _NONE else f"{p[0]}={_show_default(p[2])}" for p in fn.params]
    return f"{name}({', '.join(parts)})"


def _show_default(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "..." if v is None else str(v)


def _text(e: ast.Expr) -> str:
    return e.id if isinstance(e, ast.Name) else "this value"


def _literal_shape(value, e: ast.Expr) -> tuple:
    if not isinstance(value, list):
        return ()
    shapes = {_literal_shape(v, e) for v in value}
    if len(shapes) != 1:
        raise SpecError("ragged list: rows have different lengths", e.span)
    return (len(value),) + shapes.pop()


class _Silent(SpecError):
    """A consequence of an error already reported (a use of a name whose definition failed)."""


def lower(spec: ast.Spec) -> Program:
    """Lower a parsed spec to a forward IR Program; raises SpecErrors listing every problem."""
    return _Lowering(spec).run()
