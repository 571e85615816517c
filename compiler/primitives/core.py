"""Primitive declarations: the registry type, shared shape rules and emission helpers."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..ir.core import Atom, Eqn, Lit, Shape

if TYPE_CHECKING:  # the builder imports this registry
    from ..ir.builder import Builder

# Python precedence levels used when nesting emitted expressions.
ADD, MUL, UNARY, POW, POSTFIX, ATOM = 50, 60, 70, 80, 90, 100
CMP = 40


class ShapeError(Exception):
    """A shape or dtype mismatch found by a shape rule; lowering attaches the span (and
    `help`, what to do, when the rule knows)."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.help = help


@dataclass(frozen=True)
class Emit:
    """How a primitive prints: a format string over operands `{0}`, `{1}`, ...

    `prec` is the precedence of the whole expression; `arg_prec[i]` the least
    precedence operand i may have without parentheses. `{i:neg}` is operand i negated,
    for a place that takes any expression (a call's argument): `-x` for `x`, `x` for `-x`,
    `a + b` for `-(a + b)`.
    """

    fmt: str
    prec: int = ATOM
    arg_prec: tuple[int, ...] = ()

    def uses(self, i: int) -> int:
        """How many times the format reads operand i."""
        return self.fmt.count(f"{{{i}}}") + self.fmt.count(f"{{{i}:neg}}")


class Operand(str):
    """An operand's text as placed in a format (parenthesized for its place), which
    formats under `neg` as its negation, from its own text and precedence: negating a
    negation drops the minus (exact in IEEE arithmetic) rather than print `-(-x)`."""

    def __new__(cls, placed: str, text: str, prec: int) -> Operand:
        self = super().__new__(cls, placed)
        self.text, self.prec = text, prec
        return self

    def __format__(self, spec: str) -> str:
        if spec != "neg":
            return str.__format__(self, spec)
        if self.prec == UNARY and self.text.startswith("-"):
            return _unwrapped(self.text[1:])  # -x, -(a + b), -1.0: the minus applies to the rest
        return "-" + (self.text if self.prec >= UNARY else f"({self.text})")


def _unwrapped(text: str) -> str:
    """`text` without parentheses around the whole of it, if it has them."""
    if not text.startswith("("):
        return text
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return text[1:-1] if i == len(text) - 1 else text
    return text


# ---- the types of the rules --------------------------------------------------------------

Operands = tuple[Atom, ...]  # a primitive's operands, in order
Params = dict[str, Any]  # a primitive's keyword parameters (axis, shape, ...)
Defs = dict[str, Eqn]  # the equation defining each value emitted so far, by name (Builder.defs)
Grads = tuple[Atom | None, ...]  # a VJP rule's cotangents, one per operand (None: zero)
Dots = tuple[Atom | None, ...]  # a JVP rule's operand tangents, one per operand (None: zero)
Expr = tuple[Any, ...]  # `(prim, *operands[, params])` for the builder to emit; operands may nest
Folded = Atom | Expr | None  # a fold's answer: an existing atom, a simpler expression, or None (no fold)

ShapeRule = Callable[[Operands, Params], tuple[Shape, str]]  # -> (output shape, dtype)
EmitRule = Callable[[Operands, Params], Emit]
FoldRule = Callable[[Operands, Params, Defs], Folded]
VjpRule = Callable[["Builder", Eqn, Atom], Grads]  # (b, eqn, cotangent of eqn.out) -> cotangents
JvpRule = Callable[["Builder", Eqn, Dots], Atom | None]  # (b, eqn, dots) -> tangent of eqn.out (None: zero)


@dataclass(frozen=True)
class Example:
    """Inputs for the registry-driven gradient tests: (shape, domain) per operand."""

    inputs: tuple[tuple[Shape, str], ...]
    params: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Primitive:
    name: str
    arity: int
    shape: ShapeRule
    emit: EmitRule
    vjp: VjpRule
    examples: tuple[Example, ...]
    fold: FoldRule | None = None
    linear: tuple[int, ...] = ()  # operands in which the primitive is linear
    kink: bool = False  # has points where it is not differentiable
    differentiable: bool = True  # False: output is bool/int or a constant (no gradient flows)
    jvp: JvpRule | None = None  # tangent rule `(b, eqn, dots) -> tangent of out`
    # How one element is computed in CUDA C++ (elementwise primitives only), over operands that
    # are names or `(T)` casts: the fused kernels of codegen/cuda.py. None: never fused.
    cuda: EmitRule | None = None
    # fold also sees the equations of earlier statements, so it rewrites through names
    fold_through_names: bool = False
    # operands read for their dtype and device only, not their values or shape (onehot's
    # `like`): the result is the same for every example under vmap when the rest is
    like_operands: tuple[int, ...] = ()
    # PyTorch's autograd computes the derivative of the emitted operation from its result
    # (exp, tanh): code it may differentiate never overwrites that result in place
    keeps_output: bool = False


PRIMITIVES: dict[str, Primitive] = {}


def primitive(name: str, arity: int, *, shape: ShapeRule, emit: EmitRule, examples: Iterable[Example],
              fold: FoldRule | None = None, linear: Iterable[int] = (), kink: bool = False,
              differentiable: bool = True, jvp: JvpRule | None = None,
              cuda: EmitRule | None = None, fold_through_names: bool = False,
              like_operands: Iterable[int] = (), keeps_output: bool = False) -> Callable[[VjpRule], VjpRule]:
    """Register a primitive; decorates its VJP rule `(b, eqn, g) -> cotangents per input`."""

    def register(vjp: VjpRule) -> VjpRule:
        if name in PRIMITIVES:
            raise ValueError(f"primitive {name!r} registered twice")
        PRIMITIVES[name] = Primitive(
            name, arity, shape, emit, vjp, tuple(examples), fold, tuple(linear), kink, differentiable, jvp, cuda,
            fold_through_names, tuple(like_operands), keeps_output,
        )
        return vjp

    return register


def tangent(name: str) -> Callable[[JvpRule], JvpRule]:
    """Register the JVP (tangent) rule of primitive `name`, declared just after its VJP rule.

    The rule is `(b, eqn, dots) -> tangent of eqn.out`: `dots[i]` is the tangent of
    operand i, or None where it is symbolically zero (at least one is not None); the
    result has exactly the output's shape, or is None for a zero tangent.
    """

    def register(rule: JvpRule) -> JvpRule:
        if PRIMITIVES[name].jvp is not None:
            raise ValueError(f"primitive {name!r} has two tangent rules")
        PRIMITIVES[name] = replace(PRIMITIVES[name], jvp=rule)
        return rule

    return register


def symmetric_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    """Tangent rule of a unary primitive whose Jacobian is symmetric (diagonal for an
    elementwise function; diag(y) - y y^T for softmax): J v = J^T v, so the primitive's
    own VJP rule applied to the tangent is the JVP."""
    return PRIMITIVES[eqn.prim].vjp(b, eqn, dots[0])[0]


def zero_jvp(b: Builder, eqn: Eqn, dots: Dots) -> None:
    """Tangent rule of a piecewise-constant or non-float primitive: zero almost everywhere."""
    return None


def scaled(b: Builder, factor: Atom | float, dot: Atom | None) -> Atom | None:
    """`factor * dot` for a tangent `dot` (None when the tangent is zero)."""
    return None if dot is None else b.mul(factor, dot)


def add_tangents(b: Builder, shape: Shape, *terms: Atom | None) -> Atom | None:
    """The sum of the non-zero `terms` (None is zero), broadcast to `shape`; None if all zero."""
    present = [t for t in terms if t is not None]
    if not present:
        return None
    acc = present[0]
    for t in present[1:]:
        acc = b.add(acc, t)
    return b.broadcast_to(acc, shape=shape)


# ---- shape rules -------------------------------------------------------------------------

def broadcast_shapes(*shapes: Shape) -> Shape:
    """Array-API broadcasting over concrete and symbolic dimensions."""
    rank = max(len(s) for s in shapes)
    out: list = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ShapeError("cannot broadcast " + " and ".join(fmt_shape(s) for s in shapes))
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def fmt_shape(shape: Shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def require_float(*atoms: Atom) -> None:
    for a in atoms:
        if a.dtype != "float":
            raise ShapeError(f"expected a float value, got {a.dtype} {fmt_shape(a.shape)}")


def elementwise_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    require_float(*inputs)
    return broadcast_shapes(*(a.shape for a in inputs)), "float"


def same_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    require_float(inputs[0])
    return inputs[0].shape, "float"


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for a value of rank {rank}")
    return axis % rank


# ---- emission helpers -------------------------------------------------------------------

def call(fn: str, *extra: str) -> EmitRule:
    """Emission `xp.fn({0}, extra...)` for a unary function."""
    tail = "".join(", " + e for e in extra)
    return lambda inputs, params: Emit(f"xp.{fn}({{0}}{tail})")


def binary(op: str, prec: int) -> EmitRule:
    return lambda inputs, params: Emit(f"{{0}} {op} {{1}}", prec, (prec, prec + 1))


def shape_text(shape: Shape) -> str:
    """A shape as Python source; symbolic dimensions are variables bound at entry."""
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(map(str, shape)) + ")"


def fold_constant(fn: Callable[[float], float], name: str) -> FoldRule:
    """A fold that evaluates `fn` on a literal at compile time (so `exp(2)` is a number)."""

    def fold(inputs: Operands, params: Params, defs: Defs) -> Lit | None:
        (x,) = inputs
        if not isinstance(x, Lit):
            return None
        try:
            value = fn(float(x.value))
        except (ValueError, OverflowError):
            value = float("nan")
        if not math.isfinite(value):
            raise ShapeError(f"{name}({float(x.value)!r}) has no finite real value")
        return Lit(value)

    return fold


def size_text(dims: tuple, min_prec: int = 0) -> str:
    """The element count of `dims` as source: `B`, `10`, `B * 10` (parenthesised if needed)."""
    n = 1
    names = []
    for d in dims:
        if isinstance(d, int):
            n *= d
        else:
            names.append(d)
    parts = names + ([str(n)] if n != 1 or not names else [])
    text = " * ".join(parts)
    return f"({text})" if len(parts) > 1 and min_prec > MUL else text


def lit_value(a: Atom) -> float | None:
    return float(a.value) if isinstance(a, Lit) else None


# Common example sets for tests.
UNARY_EXAMPLES = (Example((((3, 4), "real"),)), Example((((), "real"),)))
POSITIVE_EXAMPLES = (Example((((3, 4), "positive"),)),)
BINARY_EXAMPLES = (
    Example((((3, 4), "real"), ((3, 4), "real"))),
    Example((((3, 4), "real"), ((4,), "real"))),
    Example((((3, 1), "real"), ((1, 4), "real"))),
    Example((((), "real"), ((3, 4), "real"))),
)
