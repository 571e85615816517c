"""The built-in functions of the spec language: each name's arguments (kinds and
defaults) and how it lowers to primitives.

A built-in's lowering gets the lowering pass `lw` (for parameters, sizes and class
counts), the IR builder `b`, its matched arguments and the call node (for error spans).
Adding a function to the language touches this table only; `lower.py` matches calls
against it and reports argument errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import Span, SpecError
from .ir.builder import Builder
from .ir.core import Atom, Var
from .primitives import ShapeError
from .primitives.core import broadcast_shapes, fmt_shape, normalize_axis
from .syntax import ast

if TYPE_CHECKING:  # the lowering pass imports this table
    from .lower import _Lowering

INIT_ARGS = {  # initializer -> its numeric arguments
    "zeros": (), "ones": (), "glorot_uniform": (), "he_normal": (),
    "constant": ("value",), "normal": ("std",), "uniform": ("low", "high"),
}
INITIALIZERS = {name: len(args) for name, args in INIT_ARGS.items()}  # name -> number of arguments
ARRAY, LABELS, NUM, INT, BOOL, INIT, AXIS = "array", "labels", "num", "int", "bool", "init", "axis"
REQUIRED = object()  # "no default": the argument is required

Param = tuple[str, str, Any]  # a built-in's argument: (name, kind, default)
Args = dict[str, Any]  # matched arguments by name: atoms for arrays and labels, numbers, bools, inits
LowerRule = Callable[["_Lowering", Builder, Args, ast.Call], Atom]  # (lw, b, args, call) -> result


@dataclass(frozen=True)
class Builtin:
    params: tuple[Param, ...]  # (name, kind, default)
    lower: LowerRule  # (lowering, b, args: dict, call) -> atom
    creates_params: bool = False


BUILTINS: dict[str, Builtin] = {}

_CLIP = "clip(x, low, high) is maximum(minimum(x, high), low)"
_SELECT = ("there are no comparisons or conditionals: step(c) is 1 where c >= 0, else 0, so "
           "step(c) * a + (1 - step(c)) * b selects; maximum and minimum select elementwise")
_RESHAPE = "flatten(x) merges every axis after the first; there is no other reshape"
# NumPy and PyTorch names the language spells otherwise, or lacks: the help of "unknown function"
INSTEAD = {
    "max": "maximum(a, b) is elementwise; there is no maximum over an axis",
    "min": "minimum(a, b) is elementwise; there is no minimum over an axis",
    "clip": _CLIP, "clamp": _CLIP, "where": _SELECT, "reshape": _RESHAPE, "view": _RESHAPE,
    "matmul": "write a @ b", "dot": "write a @ b", "pow": "write a ^ b", "square": "write x ^ 2",
    "logsumexp": "log_softmax(x, axis) is x - logsumexp(x) along the axis, computed stably",
}
# keyword arguments of NumPy and PyTorch reductions: the help of "has no argument"
KEYWORD_INSTEAD = {
    "keepdims": "the reduced axis disappears; transpose(transpose(x) - mean(x, axis=1)) subtracts "
                "each row's mean of a [B, N] x, and x @ A with A a [N, N] input of 1/N each broadcasts it",
    "dim": "the axis is given as axis=",
}


def builtin(name: str, *params: Param, creates_params: bool = False) -> Callable[[LowerRule], LowerRule]:
    def register(fn: LowerRule) -> LowerRule:
        BUILTINS[name] = Builtin(tuple(params), fn, creates_params)
        return fn

    return register


def _x(name: str = "x") -> Param:
    return (name, ARRAY, REQUIRED)


# ---- activations and math: one primitive each ----------------------------------------------

_UNARY = {
    "sigmoid": "sigmoid", "tanh": "tanh", "arctan": "arctan", "relu": "relu", "step": "step",
    "sign": "sign", "softplus": "softplus", "silu": "silu", "gelu": "gelu", "exp": "exp",
    "log": "log", "sqrt": "sqrt", "abs": "abs", "sin": "sin", "cos": "cos",
}
for _fn, _prim in _UNARY.items():
    builtin(_fn, _x())(lambda lw, b, a, call, _p=_prim: b.emit(_p, a["x"]))

builtin("identity", _x())(lambda lw, b, a, call: a["x"])
builtin("leaky_relu", _x(), ("alpha", NUM, 0.01))(
    lambda lw, b, a, call: b.leaky_relu(a["x"], alpha=a["alpha"]))
builtin("elu", _x(), ("alpha", NUM, 1.0))(lambda lw, b, a, call: b.elu(a["x"], alpha=a["alpha"]))
builtin("maximum", _x("a"), _x("b"))(lambda lw, b, a, call: b.maximum(a["a"], a["b"]))
builtin("minimum", _x("a"), _x("b"))(lambda lw, b, a, call: b.minimum(a["a"], a["b"]))
builtin("transpose", _x())(lambda lw, b, a, call: b.transpose(a["x"]))


@builtin("softmax", _x(), ("axis", AXIS, -1))
def _softmax(lw: _Lowering, b: Builder, a: Args, call: ast.Call) -> Atom:
    return b.softmax(a["x"], axis=a["axis"])


@builtin("log_softmax", _x(), ("axis", AXIS, -1))
def _log_softmax(lw: _Lowering, b: Builder, a: Args, call: ast.Call) -> Atom:
    return b.log_softmax(a["x"], axis=a["axis"])


def _reduce_axes(x: Atom, axis: int | None) -> tuple[int, ...] | None:
    return None if axis is None else (normalize_axis(axis, len(x.shape)),)


@builtin("sum", _x(), ("axis", AXIS, None))
def _sum(lw: _Lowering, b: Builder, a: Args, call: ast.Call) -> Atom:
    return b.sum(a["x"], axes=_reduce_axes(a["x"], a["axis"]), keepdims=False)


@builtin("mean", _x(), ("axis", AXIS, None))
def _mean(lw: _Lowering, b: Builder, a: Args, call: ast.Call) -> Atom:
    x = a["x"]
    axes = _reduce_axes(x, a["axis"])
    count = x.shape if axes is None else tuple(x.shape[i] for i in axes)
    return b.div(b.sum(x, axes=axes, keepdims=False), lw.size(count))


@builtin("flatten", _x())
def _flatten(lw: _Lowering, b: Builder, a: Args, call: ast.Call) -> Atom:
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


@builtin("dense", _x(), ("units", INT, REQUIRED), ("bias", BOOL, True), ("init", INIT, None),
         creates_params=True)
def _dense(lw: _Lowering, b: Builder, a: Args, call: ast.Call) -> Atom:
    x, units = a["x"], a["units"]
    if units <= 0:
        raise SpecError(f"dense: units must be positive, got {units}", arg_span(call, 1, "units"))
    n_in = _features(x, "dense")
    w = lw.new_param("W", (n_in, units), a["init"] or ("glorot_uniform", ()), call)
    h = b.matmul(x, w)
    if a["bias"]:
        h = b.add(h, lw.new_param("b", (units,), ("zeros", ()), call))
    return h


@builtin("prelu", _x(), creates_params=True)
def _prelu(lw: _Lowering, b: Builder, a: Args, call: ast.Call) -> Atom:
    x = a["x"]
    alpha = lw.new_param("alpha", (_features(x, "prelu"),), ("constant", (0.25,)), call)
    return b.prelu(x, alpha)


# ---- losses (scalar) -------------------------------------------------------------------------

def _paired(pred: Atom, target: Atom, names: tuple[str, str] = ("pred", "target")) -> None:
    """A loss's prediction and target, refused when they broadcast to a shape neither has:
    [B, 1] predictions against [B] targets would compare every prediction with every target
    ([B, B]), and train silently wrong. A target that broadcasts to the prediction's shape
    (a scalar, one row for all), or a prediction to the target's (one value fitted to all), is fine."""
    shape = broadcast_shapes(pred.shape, target.shape)
    if shape in (pred.shape, target.shape):
        return
    p, t = fmt_shape(pred.shape), fmt_shape(target.shape)
    what = (f"{names[0]} {p} and {names[1]} {t} broadcast to {fmt_shape(shape)}, a shape neither has: "
            "every prediction would be compared with every target")
    fix = f"give the {names[0]} and the {names[1]} one shape"
    if len(pred.shape) == 2 and pred.shape[1] == 1 and pred.shape[:1] == target.shape:
        fix = f"declare the {names[1]} float{p}, like the {names[0]}, or pass sum(..., axis=1) of the {names[0]}, which is {t}"
    if len(target.shape) == 2 and target.shape[1] == 1 and target.shape[:1] == pred.shape:
        fix = f"pass sum(..., axis=1) of the {names[1]}, which is {p}, like the {names[0]}"
    raise ShapeError(what, help=fix)


@builtin("mse", _x("pred"), _x("target"))
def _mse(lw: _Lowering, b: Builder, a: Args, call: ast.Call) -> Atom:
    _paired(a["pred"], a["target"])
    diff = b.emit("sub", a["pred"], a["target"], hint="residual")
    return b.div(b.sum(b.square(diff), axes=None, keepdims=False), lw.size(diff.shape))


@builtin("sse", _x("pred"), _x("target"))
def _sse(lw: _Lowering, b: Builder, a: Args, call: ast.Call) -> Atom:
    # sum of 1/2 (target - pred)^2, written with pred - target: its gradient is then the
    # residual itself, with no negation
    _paired(a["pred"], a["target"])
    diff = b.emit("sub", a["pred"], a["target"], hint="residual")
    return b.mul(0.5, b.sum(b.square(diff), axes=None, keepdims=False))


@builtin("l2", _x())
def _l2(lw: _Lowering, b: Builder, a: Args, call: ast.Call) -> Atom:
    return b.sum(b.square(a["x"]), axes=None, keepdims=False)


def _class_targets(lw: _Lowering, b: Builder, logits: Atom, labels: Atom, call: ast.Call) -> Atom:
    """Labels as float rows: one-hot of int class indices, or given probabilities."""
    if labels.dtype != "int":
        if labels.shape != logits.shape:
            raise ShapeError(f"targets {fmt_shape(labels.shape)} do not match scores {fmt_shape(logits.shape)}")
        return labels
    # int labels index the last (class) axis of the scores and have their other axes:
    # [N] for [N, C], [N, T] for [N, T, C] (a class per position of a sequence)
    if len(logits.shape) < 2:
        raise ShapeError(f"int labels need scores with a class axis after the others, [N, C], "
                         f"got scores {fmt_shape(logits.shape)}")
    if labels.shape != logits.shape[:-1]:
        raise ShapeError(f"labels {fmt_shape(labels.shape)} do not match scores {fmt_shape(logits.shape)}; "
                         f"int labels have the scores' shape without the class axis, {fmt_shape(logits.shape[:-1])}")
    classes = logits.shape[-1]
    if not isinstance(classes, int):
        raise ShapeError(f"the number of classes must be concrete, got {fmt_shape(logits.shape)}")
    lw.note_classes(labels, classes)
    return b.emit("onehot", labels, logits, classes=classes, hint=f"onehot_{labels.name}")


@builtin("cross_entropy", _x("logits"), ("labels", LABELS, REQUIRED))
def _cross_entropy(lw: _Lowering, b: Builder, a: Args, call: ast.Call) -> Atom:
    logits = a["logits"]
    target = _class_targets(lw, b, logits, a["labels"], call)
    logp = b.emit("log_softmax", logits, axis=-1, hint=f"logp_{logits.name}" if isinstance(logits, Var) else None)
    return b.nll(logp, target)


@builtin("bce", _x("logits"), _x("targets"))
def _bce(lw: _Lowering, b: Builder, a: Args, call: ast.Call) -> Atom:
    # -[t log s(z) + (1 - t) log(1 - s(z))] = softplus(z) - t z, stable for any z
    z, t = a["logits"], a["targets"]
    _paired(z, t, ("logits", "targets"))
    per = b.sub(b.softplus(z), b.mul(t, z))
    return b.div(b.sum(per, axes=None, keepdims=False), lw.size(per.shape))


@builtin("hinge", _x("scores"), ("labels", LABELS, REQUIRED), ("margin", NUM, 1.0))
def _hinge(lw: _Lowering, b: Builder, a: Args, call: ast.Call) -> Atom:
    # L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + margin); mean over the batch
    s = a["scores"]
    if not s.shape:
        raise ShapeError("the scores need a class axis (the last one), got []")
    onehot = _class_targets(lw, b, s, a["labels"], call)
    # the classes are the last axis and the rows all the others, as for cross_entropy: float
    # targets may be [C] or [N, T, C] (axis 1 summed over T, and dividing by N alone)
    classes = len(s.shape) - 1
    correct = b.emit("sum", b.mul(onehot, s), axes=(classes,), keepdims=True, hint="correct_score")
    margins = b.emit("relu", b.add(b.sub(s, correct), a["margin"]), hint="margins")
    wrong = b.mul(margins, b.emit("sub", 1.0, onehot, hint="other_classes"))
    return b.div(b.sum(wrong, axes=None, keepdims=False), lw.size(s.shape[:-1]))


ACTIVATIONS = {p: True for p in (*_UNARY.values(), "leaky_relu", "elu", "prelu", "softmax", "log_softmax")}


def arg_span(call: ast.Call, index: int, name: str) -> Span:
    """The span of argument `name` (position `index`) of a call, or the call's."""
    if len(call.args) > index:
        return call.args[index].span
    return next((k.span for k in call.kwargs if k.name == name), call.span)
