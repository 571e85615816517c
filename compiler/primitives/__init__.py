"""The primitive registry: each primitive's shape rule, emission and VJP rule, side by side."""

from .core import PRIMITIVES, Emit, Primitive, ShapeError, broadcast_shapes, primitive
from . import elementwise, activations, structural, nn  # noqa: F401,E402  (registers)

__all__ = ["PRIMITIVES", "Emit", "Primitive", "ShapeError", "broadcast_shapes", "primitive"]
