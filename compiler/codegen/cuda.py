"""Elementwise equations -> one CUDA kernel (CuPy's ElementwiseKernel): CuPy's faster idiom.

The portable code makes one pass over memory, and on CuPy one kernel launch, per array
operation: momentum SGD's update is 4 launches a parameter, Adam's 10. A kernel computes
the same equations for one element in registers, in one launch. Generated modules use it
only behind a check for CuPy arrays and keep the portable code for every other library.

The body is C++ over one element. Each value read more than once, each long expression and
each new value of an array updated in place gets a `const T` local; the rest is inlined as the
Python emission inlines it; the stores come last, so no store changes a value that is still to be read.
Literals and host scalars are cast to the arrays' type T, as NumPy and CuPy cast a Python
number to the array's dtype, so each operation is the one the portable code performs on the
same operands. Compiled without FMA contraction, the kernel rounds as the portable code does:
the registry gives a CUDA form only to correctly rounded operations (+ - * / sqrt).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..ir.core import Atom, Eqn, Lit, Var
from ..primitives import PRIMITIVES
from ..primitives.core import ATOM, UNARY, Operand

# Names a kernel's own names must not take: CuPy's (`i` is the loop index, `_ind` the
# indexer), the element type T, the math functions the registry's forms call, and C++ keywords
# an IR name could be (IR names are Python identifiers, never Python keywords).
_TAKEN = frozenset({
    "i", "T", "sqrt", "auto", "bool", "case", "char", "class", "const", "default", "delete", "do",
    "double", "enum", "explicit", "extern", "float", "friend", "goto", "inline", "int", "long",
    "mutable", "namespace", "new", "operator", "private", "protected", "public", "register",
    "short", "signed", "sizeof", "static", "struct", "switch", "template", "this", "throw",
    "typedef", "typename", "union", "unsigned", "using", "virtual", "void", "volatile",
})


# A single-use value whose expression is longer than this gets a local of its own: the
# kernel's lines stay short and each reads as one step of the update.
MAX_INLINE = 40


@dataclass(frozen=True)
class CudaKernel:
    """A kernel in the terms of cupy.ElementwiseKernel, with the order of its arguments: the
    IR names of the arrays it reads, of the host scalars (float64 parameters), then of the
    arrays it reads and writes in place."""

    name: str
    in_params: str
    out_params: str
    body: tuple[str, ...]
    arrays: tuple[str, ...]
    scalars: tuple[str, ...]
    outputs: tuple[str, ...]


def _c_name(name: str) -> str:
    return name + "_" if name in _TAKEN or name.startswith("_") else name


def elementwise_kernel(name: str, eqns: Sequence[Eqn], updates: Mapping[str, Atom]) -> CudaKernel | None:
    """The kernel that computes `eqns` for one element and stores `updates[a]` into array `a`.

    Arrays that the equations read and do not define are its inputs; host scalars become
    float64 parameters. None when an equation has no CUDA form, or reads what no kernel
    parameter can carry (a size, a non-finite literal, an int or bool array).
    """
    defined = {e.out.name for e in eqns}
    arrays: list[str] = []
    scalars: list[str] = []
    uses: dict[str, int] = {}
    emits = {}
    for e in eqns:
        rule = PRIMITIVES[e.prim].cuda
        if rule is None or e.out.dtype != "float" or e.out.host:
            return None
        emits[e.out.name] = emit = rule(e.inputs, dict(e.params))
        for i, a in enumerate(e.inputs):
            if isinstance(a, Lit):
                if not (a.dtype == "float" and math.isfinite(a.value)):
                    return None
            elif not isinstance(a, Var) or a.dtype != "float":
                return None  # sizes are known only at call time; int/bool arrays are no T
            elif a.host:
                scalars += [] if a.name in scalars else [a.name]
            elif a.name not in defined and a.name not in updates:
                arrays += [] if a.name in arrays else [a.name]
            if isinstance(a, Var):  # counted as written: square's `{0} * {0}` reads its operand twice
                uses[a.name] = uses.get(a.name, 0) + emit.uses(i)
    finals = {v.name: k for k, v in updates.items() if isinstance(v, Var) and v.name in defined}
    for k, v in updates.items():
        if isinstance(v, Var) and v.name in updates and v.name != k:
            return None  # a new value that is another array's old one: its store would clobber it
        if isinstance(v, Var) and v.host or isinstance(v, Lit) and not math.isfinite(v.value):
            return None

    names = {n: _c_name(n) for n in arrays + scalars + list(updates)}
    names |= {e.out.name: _c_name("new_" + finals[e.out.name] if e.out.name in finals else e.out.name)
              for e in eqns}
    inline: dict[str, tuple[str, int]] = {}  # single-use values, as (expression, precedence)
    body: list[str] = []

    def operand(a: Atom) -> tuple[str, int]:
        if isinstance(a, Lit):
            literal = repr(float(a.value)) if a.text is None else f"({a.text})"
            return f"(T){literal}", UNARY
        if a.host:
            return f"(T){names[a.name]}", UNARY
        return inline.pop(a.name, (names[a.name], ATOM))

    for e in eqns:
        emit = emits[e.out.name]
        texts = []
        for i, a in enumerate(e.inputs):
            text, prec = operand(a)
            placed = f"({text})" if i < len(emit.arg_prec) and prec < emit.arg_prec[i] else text
            texts.append(Operand(placed, text, prec))
        expr = emit.fmt.format(*texts)
        if uses.get(e.out.name) == 1 and e.out.name not in finals and len(expr) <= MAX_INLINE:
            inline[e.out.name] = (expr, emit.prec)
        else:
            body.append(f"const T {names[e.out.name]} = {expr};")
    for k, v in updates.items():
        if isinstance(v, Var) and v.name == k:
            continue  # unchanged
        body.append(f"{names[k]} = {operand(v)[0]};")

    ident = "nnc_" + re.sub(r"\W", "_", name)
    return CudaKernel(
        name=ident,
        in_params=", ".join([f"T {names[a]}" for a in arrays] + [f"float64 {names[s]}" for s in scalars]),
        out_params=", ".join(f"T {names[k]}" for k in updates),
        body=tuple(body),
        arrays=tuple(arrays),
        scalars=tuple(scalars),
        outputs=tuple(updates),
    )

