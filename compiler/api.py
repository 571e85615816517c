"""The library API behind the command line: spec text in, IR or module text out."""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .autodiff import differentiate
from .codegen import render_module
from .ir.core import Program
from .lower import lower
from .passes import simplify
from .syntax.parser import parse_spec

if TYPE_CHECKING:
    from .runtime.gradcheck import Report


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while compiling.

    A compile makes many small objects and keeps them alive, so each full collection
    rescans all of them and the number of collections grows with the spec: compile time
    went quadratic (1.3 ms a layer at 1000 layers, 0.6 at 50). The IR holds no cycles
    that need collecting in the meantime; whatever is garbage is collected afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_program(text: str, path: str = "<spec>") -> Program:
    """Parse, lower, differentiate and simplify: the whole pipeline up to emission."""
    with _collector_paused():
        prog = lower(parse_spec(text, path))
        return simplify(differentiate(prog))


def compile_spec(text: str, path: str = "<spec>") -> str:
    """The generated module's source for the spec `text` (read from `path`)."""
    with _collector_paused():
        return render_module(build_program(text, path))


def compile_file(path: str | Path) -> str:
    p = Path(path)
    return compile_spec(p.read_text(encoding="utf-8"), str(p))


def load_module(source: str, name: str = "nnc_model") -> ModuleType:
    """Execute generated module text as a fresh module object (never registered in sys.modules)."""
    module = ModuleType(name)
    module.__file__ = f"<nnc {name}>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - compiler output
    return module


def load_module_file(path: str | Path) -> ModuleType:
    """Import a generated module from a .py file the user asked us to check."""
    p = Path(path)
    spec = importlib.util.spec_from_file_location(f"nnc_checked_{p.stem}", p)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {p}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(target: str | Path | ModuleType, **options: Any) -> Report:
    """Finite-difference check of every gradient of a spec (.nn), module file (.py) or module.

    Options are those of `nnc.runtime.gradcheck.check_module`: dims, seed, eps, rtol, atol,
    max_entries, dtype. Returns the report; `report.passed` is the verdict.
    """
    from .runtime.gradcheck import check_module

    if isinstance(target, ModuleType):
        return check_module(target, **options)
    p = Path(target)
    if p.suffix == ".py":
        return check_module(load_module_file(p), target=str(p), **options)
    return check_module(load_module(compile_file(p), p.stem), target=str(p), **options)
