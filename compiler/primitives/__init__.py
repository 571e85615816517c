"""The primitive registry: each primitive's shape rule, emission and VJP rule, side by side."""

from . import activations, elementwise, nn, structural  # noqa: F401,E402  (registers)
from .core import PRIMITIVES, Emit, Primitive, ShapeError, broadcast_shapes, primitive

__all__ = ["PRIMITIVES", "Emit", "Primitive", "ShapeError", "broadcast_shapes", "primitive"]
