"""Primitive declarations: the registry type, shared shape rules and emission helpers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..ir.core import Atom, Lit, Shape

# Python precedence levels used when nesting emitted expressions.
ADD, MUL, UNARY, POW, POSTFIX, ATOM = 50, 60, 70, 80, 90, 100
CMP = 40


class ShapeError(Exception):
    """A shape or dtype mismatch found by a shape rule; lowering attaches the span."""


@dataclass(frozen=True)
class Emit:
    """How a primitive prints: a format string over operands `{0}`, `{1}`, ...

    `prec` is the precedence of the whole expression; `arg_prec[i]` the least
    precedence operand i may have without parentheses.
    """

    fmt: str
    prec: int = ATOM
    arg_prec: tuple[int, ...] = ()


@dataclass(frozen=True)
class Example:
    """Inputs for the registry-driven gradient tests: (shape, domain) per operand."""

    inputs: tuple[tuple[Shape, str], ...]
    params: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Primitive:
    name: str
    arity: int
    shape: Callable[[tuple[Atom, ...], dict], tuple[Shape, str]]
    emit: Callable[[tuple[Atom, ...], dict], Emit]
    vjp: Callable[..., tuple[Atom | None, ...]]
    examples: tuple[Example, ...]
    fold: Callable[..., Atom | None] | None = None
    linear: tuple[int, ...] = ()  # operands in which the primitive is linear
    kink: bool = False  # has points where it is not differentiable
    differentiable: bool = True  # False: output is bool/int or a constant (no gradient flows)
    jvp: Callable[..., Atom | None] | None = None  # tangent rule `(b, eqn, dots) -> tangent of out`


PRIMITIVES: dict[str, Primitive] = {}


def primitive(name: str, arity: int, *, shape, emit, examples, fold=None, linear=(), kink=False,
              differentiable=True, jvp=None):
    """Register a primitive; decorates its VJP rule `(b, eqn, g) -> cotangents per input`."""

    def register(vjp):
        if name in PRIMITIVES:
            raise ValueError(f"primitive {name!r} registered twice")
        PRIMITIVES[name] = Primitive(
            name, arity, shape, emit, vjp, tuple(examples), fold, tuple(linear), kink, differentiable, jvp
        )
        return vjp

    return register


def tangent(name: str):
    """Register the JVP (tangent) rule of primitive `name`, declared just after its VJP rule.

    The rule is `(b, eqn, dots) -> tangent of eqn.out`: `dots[i]` is the tangent of
    operand i, or None where it is symbolically zero (at least one is not None); the
    result has exactly the output's shape, or is None for a zero tangent.
    """

    def register(rule):
        if PRIMITIVES[name].jvp is not None:
            raise ValueError(f"primitive {name!r} has two tangent rules")
        PRIMITIVES[name] = replace(PRIMITIVES[name], jvp=rule)
        return rule

    return register


def symmetric_jvp(b, eqn, dots):
    """Tangent rule of a unary primitive whose Jacobian is symmetric (diagonal for an
    elementwise function; diag(y) - y y^T for softmax): J v = J^T v, so the primitive's
    own VJP rule applied to the tangent is the JVP."""
    return PRIMITIVES[eqn.prim].vjp(b, eqn, dots[0])[0]


def zero_jvp(b, eqn, dots):
    """Tangent rule of a piecewise-constant or non-float primitive: zero almost everywhere."""
    return None


def scaled(b, factor, dot):
    """`factor * dot` for a tangent `dot` (None when the tangent is zero)."""
    return None if dot is None else b.mul(factor, dot)


def add_tangents(b, shape: Shape, *terms):
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


def elementwise_shape(inputs: tuple[Atom, ...], params: dict) -> tuple[Shape, str]:
    require_float(*inputs)
    return broadcast_shapes(*(a.shape for a in inputs)), "float"


def same_shape(inputs, params):
    require_float(inputs[0])
    return inputs[0].shape, "float"


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for a value of rank {rank}")
    return axis % rank


# ---- emission helpers -------------------------------------------------------------------

def call(fn: str, *extra: str) -> Callable[[tuple, dict], Emit]:
    """Emission `xp.fn({0}, extra...)` for a unary function."""
    tail = "".join(", " + e for e in extra)
    return lambda inputs, params: Emit(f"xp.{fn}({{0}}{tail})")


def binary(op: str, prec: int) -> Callable[[tuple, dict], Emit]:
    return lambda inputs, params: Emit(f"{{0}} {op} {{1}}", prec, (prec, prec + 1))


def shape_text(shape: Shape) -> str:
    """A shape as Python source; symbolic dimensions are variables bound at entry."""
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(map(str, shape)) + ")"


def fold_constant(fn: Callable[[float], float], name: str):
    """A fold that evaluates `fn` on a literal at compile time (so `exp(2)` is a number)."""

    def fold(inputs, params, defs):
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
