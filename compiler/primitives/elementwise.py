"""Arithmetic and math primitives (elementwise, broadcasting like the array API)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..ir.core import Atom, Eqn, Lit, Shape, Size, Var
from .core import (  # tangent (JVP) rules
    ADD,
    BINARY_EXAMPLES,
    CMP,
    MUL,
    POSITIVE_EXAMPLES,
    POW,
    UNARY,
    UNARY_EXAMPLES,
    Defs,
    Dots,
    Emit,
    Example,
    Expr,
    Folded,
    Grads,
    Operands,
    Params,
    ShapeError,
    add_tangents,
    binary,
    broadcast_shapes,
    call,
    elementwise_shape,
    fold_constant,
    lit_value,
    primitive,
    same_shape,
    scaled,
    symmetric_jvp,
    tangent,
    zero_jvp,
)

if TYPE_CHECKING:  # the builder imports the registry
    from ..ir.builder import Builder

# ---- arithmetic ---------------------------------------------------------------------------

def _defined_as(a: Atom, prim: str, defs: Defs) -> Eqn | None:
    eqn = defs.get(getattr(a, "name", None))
    return eqn if eqn is not None and eqn.prim == prim else None


def _drop_broadcast(prim: str, inputs: Operands, defs: Defs) -> Expr | None:
    """`op(broadcast_to(z), y)` is `op(z, y)` when y alone already has the result's shape."""
    out = broadcast_shapes(*(a.shape for a in inputs))
    for i, a in enumerate(inputs):
        bc = _defined_as(a, "broadcast_to", defs)
        others = [x for j, x in enumerate(inputs) if j != i]
        if bc is not None and broadcast_shapes(bc.inputs[0].shape, *(x.shape for x in others)) == out:
            return (prim, *inputs[:i], bc.inputs[0], *inputs[i + 1:])
    return None


def _fold_add(inputs: Operands, params: Params, defs: Defs) -> Folded:
    a, b = inputs
    if isinstance(a, Lit) and isinstance(b, Lit):
        return Lit(a.value + b.value)
    if lit_value(b) == 0.0 and a.shape == broadcast_shapes(a.shape, b.shape):
        return a
    if lit_value(a) == 0.0 and b.shape == broadcast_shapes(a.shape, b.shape):
        return b
    if isinstance(a, Var) and a == b:
        return ("mul", Lit(2.0), a)  # x + x -> 2 x
    return _drop_broadcast("add", inputs, defs)


@primitive("add", 2, shape=elementwise_shape, emit=binary("+", ADD), examples=BINARY_EXAMPLES,
           fold=_fold_add, linear=(0, 1), cuda=binary("+", ADD))
def add_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    x, y = eqn.inputs
    return b.sum_to(g, shape=x.shape), b.sum_to(g, shape=y.shape)


@tangent("add")
def add_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    return add_tangents(b, eqn.out.shape, *dots)


def _fold_sub(inputs: Operands, params: Params, defs: Defs) -> Folded:
    a, b = inputs
    if isinstance(a, Lit) and isinstance(b, Lit):
        return Lit(a.value - b.value)
    if lit_value(b) == 0.0 and a.shape == broadcast_shapes(a.shape, b.shape):
        return a
    return _drop_broadcast("sub", inputs, defs)


@primitive("sub", 2, shape=elementwise_shape, emit=binary("-", ADD), examples=BINARY_EXAMPLES,
           fold=_fold_sub, linear=(0, 1), cuda=binary("-", ADD))
def sub_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    x, y = eqn.inputs
    return b.sum_to(g, shape=x.shape), b.sum_to(b.neg(g), shape=y.shape)


@tangent("sub")
def sub_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    dx, dy = dots
    if dx is not None and dy is not None:
        return add_tangents(b, eqn.out.shape, b.sub(dx, dy))
    return add_tangents(b, eqn.out.shape, dx, dy if dy is None else b.neg(dy))


def _defined_as(a: Atom, prim: str, defs: Defs) -> Eqn | None:
    eqn = defs.get(getattr(a, "name", None))
    return eqn if eqn is not None and eqn.prim == prim else None


def _fold_mul(inputs: Operands, params: Params, defs: Defs) -> Folded:
    a, b = inputs
    if isinstance(a, Lit) and isinstance(b, Lit):
        return Lit(a.value * b.value)
    if isinstance(b, Lit) and not isinstance(a, Lit):
        a, b = b, a  # constant first
    out = broadcast_shapes(a.shape, b.shape)
    if lit_value(a) == 1.0 and b.shape == out:
        return b
    if lit_value(a) == -1.0 and b.shape == out:
        return ("neg", b)
    for x, y in ((a, b), (b, a)):  # full_like(_, c) * y -> c * y when y already has the full shape
        full = _defined_as(x, "full_like", defs)
        if full is not None and y.shape == out:
            return ("mul", full.inputs[1], y)
    for x, y in ((a, b), (b, a)):  # (1 / n) * y -> y / n
        recip = _defined_as(x, "div", defs)
        if recip is not None and lit_value(recip.inputs[0]) == 1.0 and y.shape == out:
            return ("div", y, recip.inputs[1])
    inner = _defined_as(b, "mul", defs)
    if isinstance(a, Lit) and inner is not None and isinstance(inner.inputs[0], Lit):
        return ("mul", Lit(a.value * inner.inputs[0].value), inner.inputs[1])  # c1 * (c2 * y)
    return _drop_broadcast("mul", (a, b), defs)


def _emit_mul(inputs: Operands, params: Params) -> Emit:
    # Constants go first, as a person writes them: `2.0 * x`, not `x * 2.0`.
    if isinstance(inputs[1], (Lit, Size)) and not isinstance(inputs[0], (Lit, Size)):
        return Emit("{1} * {0}", MUL, (MUL + 1, MUL))
    return Emit("{0} * {1}", MUL, (MUL, MUL + 1))


@primitive("mul", 2, shape=elementwise_shape, emit=_emit_mul, examples=BINARY_EXAMPLES,
           fold=_fold_mul, linear=(), cuda=_emit_mul)
def mul_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    x, y = eqn.inputs
    return b.sum_to(b.mul(g, y), shape=x.shape), b.sum_to(b.mul(g, x), shape=y.shape)


@tangent("mul")
def mul_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    # d(x y) = y dx + x dy
    (x, y), (dx, dy) = eqn.inputs, dots
    return add_tangents(b, eqn.out.shape, scaled(b, y, dx), scaled(b, x, dy))


def _fold_div(inputs: Operands, params: Params, defs: Defs) -> Folded:
    a, b = inputs
    if lit_value(b) == 0.0:  # `x / 0` is inf or nan wherever it runs
        raise ShapeError("division by zero")
    if isinstance(a, Lit) and isinstance(b, Lit):
        return Lit(a.value / b.value)
    if lit_value(b) == 1.0 and a.shape == broadcast_shapes(a.shape, b.shape):
        return a
    return None


@primitive("div", 2, shape=elementwise_shape, emit=binary("/", MUL),
           examples=(Example((((3, 4), "real"), ((3, 4), "positive"))),
                     Example((((3, 4), "real"), ((4,), "positive"))),
                     Example((((), "real"), ((3, 1), "positive")))),
           fold=_fold_div, cuda=binary("/", MUL))
def div_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    x, y = eqn.inputs
    # d(x/y)/dy = -x/y^2 = -out/y
    return (b.sum_to(b.div(g, y), shape=x.shape),
            b.sum_to(b.neg(b.div(b.mul(g, eqn.out), y)), shape=y.shape))


@tangent("div")
def div_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    # d(x / y) = (dx - out dy) / y
    y, (dx, dy) = eqn.inputs[1], dots
    if dy is None:
        return add_tangents(b, eqn.out.shape, b.div(dx, y))
    shift = b.mul(eqn.out, dy)
    return add_tangents(b, eqn.out.shape, b.div(b.neg(shift) if dx is None else b.sub(dx, shift), y))


def _fold_neg(inputs: Operands, params: Params, defs: Defs) -> Folded:
    (a,) = inputs
    if isinstance(a, Lit):
        return Lit(-a.value)
    full = _defined_as(a, "full_like", defs)
    if full is not None:  # -full_like(x, c) -> full_like(x, -c), so it can fold on
        return ("full_like", full.inputs[0], ("neg", full.inputs[1]))
    inner = _defined_as(a, "neg", defs)
    return inner.inputs[0] if inner is not None else None


def _emit_neg(inputs: Operands, params: Params) -> Emit:
    return Emit("-{0}", UNARY, (UNARY,))  # the same in Python and in C++


@primitive("neg", 1, shape=same_shape, emit=_emit_neg, examples=UNARY_EXAMPLES, fold=_fold_neg, linear=(0,),
           cuda=_emit_neg)
def neg_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (b.neg(g),)


tangent("neg")(symmetric_jvp)


def _fold_pow(inputs: Operands, params: Params, defs: Defs) -> Folded:
    a, c = inputs
    if isinstance(a, Lit) and isinstance(c, Lit):
        return Lit(a.value ** c.value)
    if lit_value(c) == 1.0:
        return a
    if lit_value(c) == 0.0:  # x ^ 0 = 1 everywhere (0 ^ 0 too, as in Python and the array API)
        return ("full_like", a, Lit(1.0))
    return None


def _emit_pow(inputs: Operands, params: Params) -> Emit:
    """`x ** c`, but a small integer power as products: NumPy's pow is slow there, where
    `**` has no fast path of its own (NumPy has for -1, 0.5 and 2). On 1024x256 float32 of
    both signs `x ** 3.0` takes 13 ms and `x * x * x` 0.05 ms; of positive values, 0.3 ms.
    x ^ 3 and x ^ 4 multiply, x ^ -2 to x ^ -4 divide 1 by the product (two or three
    roundings for pow's one, and the same infinities, zeros and signs)."""
    n = lit_value(inputs[1])
    if n is not None and n == int(n) and (2 < abs(n) <= 4 or n == -2):
        product = " * ".join(["{0}"] * int(abs(n)))  # `{0}` used more than once: never an inlined expression
        return Emit(product, MUL, (MUL + 1,)) if n > 0 else Emit(f"1.0 / ({product})", MUL, (MUL + 1,))
    return Emit("{0} ** {1}", POW, (POW + 1, UNARY))


@primitive("pow", 2, shape=elementwise_shape, emit=_emit_pow,
           examples=(Example((((3, 4), "positive"), ((), "real"))),
                     Example((((3, 4), "positive"), ((3, 4), "real")))),
           fold=_fold_pow, keeps_output=True)
def pow_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    x, c = eqn.inputs
    if isinstance(c, Lit):
        return b.mul(g, b.mul(c.value, b.pow(x, c.value - 1.0))), None
    if isinstance(x, Lit) and x.value <= 0:  # d(c^x)/dx = c^x log(c)
        raise ShapeError(f"{float(x.value):g} ^ (a value that varies) has no derivative in the exponent: "
                         "c ^ x * log(c) needs a positive base c")
    dx = b.mul(g, _pow_base_slope(b, x, c))
    dc = b.mul(g, _pow_exponent_slope(b, eqn))
    return b.sum_to(dx, shape=x.shape), b.sum_to(dc, shape=c.shape)


def _pow_base_slope(b: Builder, x: Atom, c: Atom) -> Atom:
    """d(x^c)/dx = c x^(c-1), written c x^0 = 0 where c = 0 = x: x^0 = 1 is constant, and c x^(c-1)
    would be 0 * inf there (a nan gradient, as `a ^ 0` gave before it folded). Only there: at
    c = 0 with x != 0 the slope keeps x^(c-1), whose derivative in c, x^-1, forward-over-reverse
    needs (with x^0 in its place, hvp's d2(x^c)/dx dc was 1 instead of 1/x at an exponent
    initialised to 0)."""
    if isinstance(x, Lit):  # a positive number (pow_vjp refuses others): x^(c-1) is finite
        return b.mul(c, b.pow(x, b.sub(c, 1.0)))
    either = b.gt(b.add(b.abs(c), b.abs(x)), 0.0)
    return b.mul(c, b.pow(x, b.where(either, b.sub(c, 1.0), 0.0)))


def _pow_exponent_slope(b: Builder, eqn: Eqn) -> Atom:
    """d(x^c)/dc = x^c log(x), with log(1) = 0 in place of log(0) where x = 0: 0^c is constant
    in c for c >= 0 (PyTorch's convention), and 0 * log(0) gave `relu(h) ^ k` a nan gradient."""
    x = eqn.inputs[0]
    if isinstance(x, Lit):  # a positive number (pow_vjp refuses others): log(x) is a number too
        return b.mul(eqn.out, b.log(x))
    return b.mul(eqn.out, b.log(b.where(b.gt(b.abs(x), 0.0), x, 1.0)))


@tangent("pow")
def pow_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    # d(x^c) = c x^(c-1) dx + x^c log(x) dc
    (x, c), (dx, dc) = eqn.inputs, dots
    if isinstance(c, Lit):
        return scaled(b, b.mul(c.value, b.pow(x, c.value - 1.0)), dx)
    base = None if dx is None else scaled(b, _pow_base_slope(b, x, c), dx)
    exponent = None if dc is None else scaled(b, _pow_exponent_slope(b, eqn), dc)
    return add_tangents(b, eqn.out.shape, base, exponent)


@primitive("square", 1, shape=same_shape, emit=call("square"), examples=UNARY_EXAMPLES,
           cuda=lambda i, p: Emit("{0} * {0}", MUL, (MUL, MUL + 1)))
def square_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (b.mul(g, b.mul(2.0, eqn.inputs[0])),)


tangent("square")(symmetric_jvp)


# ---- math functions -------------------------------------------------------------------------

@primitive("exp", 1, shape=same_shape, emit=call("exp"), fold=fold_constant(math.exp, "exp"), examples=UNARY_EXAMPLES,
           keeps_output=True)
def exp_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (b.mul(g, eqn.out),)


tangent("exp")(symmetric_jvp)


_log_of_constant = fold_constant(math.log, "log")


def _fold_log(inputs: Operands, params: Params, defs: Defs) -> Folded:
    """The log of a probability, in the stable form: log(sigmoid(x)) = -softplus(-x),
    log(1 - sigmoid(x)) = -softplus(x), log(softmax(x)) = log_softmax(x), and
    log(1 + exp(x)) = softplus(x). Written plainly, the first two return log(0) = -inf for
    |x| above about 37 (float64) or 17 (float32), and the last overflows above 709 (88)."""
    src = defs.get(getattr(inputs[0], "name", None))
    if src is not None and src.prim == "sigmoid":
        return ("neg", ("softplus", ("neg", src.inputs[0])))
    if (src is not None and src.prim == "sub" and src.inputs[0] == Lit(1.0)
            and (inner := defs.get(getattr(src.inputs[1], "name", None))) is not None and inner.prim == "sigmoid"):
        return ("neg", ("softplus", inner.inputs[0]))
    if src is not None and src.prim == "softmax":
        return ("log_softmax", src.inputs[0], {"axis": src.param("axis")})
    if src is not None and src.prim == "add" and Lit(1.0) in src.inputs:  # log(1 + exp(x)) = softplus(x)
        other = src.inputs[1] if src.inputs[0] == Lit(1.0) else src.inputs[0]
        inner = defs.get(getattr(other, "name", None))
        if inner is not None and inner.prim == "exp":
            return ("softplus", inner.inputs[0])
    return _log_of_constant(inputs, params, defs)


@primitive("log", 1, shape=same_shape, emit=call("log"), fold=_fold_log, examples=POSITIVE_EXAMPLES,
           fold_through_names=True)
def log_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (b.div(g, eqn.inputs[0]),)


tangent("log")(symmetric_jvp)


@primitive("sqrt", 1, shape=same_shape, emit=call("sqrt"), fold=fold_constant(math.sqrt, "sqrt"),
           examples=POSITIVE_EXAMPLES, cuda=lambda i, p: Emit("sqrt({0})"), keeps_output=True)
def sqrt_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (b.div(g, b.mul(2.0, eqn.out)),)


tangent("sqrt")(symmetric_jvp)


@primitive("abs", 1, shape=same_shape, emit=call("abs"), fold=fold_constant(abs, "abs"), examples=UNARY_EXAMPLES, kink=True)
def abs_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    # Convention at the kink: abs'(0) = 1 (the subgradient of x >= 0).
    x = eqn.inputs[0]
    return (b.where(b.ge(x, 0.0), g, b.neg(g)),)


tangent("abs")(symmetric_jvp)


@primitive("sin", 1, shape=same_shape, emit=call("sin"), fold=fold_constant(math.sin, "sin"), examples=UNARY_EXAMPLES)
def sin_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (b.mul(g, b.cos(eqn.inputs[0])),)


@tangent("sin")
def sin_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    return b.mul(b.cos(eqn.inputs[0]), dots[0])


@primitive("cos", 1, shape=same_shape, emit=call("cos"), fold=fold_constant(math.cos, "cos"), examples=UNARY_EXAMPLES)
def cos_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (b.neg(b.mul(g, b.sin(eqn.inputs[0]))),)


@tangent("cos")
def cos_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    return b.neg(b.mul(b.sin(eqn.inputs[0]), dots[0]))


def _max_min_vjp(b: Builder, eqn: Eqn, g: Atom, first_wins: Callable[[Atom, Atom], Atom]) -> Grads:
    x, y = eqn.inputs
    mask = first_wins(x, y)  # ties go to the first operand
    return (b.sum_to(b.where(mask, g, 0.0), shape=x.shape),
            b.sum_to(b.where(mask, 0.0, g), shape=y.shape))


def _max_min_jvp(b: Builder, eqn: Eqn, dots: Dots, first_wins: Callable[[Atom, Atom], Atom]) -> Atom | None:
    (x, y), (dx, dy) = eqn.inputs, dots
    picked = b.where(first_wins(x, y), 0.0 if dx is None else dx, 0.0 if dy is None else dy)
    return add_tangents(b, eqn.out.shape, picked)


def _fold_same_operands(inputs: Operands, params: Params, defs: Defs) -> Folded:
    """maximum(x, x) = minimum(x, x) = x, with x's gradient (ties go to the first operand,
    which is x): no `x >= x` in the derivative code (ruff's PLR0124)."""
    a, b = inputs
    return a if isinstance(a, Var) and a == b else None


@primitive("maximum", 2, shape=elementwise_shape, emit=lambda i, p: Emit("xp.maximum({0}, {1})"),
           examples=BINARY_EXAMPLES, kink=True, fold=_fold_same_operands)
def maximum_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return _max_min_vjp(b, eqn, g, lambda x, y: b.ge(x, y))


@tangent("maximum")
def maximum_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    return _max_min_jvp(b, eqn, dots, lambda x, y: b.ge(x, y))


@primitive("minimum", 2, shape=elementwise_shape, emit=lambda i, p: Emit("xp.minimum({0}, {1})"),
           examples=BINARY_EXAMPLES, kink=True, fold=_fold_same_operands)
def minimum_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return _max_min_vjp(b, eqn, g, lambda x, y: b.ge(y, x))


@tangent("minimum")
def minimum_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    return _max_min_jvp(b, eqn, dots, lambda x, y: b.ge(y, x))


# ---- comparisons and selection (used by derivative rules) -------------------------------------

def _compare_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    return broadcast_shapes(*(a.shape for a in inputs)), "bool"


@primitive("gt", 2, shape=_compare_shape, emit=binary(">", CMP), examples=BINARY_EXAMPLES,
           differentiable=False)
def gt_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return None, None


tangent("gt")(zero_jvp)


@primitive("ge", 2, shape=_compare_shape, emit=binary(">=", CMP), examples=BINARY_EXAMPLES,
           differentiable=False)
def ge_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return None, None


tangent("ge")(zero_jvp)


def _where_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    cond, x, y = inputs
    if cond.dtype != "bool":
        raise ShapeError("where needs a boolean condition")
    return broadcast_shapes(cond.shape, x.shape, y.shape), "float"


@primitive("where", 3, shape=_where_shape, emit=lambda i, p: Emit("xp.where({0}, {1}, {2})"),
           examples=(Example((((3, 4), "bool"), ((3, 4), "real"), ((3, 4), "real"))),
                     Example((((3, 4), "bool"), ((4,), "real"), ((), "real")))),
           linear=(1, 2))
def where_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    cond, x, y = eqn.inputs
    return (None,
            b.sum_to(b.where(cond, g, 0.0), shape=x.shape),
            b.sum_to(b.where(cond, 0.0, g), shape=y.shape))


@tangent("where")
def where_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    _, dx, dy = dots
    if dx is None and dy is None:
        return None
    picked = b.where(eqn.inputs[0], 0.0 if dx is None else dx, 0.0 if dy is None else dy)
    return add_tangents(b, eqn.out.shape, picked)
