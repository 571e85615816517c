"""Automatic differentiation passes over the IR."""

from .reverse import differentiate

__all__ = ["differentiate"]
