"""Simplification passes, each a pure function Program -> Program, run in PIPELINE order."""

from __future__ import annotations

from ..ir.core import Program
from .cse import cse
from .dce import dce

PIPELINE = (cse, dce)


def simplify(prog: Program) -> Program:
    for run_pass in PIPELINE:
        prog = run_pass(prog)
    return prog


__all__ = ["PIPELINE", "cse", "dce", "simplify"]
