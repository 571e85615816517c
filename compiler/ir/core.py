"""IR node types: Var, Lit, Size, Eqn and Program (all frozen)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

Dim = int | str  # a concrete size or a symbolic dimension bound at call time
Shape = tuple[Dim, ...]


@dataclass(frozen=True)
class Var:
    """A named single-assignment value.

    `temp` marks compiler temporaries (codegen may inline them); `host` marks scalars
    computed only from constants and dimension sizes (plain Python numbers at run time).
    """

    name: str
    shape: Shape
    dtype: str  # "float" | "int" | "bool"
    temp: bool = False
    host: bool = False

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Lit:
    """A scalar constant. `text`, when given, is how generated code writes it: an arithmetic
    expression of short literals that Python evaluates to exactly `value` (`1.0 - 0.999`
    rather than 0.0010000000000000009); it plays no part in comparisons."""

    value: float

    shape: Shape = ()
    dtype: str = "float"
    text: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return repr(float(self.value))


@dataclass(frozen=True)
class Size:
    """The number of elements spanned by `dims`: a scalar known at call time."""

    dims: tuple[Dim, ...]

    shape: Shape = ()
    dtype: str = "float"

    def __str__(self) -> str:
        return "size(" + ", ".join(map(str, self.dims)) + ")"


Atom = Var | Lit | Size


def is_host(a: Atom) -> bool:
    """True for values known without any array: literals, sizes, and arithmetic on them."""
    return not isinstance(a, Var) or a.host


@dataclass(frozen=True)
class Eqn:
    """`out = prim(*inputs; **params)`; `line` is the spec line it came from (0: none)."""

    prim: str
    inputs: tuple[Atom, ...]
    out: Var
    params: tuple[tuple[str, Any], ...] = ()
    line: int = 0

    def param(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)


@dataclass(frozen=True)
class InputDecl:
    var: Var
    classes: int | None = None  # for int label inputs: the number of classes, when known
    line: int = 0


@dataclass(frozen=True)
class ParamDecl:
    name: str  # the spec's name, possibly dotted ("h1.W")
    var: Var
    init: tuple[str, tuple[Any, ...]]  # ("glorot_uniform", ()), ("value", (nested list,)), ...
    line: int = 0


@dataclass(frozen=True)
class Program:
    """A whole model: declarations, forward equations and, after autodiff, backward ones."""

    name: str
    source_name: str
    source_lines: tuple[str, ...]
    inputs: tuple[InputDecl, ...]
    params: tuple[ParamDecl, ...]
    eqns: tuple[Eqn, ...]
    loss: Var
    outputs: tuple[Var, ...]
    wrt: tuple[str, ...]
    optimizer: tuple[str, tuple[tuple[str, Any], ...]]
    backward: tuple[Eqn, ...] = ()
    grads: tuple[tuple[str, Atom], ...] = ()  # (param or wrt-input name, gradient)
    dims: tuple[str, ...] = field(default=())  # symbolic dimensions, in order of first use

    def with_(self, **changes: Any) -> Program:
        return replace(self, **changes)

    def statement_lines(self, line: int) -> tuple[str, ...]:
        """The source lines of the statement that starts on `line` (1-based): one, or more
        while a parenthesis or bracket is open (the language's only continuation; a `#`
        starts a comment, as the language has no strings). Empty for a line out of range."""
        if not 1 <= line <= len(self.source_lines):
            return ()
        depth, end = 0, line - 1
        for end in range(line - 1, len(self.source_lines)):
            code = self.source_lines[end].partition("#")[0]
            depth += sum(code.count(c) for c in "([") - sum(code.count(c) for c in ")]")
            if depth <= 0:
                break
        return self.source_lines[line - 1:end + 1]
