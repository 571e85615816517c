"""Reductions, broadcasting, reshapes and matrix products."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ir.core import Atom, Eqn, Shape, is_host
from .core import (  # tangent (JVP) rules
    POSTFIX,
    Defs,
    Dots,
    Emit,
    Example,
    Folded,
    Grads,
    Operands,
    Params,
    ShapeError,
    add_tangents,
    broadcast_shapes,
    fmt_shape,
    primitive,
    require_float,
    shape_text,
    tangent,
)

if TYPE_CHECKING:  # the builder imports the registry
    from ..ir.builder import Builder


def _axis_text(axes: tuple[int, ...]) -> str:
    return str(axes[0]) if len(axes) == 1 else "(" + ", ".join(map(str, axes)) + ")"


# ---- sum ------------------------------------------------------------------------------------
# params: axes (tuple of non-negative ints, or None for all), keepdims

def _sum_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    (x,) = inputs
    require_float(x)
    axes, keep = params["axes"], params["keepdims"]
    if axes is None:
        return ((1,) * len(x.shape) if keep else ()), "float"
    if keep:
        return tuple(1 if i in axes else d for i, d in enumerate(x.shape)), "float"
    return tuple(d for i, d in enumerate(x.shape) if i not in axes), "float"


def _sum_emit(inputs: Operands, params: Params) -> Emit:
    axes, keep = params["axes"], params["keepdims"]
    if not keep and axes is not None and len(axes) == len(inputs[0].shape):
        axes = None  # every axis: `xp.sum(v)` reads better, and NumPy is 0.15 us faster without one
    args = "" if axes is None else f", axis={_axis_text(axes)}"
    return Emit(f"xp.sum({{0}}{args}{', keepdims=True' if keep else ''})")


def _fold_sum(inputs: Operands, params: Params, defs: Defs) -> Folded:
    # sum(square(v)) over a vector is the dot product v @ v: one call and no temporary
    src = defs.get(getattr(inputs[0], "name", None))
    if src is not None and src.prim == "neg":  # sum(-x) = -sum(x): the negation on one number
        return ("neg", ("sum", src.inputs[0], dict(params)))
    if (src is not None and src.prim == "square" and len(src.inputs[0].shape) == 1
            and not params["keepdims"] and params["axes"] in (None, (0,))):
        return ("matmul", src.inputs[0], src.inputs[0])
    return None


@primitive("sum", 1, shape=_sum_shape, emit=_sum_emit, linear=(0,), fold=_fold_sum,
           examples=(Example((((3, 4), "real"),), (("axes", None), ("keepdims", False))),
                     Example((((3, 4), "real"),), (("axes", (1,)), ("keepdims", True))),
                     Example((((2, 3, 4), "real"),), (("axes", (0, 2)), ("keepdims", False)))))
def sum_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    (x,) = eqn.inputs
    if is_host(g):  # a constant cotangent (the loss seed, 1/N): fill, no broadcast needed
        return (b.full_like(x, g),)
    axes = eqn.param("axes")
    if not eqn.param("keepdims"):
        kept = tuple(1 if axes is None or i in axes else d for i, d in enumerate(x.shape))
        g = b.reshape(g, shape=kept)
    return (b.broadcast_to(g, shape=x.shape),)


@tangent("sum")
def sum_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    return b.sum(dots[0], **dict(eqn.params))


def _full_like_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    return inputs[0].shape, "float"


@primitive("full_like", 2, shape=_full_like_shape, emit=lambda i, p: Emit("xp.full_like({0}, {1})"),
           examples=(Example((((3, 4), "real"), ((), "host"))),), linear=(1,))
def full_like_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return None, b.sum(g, axes=None, keepdims=False)


@tangent("full_like")
def full_like_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    # only the fill value carries a tangent; the first operand gives just the shape
    return None if dots[1] is None else b.broadcast_to(dots[1], shape=eqn.out.shape)


# ---- broadcast_to / sum_to: each the other's adjoint --------------------------------------------

def _broadcast_to_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    (x,) = inputs
    target = params["shape"]
    if broadcast_shapes(x.shape, target) != tuple(target):
        raise ShapeError(f"cannot broadcast {fmt_shape(x.shape)} to {fmt_shape(target)}")
    return tuple(target), x.dtype


def _fold_same_shape(inputs: Operands, params: Params, defs: Defs) -> Folded:
    return inputs[0] if tuple(inputs[0].shape) == tuple(params["shape"]) else None


@primitive("broadcast_to", 1, shape=_broadcast_to_shape, fold=_fold_same_shape, linear=(0,),
           emit=lambda i, p: Emit(f"xp.broadcast_to({{0}}, {shape_text(p['shape'])})"),
           examples=(Example((((4,), "real"),), (("shape", (3, 4)),)),
                     Example((((3, 1), "real"),), (("shape", (3, 4)),))))
def broadcast_to_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (b.sum_to(g, shape=eqn.inputs[0].shape),)


@tangent("broadcast_to")
def broadcast_to_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    return b.broadcast_to(dots[0], shape=eqn.param("shape"))


def sum_to_axes(src: tuple, target: tuple) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Axes to drop (leading) and axes to keep as 1 when summing `src` down to `target`."""
    lead = len(src) - len(target)
    dropped = tuple(range(lead))
    kept = tuple(i + lead for i, d in enumerate(target) if d == 1 and src[i + lead] != 1)
    return dropped, kept


def _sum_to_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    (x,) = inputs
    target = tuple(params["shape"])
    if len(target) > len(x.shape) or broadcast_shapes(x.shape, target) != tuple(x.shape):
        raise ShapeError(f"cannot sum {fmt_shape(x.shape)} to {fmt_shape(target)}")
    return target, x.dtype


def _sum_to_emit(inputs: Operands, params: Params) -> Emit:
    dropped, kept = sum_to_axes(inputs[0].shape, tuple(params["shape"]))
    if not kept and len(dropped) == len(inputs[0].shape):
        return Emit("xp.sum({0})")  # to a scalar (a shared bias): over every axis
    if not kept:
        return Emit(f"xp.sum({{0}}, axis={_axis_text(dropped)})")
    if not dropped:
        return Emit(f"xp.sum({{0}}, axis={_axis_text(kept)}, keepdims=True)")
    return Emit(f"xp.reshape(xp.sum({{0}}, axis={_axis_text(dropped + kept)}), "
                f"{shape_text(params['shape'])})")


def _fold_sum_to(inputs: Operands, params: Params, defs: Defs) -> Folded:
    if not params["shape"] and inputs[0].shape:  # to a scalar: the plain sum, which CSE can share
        return ("sum", inputs[0], {"axes": None, "keepdims": False})
    return _fold_same_shape(inputs, params, defs)


@primitive("sum_to", 1, shape=_sum_to_shape, emit=_sum_to_emit, fold=_fold_sum_to, linear=(0,),
           examples=(Example((((3, 4), "real"),), (("shape", (4,)),)),
                     Example((((3, 4), "real"),), (("shape", (3, 1)),)),
                     Example((((2, 3, 4), "real"),), (("shape", (1, 4)),))))
def sum_to_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (b.broadcast_to(g, shape=eqn.inputs[0].shape),)


@tangent("sum_to")
def sum_to_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    return b.sum_to(dots[0], shape=eqn.param("shape"))


# ---- reshape, transpose ---------------------------------------------------------------------

def _element_count(shape: Shape) -> tuple[int, list[str]]:
    """(product of the concrete dims, sorted symbolic dims): equal for reshapable shapes."""
    n = 1
    for d in shape:
        n *= d if isinstance(d, int) else 1
    return n, sorted(d for d in shape if isinstance(d, str))


def _reshape_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    (x,) = inputs
    target = tuple(params["shape"])
    if _element_count(x.shape) != _element_count(target):
        raise ShapeError(f"cannot reshape {fmt_shape(x.shape)} to {fmt_shape(target)}")
    return target, x.dtype


def _reshape_emit(inputs: Operands, params: Params) -> Emit:
    shape, target = tuple(inputs[0].shape), tuple(params["shape"])
    extra = len(target) - len(shape)
    if extra > 0 and target[:len(shape)] == shape and set(target[len(shape):]) == {1}:
        # new trailing unit axes: indexing with None is a view, and 2x cheaper than reshape
        return Emit("{0}[" + ", ".join([":"] * len(shape) + ["None"] * extra) + "]", POSTFIX, (POSTFIX,))
    return Emit(f"xp.reshape({{0}}, {shape_text(target)})")


@primitive("reshape", 1, shape=_reshape_shape, fold=_fold_same_shape, linear=(0,), emit=_reshape_emit,
           examples=(Example((((3, 4), "real"),), (("shape", (12,)),)),
                     Example((((2, 3, 2), "real"),), (("shape", (2, 6)),))))
def reshape_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (b.reshape(g, shape=eqn.inputs[0].shape),)


@tangent("reshape")
def reshape_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    return b.reshape(dots[0], shape=eqn.param("shape"))


def _transpose_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    (x,) = inputs
    if len(x.shape) < 2:
        raise ShapeError(f"transpose needs a matrix, got {fmt_shape(x.shape)}")
    return x.shape[:-2] + (x.shape[-1], x.shape[-2]), x.dtype


def _transpose_emit(inputs: Operands, params: Params) -> Emit:
    if len(inputs[0].shape) == 2:
        return Emit("{0}.T", POSTFIX, (POSTFIX,))
    return Emit("xp.matrix_transpose({0})")


# Swaps the last two axes (a stack of matrices is transposed matrix by matrix).
@primitive("transpose", 1, shape=_transpose_shape, linear=(0,), emit=_transpose_emit,
           examples=(Example((((3, 4), "real"),)), Example((((2, 3, 4), "real"),))))
def transpose_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    return (b.transpose(g),)


@tangent("transpose")
def transpose_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    return b.transpose(dots[0])


# ---- matmul ---------------------------------------------------------------------------------

def _matmul_shape(inputs: Operands, params: Params) -> tuple[Shape, str]:
    a, b = inputs
    require_float(a, b)
    if not a.shape or not b.shape:
        raise ShapeError(f"@ needs arrays with at least one axis, got {fmt_shape(a.shape)} @ {fmt_shape(b.shape)}")
    k1 = a.shape[-1]
    k2 = b.shape[-2] if len(b.shape) >= 2 else b.shape[0]
    if k1 != k2:
        raise ShapeError(f"{fmt_shape(a.shape)} @ {fmt_shape(b.shape)}: inner dimensions {k1} and {k2} differ")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])  # stacks of matrices broadcast
    return batch + a.shape[-2:-1] + b.shape[-1:] * (len(b.shape) >= 2), "float"


# Emitted as a call, not `@`: the namespace can then pick the route (NumPy's `@` costs about
# 0.45 us more than ndarray.dot on small operands, a tenth of a one-sample step).
@primitive("matmul", 2, shape=_matmul_shape, emit=lambda i, p: Emit("xp.matmul({0}, {1})"),
           examples=(Example((((3, 4), "real"), ((4, 2), "real"))),
                     Example((((3, 4), "real"), ((4,), "real"))),
                     Example((((4,), "real"), ((4, 2), "real"))),
                     Example((((4,), "real"), ((4,), "real"))),
                     Example((((2, 3, 4), "real"), ((4, 2), "real"))),
                     Example((((2, 3, 4), "real"), ((2, 4, 5), "real"))),
                     Example((((2, 3, 4), "real"), ((4,), "real"))),
                     Example((((4,), "real"), ((2, 4, 3), "real")))))
def matmul_vjp(b: Builder, eqn: Eqn, g: Atom) -> Grads:
    x, w = eqn.inputs
    if len(x.shape) >= 2 and len(w.shape) >= 2:  # dX = g W^T, dW = X^T g (summed over stacked batches)
        return (b.sum_to(b.matmul(g, b.transpose(w)), shape=x.shape),
                b.sum_to(b.matmul(b.transpose(x), g), shape=w.shape))
    if len(w.shape) == 1 and len(x.shape) >= 2:  # [..., n, k] @ [k] -> [..., n]: dX = g w^T
        g_col = b.reshape(g, shape=g.shape + (1,))
        # dw = X^T g, written g @ X for a matrix (no transposed copy)
        dw = b.matmul(g, x) if len(x.shape) == 2 else b.sum_to(b.mul(x, g_col), shape=w.shape)
        return b.mul(g_col, w), dw
    if len(x.shape) == 1 and len(w.shape) >= 2:  # [k] @ [..., k, m] -> [..., m]: dW = x g^T
        g_row = b.reshape(g, shape=g.shape[:-1] + (1,) + g.shape[-1:])
        if len(w.shape) == 2:
            dx = b.matmul(w, g)
        else:
            dx = b.sum_to(b.sum(b.mul(w, g_row), axes=(len(w.shape) - 1,), keepdims=False), shape=x.shape)
        return dx, b.mul(b.reshape(x, shape=x.shape + (1,)), g_row)
    if x == w:  # v @ v (a sum of squares): d/dv = 2 g v, all on the first operand
        return b.mul(b.mul(2.0, g), x), None
    return b.mul(g, w), b.mul(g, x)  # dot product


@tangent("matmul")
def matmul_jvp(b: Builder, eqn: Eqn, dots: Dots) -> Atom | None:
    # d(x @ w) = dx @ w + x @ dw
    (x, w), (dx, dw) = eqn.inputs, dots
    return add_tangents(b, eqn.out.shape, None if dx is None else b.matmul(dx, w),
                        None if dw is None else b.matmul(x, dw))
