"""Code generation: IR -> render model -> module text (Jinja)."""

from .render import render_module

__all__ = ["render_module"]
