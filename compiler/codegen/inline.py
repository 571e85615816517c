"""Sources of the runtime helpers that generated modules carry, read without importing them.

The helpers live, tested, in `runtime/` (kernels, initializers, input checks, weight
files); a module gets a copy of the ones it uses. Reading their text with `ast` instead
of importing them keeps NumPy out of `nnc compile` (a tenth of a second per run).
"""

from __future__ import annotations

import ast
from functools import cache
from importlib import resources


@cache
def module_source(module: str) -> str:
    """The text of `nnc/runtime/<module>.py`."""
    return resources.files("nnc.runtime").joinpath(f"{module}.py").read_text(encoding="utf-8")


@cache
def _functions(module: str) -> dict[str, str]:
    text = module_source(module)
    return {node.name: ast.get_source_segment(text, node)
            for node in ast.parse(text).body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def function_source(module: str, name: str) -> str:
    """The source of one top-level function (or class) of `nnc/runtime/<module>.py`."""
    return _functions(module)[name]
