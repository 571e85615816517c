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
    lines = text.splitlines(keepends=True)  # once: ast.get_source_segment splits the text per node
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):  # top level: from column 0
            last = lines[node.end_lineno - 1].encode("utf-8")[:node.end_col_offset].decode("utf-8")
            found[node.name] = "".join(lines[node.lineno - 1:node.end_lineno - 1]) + last
    return found


def function_source(module: str, name: str) -> str:
    """The source of one top-level function (or class) of `nnc/runtime/<module>.py`."""
    return _functions(module)[name]
