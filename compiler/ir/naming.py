"""Every naming convention of generated code, in one place.

Forward values keep their spec names (`h1`); dotted parameter names become
identifiers (`h1.W` -> `h1_W`); the adjoint of `v` is `d_v` and its tangent (forward
mode, Newton's dot notation) `dot_v`; compiler temporaries
are `t1`, `t2`, ... in creation order, or a readable hint (`log_p`) made unique.
"""

from __future__ import annotations

import keyword

# Names that generated function bodies use themselves; a spec name may not shadow them.
# (Module-level helpers start with "_", which spec names may not.)
RESERVED = frozenset({"xp", "np", "math", "params", "grads", "state", "inputs", "array_api_compat",
                      "tangents", "vector"})


def identifier(spec_name: str) -> str:
    """The Python identifier generated code uses for a spec name."""
    return spec_name.replace(".", "_")


def adjoint(name: str) -> str:
    return f"d_{name}"


def tangent(name: str) -> str:
    return f"dot_{name}"


def is_reserved(name: str) -> bool:
    # Soft keywords (match, case, type) are valid identifiers and vary between Python versions.
    return keyword.iskeyword(name) or name in RESERVED or name.startswith("_")


class Namer:
    """Hands out unique names, deterministically (counters, never hashes)."""

    def __init__(self, taken: set[str] | None = None):
        self.taken: set[str] = set(taken or ())
        self.counter = 0

    def claim(self, name: str) -> str:
        self.taken.add(name)
        return name

    def fresh(self, hint: str | None = None) -> str:
        if hint and hint not in self.taken:
            return self.claim(hint)
        if hint:
            k = 2
            while f"{hint}{k}" in self.taken:
                k += 1
            return self.claim(f"{hint}{k}")
        while True:
            self.counter += 1
            name = f"t{self.counter}"
            if name not in self.taken:
                return self.claim(name)
