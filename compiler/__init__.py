"""nnc: compile declarative neural-network specs into standalone array-API modules.

The library API behind the command line: `nnc.compile_spec(text, path)` returns the
generated module's source, `nnc.build_program` the optimized IR, `nnc.parse_spec` the
AST, and `nnc.check(path_or_module)` a finite-difference report.
"""

__version__ = "0.1.0"

_LAZY = {"check": "api", "compile_spec": "api", "build_program": "api", "parse_spec": "syntax.parser"}


def __getattr__(name: str):
    # Loaded on first use, so `import nnc` stays light (the checker pulls in NumPy).
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'nnc' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
