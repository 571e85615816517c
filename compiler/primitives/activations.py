"""Activation primitives; derivatives reuse forward outputs where that is cheaper."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NoReturn

from ..ir.core import Atom, Eqn, Shape
from .core import (  # tangent (JVP) rules
    ADD,
    MUL,
    POSTFIX,
    UNARY_EXAMPLES,
    Dots,
    Emit,
    EmitRule,
    Example,
    Grads,
    Operands,
    Params,
    add_tangents,
    call,
    fold_constant,
    primitive,
    same_shape,
    symmetric_jvp,
    tangent,
    zero_jvp,
)

if TYPE_CHECKING:  # the builder imports the registry
    from ..ir.builder import Builder

_GELU_C = 0.7978845608028654  # sqrt(2 / pi)
_GELU_A = 0.044715


def _fmt(text: str, prec: int = 100, arg: int = 0) -> EmitRule:
    return lambda inputs, params: Emit(text.format(**params), prec, (arg,) * len(inputs))


@primitive("tanh", 1, shape=same_shape, emit=call("tanh"), fold=fold_constant(math.tanh, "tanh"), examples=UNARY_EXAMPLES,
           keeps_output=True)
def tanh_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    y = eqn.out
    return (b.mul(g, b.sub(1.0, b.mul(y, y))),)


tangent("tanh")(symmetric_jvp)


# sigmoid(x) = exp(-softplus(-x)), softplus(-x) = logaddexp(0, -x): within a few eps of
# the exact value at every x, 1 at +inf and 0 at -inf, and nothing overflows. The textbook
# 1 / (1 + exp(-x)) overflows exp below x = -88 in float32 (NumPy warns), and
# (1 + tanh(x / 2)) / 2 cancels for x < 0: 7% off at x = -15 in float32.
_SIGMOID = "xp.exp(-xp.logaddexp(0.0, {{0:neg}}))"


@primitive("sigmoid", 1, shape=same_shape, emit=_fmt(_SIGMOID), examples=UNARY_EXAMPLES, keeps_output=True)
def sigmoid_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    y = eqn.out
    return (b.mul(g, b.mul(y, b.sub(1.0, y))),)


tangent("sigmoid")(symmetric_jvp)


@primitive("arctan", 1, shape=same_shape, emit=call("atan"), fold=fold_constant(math.atan, "arctan"), examples=UNARY_EXAMPLES)
def arctan_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    x = eqn.inputs[0]
    return (b.div(g, b.add(1.0, b.mul(x, x))),)


tangent("arctan")(symmetric_jvp)


@primitive("relu", 1, shape=same_shape, emit=call("maximum", "0.0"), examples=UNARY_EXAMPLES,
           kink=True)
def relu_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    # relu'(0) = 0; the mask comes from the output, so the input need not be kept.
    return (b.mul(g, b.positive(eqn.out)),)


# relu's derivative as a multiplier: 1.0 where x > 0, else 0.0, in x's dtype. Multiplying
# by it is one vectorised pass; NumPy's where() branches per element and is ~15x slower
# on a mask of random signs, and _NumPy.where's bit select still 2x (1024x256 float32:
# 61 us against 118, each less a 21 us copy). (Unlike where, it turns an inf cotangent at
# x <= 0 into nan: docs/language.md says so.)
@primitive("positive", 1, shape=same_shape,
           emit=_fmt("xp.astype({{0}} > 0.0, {{0}}.dtype)", arg=POSTFIX), examples=UNARY_EXAMPLES,
           kink=True)
def positive_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (None,)  # zero almost everywhere


tangent("positive")(zero_jvp)


tangent("relu")(symmetric_jvp)


@primitive("step", 1, shape=same_shape,
           emit=_fmt("xp.astype({{0}} >= 0.0, {{0}}.dtype)", arg=POSTFIX), examples=UNARY_EXAMPLES,
           kink=True)
def step_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (None,)  # zero almost everywhere


tangent("step")(zero_jvp)


@primitive("sign", 1, shape=same_shape,
           emit=_fmt("2.0 * xp.astype({{0}} >= 0.0, {{0}}.dtype) - 1.0", ADD, POSTFIX),
           examples=UNARY_EXAMPLES, kink=True)
def sign_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (None,)  # zero almost everywhere


tangent("sign")(zero_jvp)


@primitive("softplus", 1, shape=same_shape, emit=_fmt("xp.logaddexp(0.0, {{0}})"),
           examples=UNARY_EXAMPLES)
def softplus_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (b.mul(g, b.sigmoid(eqn.inputs[0])),)


tangent("softplus")(symmetric_jvp)


@primitive("silu", 1, shape=same_shape,
           emit=_fmt("{{0}} * " + _SIGMOID, MUL, MUL), examples=UNARY_EXAMPLES)
def silu_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    # silu' = s + x s (1 - s) = s (1 + x (1 - s)),  s = sigmoid(x)
    x = eqn.inputs[0]
    s = b.sigmoid(x)
    return (b.mul(g, b.mul(s, b.add(1.0, b.mul(x, b.sub(1.0, s))))),)


tangent("silu")(symmetric_jvp)


@primitive("gelu", 1, shape=same_shape,
           emit=_fmt(f"0.5 * {{{{0}}}} * (1.0 + xp.tanh({_GELU_C!r} * ({{{{0}}}} + {_GELU_A!r} * ({{{{0}}}} * {{{{0}}}} * {{{{0}}}}))))",
                     MUL, MUL + 1),
           examples=UNARY_EXAMPLES)
def gelu_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    # gelu = x/2 (1 + tanh u), u = c (x + a x^3);  gelu' = (1 + t)/2 + x/2 (1 - t^2) c (1 + 3 a x^2)
    x = eqn.inputs[0]
    x2 = b.mul(x, x)
    t = b.tanh(b.mul(_GELU_C, b.add(x, b.mul(_GELU_A, b.mul(x2, x)))))
    du = b.mul(_GELU_C, b.add(1.0, b.mul(3 * _GELU_A, x2)))
    d = b.add(b.mul(0.5, b.add(1.0, t)), b.mul(b.mul(0.5, x), b.mul(b.sub(1.0, b.mul(t, t)), du)))
    return (b.mul(g, d),)


tangent("gelu")(symmetric_jvp)


@primitive("leaky_relu", 1, shape=same_shape,
           emit=_fmt("xp.where({{0}} >= 0.0, {{0}}, {alpha!r} * {{0}})"),
           examples=(Example((((3, 4), "real"),), (("alpha", 0.01),)),), kink=True)
def leaky_relu_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    x = eqn.inputs[0]
    return (b.where(b.ge(x, 0.0), g, b.mul(eqn.param("alpha"), g)),)


tangent("leaky_relu")(symmetric_jvp)


@primitive("elu", 1, shape=same_shape,
           # expm1 sees min(x, 0) so the branch `where` discards cannot overflow
           emit=_fmt("xp.where({{0}} > 0.0, {{0}}, {alpha!r} * xp.expm1(xp.minimum({{0}}, 0.0)))"),
           examples=(Example((((3, 4), "real"),), (("alpha", 1.0),)),
                     Example((((3, 4), "real"),), (("alpha", 0.5),))), kink=True)
def elu_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    # alpha e^x at and below 0, from x: y + alpha, from the output, cancels (y rounds to -alpha
    # below x ~ -17 in float32, a relative error of 4e-4 at x = -10, where PyTorch's is 3e-8)
    x = eqn.inputs[0]
    return (b.where(b.gt(x, 0.0), g, b.mul(g, b.mul(eqn.param("alpha"), b.exp(b.minimum(x, 0.0))))),)


tangent("elu")(symmetric_jvp)


def _prelu_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    x, alpha = inputs
    return same_shape(inputs, params)[0] if alpha.shape in ((), x.shape[-1:]) else _bad_alpha(x, alpha), "float"


def _bad_alpha(x: Atom, alpha: Atom) -> NoReturn:
    from .core import ShapeError, fmt_shape

    raise ShapeError(f"prelu: alpha {fmt_shape(alpha.shape)} must match the last axis of {fmt_shape(x.shape)}")


@primitive("prelu", 2, shape=_prelu_shape, emit=_fmt("xp.where({{0}} >= 0.0, {{0}}, {{1}} * {{0}})"),
           examples=(Example((((3, 4), "real"), ((4,), "real"))),), kink=True)
def prelu_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    x, alpha = eqn.inputs
    nonneg = b.ge(x, 0.0)
    return (b.where(nonneg, g, b.mul(g, alpha)),
            b.sum_to(b.where(nonneg, 0.0, b.mul(g, x)), shape=alpha.shape))


@tangent("prelu")
def prelu_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    # d prelu = where(x >= 0, dx, alpha dx) + where(x >= 0, 0, x dalpha)
    (x, alpha), (dx, dalpha) = eqn.inputs, dots
    nonneg = b.ge(x, 0.0)
    return add_tangents(b, eqn.out.shape,
                        None if dx is None else b.where(nonneg, dx, b.mul(alpha, dx)),
                        None if dalpha is None else b.where(nonneg, 0.0, b.mul(x, dalpha)))
