"""The IR: a flat, typed, single-assignment list of equations."""

from .core import Atom, Dim, Eqn, Lit, Program, Shape, Size, Var

__all__ = ["Atom", "Dim", "Eqn", "Lit", "Program", "Shape", "Size", "Var"]
