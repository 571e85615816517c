"""The library API behind the command line: spec text in, IR or module text out."""

from __future__ import annotations

from pathlib import Path

from .autodiff import differentiate
from .codegen import render_module
from .ir.core import Program
from .lower import lower
from .passes import simplify
from .syntax.parser import parse_spec


def build_program(text: str, path: str = "<spec>") -> Program:
    """Parse, lower, differentiate and simplify: the whole pipeline up to emission."""
    prog = lower(parse_spec(text, path))
    return simplify(differentiate(prog))


def compile_spec(text: str, path: str = "<spec>") -> str:
    """The generated module's source for the spec `text` (read from `path`)."""
    return render_module(build_program(text, path))


def compile_file(path: str | Path) -> str:
    p = Path(path)
    return compile_spec(p.read_text(encoding="utf-8"), str(p))
