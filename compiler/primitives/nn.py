"""Softmax family, one-hot labels and the negative log-likelihood."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ir.core import Atom, Eqn, Shape, Size
from .core import (  # tangent (JVP) rules
    MUL,
    Dots,
    Emit,
    Example,
    Grads,
    Operands,
    Params,
    ShapeError,
    add_tangents,
    fmt_shape,
    normalize_axis,
    primitive,
    require_float,
    same_shape,
    size_text,
    symmetric_jvp,
    tangent,
    zero_jvp,
)

if TYPE_CHECKING:  # the builder imports the registry
    from ..ir.builder import Builder


def _axis_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    normalize_axis(params["axis"], len(inputs[0].shape))
    return same_shape(inputs, params)


@primitive("softmax", 1, shape=_axis_shape,
           emit=lambda i, p: Emit(f"_softmax(xp, {{0}}, {p['axis']})"),
           examples=(Example((((3, 4), "real"),), (("axis", -1),)),
                     Example((((3, 4), "real"),), (("axis", 0),))))
def softmax_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    # J^T g = y * (g - sum(g * y))
    y, axis = eqn.out, eqn.param("axis")
    ax = (normalize_axis(axis, len(y.shape)),)
    return (b.mul(y, b.sub(g, b.sum(b.mul(g, y), axes=ax, keepdims=True))),)


tangent("softmax")(symmetric_jvp)  # J = diag(y) - y y^T is symmetric


@primitive("log_softmax", 1, shape=_axis_shape,
           emit=lambda i, p: Emit(f"_log_softmax(xp, {{0}}, {p['axis']})"),
           examples=(Example((((3, 4), "real"),), (("axis", -1),)),
                     Example((((3, 4), "real"),), (("axis", 0),))))
def log_softmax_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    # J^T g = g - softmax(x) * sum(g),  softmax(x) = exp(log_softmax(x))
    y, axis = eqn.out, eqn.param("axis")
    ax = (normalize_axis(axis, len(y.shape)),)
    return (b.sub(g, b.mul(b.exp(y), b.sum(g, axes=ax, keepdims=True))),)


@tangent("log_softmax")
def log_softmax_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    # J v = v - sum(softmax(x) * v),  softmax(x) = exp(log_softmax(x))
    y, dx = eqn.out, dots[0]
    ax = (normalize_axis(eqn.param("axis"), len(y.shape)),)
    return b.sub(dx, b.sum(b.mul(b.exp(y), dx), axes=ax, keepdims=True))


def _onehot_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    labels, like = inputs
    if labels.dtype != "int":
        raise ShapeError(f"class labels must be int, got {labels.dtype} {fmt_shape(labels.shape)}")
    return labels.shape + (params["classes"],), "float"


# `like` supplies dtype and device, so the one-hot is made where the model's arrays live.
@primitive("onehot", 2, shape=_onehot_shape,
           emit=lambda i, p: Emit(f"_onehot(xp, {{0}}, {p['classes']}, {{1}})"),
           examples=(Example((((3,), "int"), ((3, 4), "real")), (("classes", 4),)),),
           differentiable=False, like_operands=(1,))
def onehot_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return None, None


tangent("onehot")(zero_jvp)


def _nll_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    logp, target = inputs
    require_float(logp, target)
    if logp.shape != target.shape or len(logp.shape) < 1:
        raise ShapeError(f"targets {fmt_shape(target.shape)} do not match {fmt_shape(logp.shape)}")
    return (), "float"


def batch_size(x: Atom) -> Size:
    """The number of rows a mean-over-the-batch loss divides by (all but the class axis)."""
    return Size(tuple(x.shape[:-1]))


# Mean over the batch of -sum_c target[c] * logp[c].
@primitive("nll", 2, shape=_nll_shape,
           emit=lambda i, p: Emit(f"-xp.sum({{0}} * {{1}}) / {size_text(batch_size(i[0]).dims, MUL + 1)}",
                                  MUL, (MUL, MUL + 1)),
           examples=(Example((((3, 4), "real"), ((3, 4), "probs"))),
                     Example((((4,), "real"), ((4,), "probs")))))
def nll_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    logp, target = eqn.inputs
    n = batch_size(logp)
    return b.div(b.mul(target, b.neg(g)), n), b.div(b.mul(logp, b.neg(g)), n)


@tangent("nll")
def nll_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    # nll is bilinear: d nll(logp, t) = nll(dlogp, t) + nll(logp, dt)
    (logp, target), (dlogp, dtarget) = eqn.inputs, dots
    return add_tangents(b, (), None if dlogp is None else b.nll(dlogp, target),
                        None if dtarget is None else b.nll(logp, dtarget))
