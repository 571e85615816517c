"""Equations -> Python statements: per-primitive emission, inlining single-use temporaries."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.core import Atom, Eqn, Lit, Program, Size, Var
from ..primitives import PRIMITIVES
from ..primitives.core import ADD, ATOM, MUL, UNARY, Operand, size_text


@dataclass(frozen=True)
class Read:
    """An entry point's read of an array its caller passed in a dict: `var = source["key"]`
    (a parameter from `params`, a tangent from `tangents` or `vector`)."""

    var: Var
    source: str
    key: str

    @property
    def expr(self) -> str:
        return f'{self.source}["{self.key}"]'

    @property
    def line(self) -> str:
        return f"{self.var.name} = {self.expr}"


# Binary elementwise primitives that can update their first operand in place (`a += b`).
INPLACE_OPS = {"add": "+=", "sub": "-=", "mul": "*=", "div": "/="}
_COMMUTATIVE = frozenset({"add", "mul"})
# Primitives whose result may share memory with an operand (or be read-only, as NumPy's
# broadcast_to is): never written in place. Every other primitive returns a new array.
VIEWS = frozenset({"transpose", "reshape", "broadcast_to"})


def atom_text(a: Atom) -> tuple[str, int]:
    if isinstance(a, Var):
        return a.name, ATOM
    if isinstance(a, Lit):
        if a.text is not None:
            return a.text, ADD
        text = repr(float(a.value))
        if text in ("inf", "-inf", "nan"):  # not Python literals (a folded constant can overflow)
            return f'float("{text}")', ATOM
        return text, (UNARY if text.startswith("-") else ATOM)
    assert isinstance(a, Size)
    text = size_text(a.dims)
    return text, (MUL if " " in text else ATOM)


# A temporary is inlined into its single use only up to this many levels of nesting: deeper
# expressions are unreadable, and Python's own parser gives up on very deep ones (a spec
# summing 100,000 terms must still give an importable module).
MAX_INLINE_DEPTH = 24


def _wrap(text: str, prec: int, min_prec: int) -> str:
    return f"({text})" if prec < min_prec else text


@dataclass
class Block:
    """Statements that came from one spec line."""

    line: int
    statements: list[str] = field(default_factory=list)


def _operand_counts(eqn: Eqn) -> list[int]:
    spec = PRIMITIVES[eqn.prim].emit(eqn.inputs, dict(eqn.params))
    return [spec.uses(i) for i in range(len(eqn.inputs))]


def _in_place_candidates(eqn: Eqn) -> tuple[int, ...]:
    """Operand positions that `eqn` could overwrite with its result (first choice first)."""
    if eqn.prim not in INPLACE_OPS or eqn.out.dtype != "float":
        return ()
    return (0, 1) if eqn.prim in _COMMUTATIVE else (0,)


INPUTS, PARAMS, REST = 1, 2, 4  # argument groups, as bits: a value reads a set of them


def argument_groups(prog: Program) -> dict[str, int]:
    """The arguments torch.func.vmap may map over together: a leading axis of examples on
    the inputs, of parameter sets on the parameters; the rest (tangents) is the third."""
    return {**{d.var.name: INPUTS for d in prog.inputs}, **{p.var.name: PARAMS for p in prog.params}}


def _groups_read(sections, groups: dict[str, int]) -> dict[str, int]:
    """For each value, the argument groups it is computed from, as bits (Python numbers, and
    the operands read for their dtype only, left out)."""
    reads: dict[str, int] = {}
    for eqns in sections:
        for eqn in eqns:
            read = 0
            like = PRIMITIVES[eqn.prim].like_operands
            for i, a in enumerate(eqn.inputs):
                if isinstance(a, Var) and not a.host and i not in like:
                    read |= reads[a.name] if a.name in reads else groups.get(a.name, REST)
            reads[eqn.out.name] = read
    return reads


def _plan_in_place(sections, uses: dict[str, int], names: dict[str, str],
                   groups: dict[str, int], autograd: bool) -> dict[str, int]:
    """Which equations overwrite an operand: out name -> operand position.

    The operand must be an array this function allocated (not a view, input or
    parameter), read by nobody else, with the result's shape: then `a op= b` saves an
    allocation and a pass over memory, and on immutable arrays (JAX) it just rebinds.
    It must also read every argument group (`argument_groups`) the other operand reads:
    under torch.func.vmap over examples, `0.002 * W` is one array for all of them, and
    adding per-example products into it in place is refused, so the sum is built in the
    per-example product instead. With `autograd`, it must not be a result PyTorch's autograd
    keeps for a derivative (`keeps_output`: `h = xp.exp(z); h *= 2.0` fails its backward).
    """
    defs = {e.out.name: e for eqns in sections for e in eqns}
    reads = _groups_read(sections, groups)
    plan: dict[str, int] = {}
    for eqns in sections:
        for eqn in eqns:
            if not eqn.out.shape:
                continue  # scalars: nothing to save, and `a + b` reads better
            target = names.get(eqn.out.name)
            if target is not None and any(isinstance(a, Var) and names.get(a.name, a.name) == target
                                          for a in eqn.inputs):
                continue  # `v = g * g; v += v` would clobber the old `v` it reads (a buffer update)
            for i in _in_place_candidates(eqn):
                a = eqn.inputs[i]
                if (isinstance(a, Var) and a.name in defs and defs[a.name].prim not in VIEWS
                        and uses.get(a.name) == 1 and a.name not in names and a.dtype == "float"
                        and not a.host and tuple(a.shape) == tuple(eqn.out.shape)
                        and not (autograd and PRIMITIVES[defs[a.name].prim].keeps_output)
                        and not any(reads.get(b.name, groups.get(b.name, REST)) & ~reads[a.name]
                                    for b in eqn.inputs if isinstance(b, Var) and not b.host)):
                    plan[eqn.out.name] = i
                    break
    return plan


def _storage_names(sections, plan: dict[str, int], uses: dict[str, int],
                   names: dict[str, str]) -> dict[str, str]:
    """The Python variable holding each value that in-place updates make a statement.

    A value overwritten in place lives in its overwriter's variable (one chain, one
    name). A chain whose last value is a temporary read once takes the name of the
    variable that reads it, when no other chain has that name, so the code reads
    `h1 = x @ W; h1 += b; h1 = xp.maximum(h1, 0.0)`; not when the reader is arithmetic
    done out of place (`d = 1 - y; d *= y; d = g * d` reads worse than the expression
    `d = g * (y * (1 - y))`, which the caller then emits). Reusing that name early is safe:
    single assignment means nothing reads it before its own statement. A named value
    overwritten in a later section keeps its name there (`prob = ...` in the forward,
    then `d_logit = prob; d_logit /= N` in the backward), and a new chain starts.
    """
    reader: dict[str, Eqn] = {}
    overwritten_by: dict[str, Var] = {}
    order: list[Var] = []
    block: dict[str, tuple[int, int]] = {}  # value -> (section, spec line) of its statement
    for k, eqns in enumerate(sections):
        for eqn in eqns:
            block[eqn.out.name] = (k, eqn.line)
            for a in eqn.inputs:
                if isinstance(a, Var):
                    reader[a.name] = eqn
            if eqn.out.name in plan:
                a = eqn.inputs[plan[eqn.out.name]]
                if a.temp or block.get(a.name) == (k, eqn.line):
                    overwritten_by[a.name] = eqn.out
                order += [a, eqn.out]
    storage: dict[str, str] = {}
    taken: set[str] = set()

    def name_of(v: Var) -> str:
        if v.name not in storage:
            if v.name in names:
                name = names[v.name]
            elif v.name in overwritten_by:
                name = name_of(overwritten_by[v.name])
            else:  # the last value of a chain
                name = v.name
                borrow = reader.get(v.name)
                if (v.temp and uses.get(v.name) == 1 and borrow is not None and not borrow.out.temp
                        and borrow.out.name not in names and borrow.out.name not in taken
                        and borrow.out.name not in overwritten_by  # its name is another chain's value
                        and (borrow.prim not in INPLACE_OPS or borrow.out.name in plan)):
                    name = borrow.out.name
                taken.add(name)
            storage[v.name] = name
        return storage[v.name]

    for v in reversed(order):  # later chains first: a name read later is kept by its owner
        name_of(v)
    return storage


def _drop_chains(plan: dict[str, int], sections, tails: set[str]) -> dict[str, int]:
    """`plan` without the in-place chains that end in `tails`."""
    defs = {e.out.name: e for eqns in sections for e in eqns}
    drop = set()
    for tail in tails:
        while tail in plan and tail not in drop:
            drop.add(tail)
            tail = defs[tail].inputs[plan[tail]].name
    return {k: v for k, v in plan.items() if k not in drop}


def emit_sections(sections: list[tuple[Eqn, ...]], results: list[Atom],
                  names: dict[str, str] | None = None,
                  owned: frozenset[str] = frozenset(),
                  groups: dict[str, int] | None = None, autograd: bool = False) -> list[list[Block]]:
    """Statements computing `results`, section by section (e.g. forward, backward).

    A temporary used exactly once is folded into the expression that uses it, so the
    code reads like hand-written array code. `names` renames variables in the text: a
    variable mapped to a target such as `params[name]` is assigned there directly.
    Arrays the function allocated itself are updated in place where that is safe (see
    `_plan_in_place`); so are the variables in `owned` (optimizer state the caller lets
    it overwrite), at their last read. `groups` (`argument_groups`) keeps those updates
    within what torch.func.vmap accepts, and `autograd` within what PyTorch's autograd can
    differentiate (the pure entry points).
    """
    names = names or {}
    uses: dict[str, int] = {}
    last_read: dict[str, int] = {}
    for a in results:
        if isinstance(a, Var) and a.name not in names:
            uses[a.name] = uses.get(a.name, 0) + 2  # returned values are never inlined
    position = 0
    for eqns in sections:
        for eqn in eqns:
            position += 1
            for a, n in zip(eqn.inputs, _operand_counts(eqn)):
                if isinstance(a, Var):
                    uses[a.name] = uses.get(a.name, 0) + n
                    last_read[a.name] = position
    for a in results:  # a buffer returned as it is must not be overwritten before the end
        if isinstance(a, Var):
            last_read[a.name] = position + 1
    plan = _plan_in_place(sections, uses, names, groups or {}, autograd)
    storage = _storage_names(sections, plan, uses, names)
    temps = {e.out.name for eqns in sections for e in eqns if e.out.temp}
    unnamed = {k for k, v in storage.items() if k in plan and v == k and k in temps}
    if unnamed:  # a chain with no readable name (`t7 = ...; t7 += ...`) stays one expression
        plan = _drop_chains(plan, sections, unnamed)
        storage = _storage_names(sections, plan, uses, names)
    materialized = set(storage)  # values that in-place updates turn into statements
    # pending inlined expressions: name -> (text, precedence, variables the text reads)
    exprs: dict[str, tuple[str, int, frozenset[str]]] = {}
    depth: dict[str, int] = {}  # inlined temporary -> nesting depth of its expression
    out_sections: list[list[Block]] = []
    position = 0
    for eqns in sections:
        blocks: list[Block] = []
        for eqn in eqns:
            position += 1
            spec = PRIMITIVES[eqn.prim].emit(eqn.inputs, dict(eqn.params))
            args, reads = [], set()
            level = 1
            for i, a in enumerate(eqn.inputs):
                if isinstance(a, Var) and a.name in exprs:
                    text, prec, refs = exprs.pop(a.name)
                    level = max(level, depth.pop(a.name) + 1)
                    reads |= refs
                elif isinstance(a, Var):
                    text, prec = storage.get(a.name) or names.get(a.name, a.name), ATOM
                    reads.add(a.name)
                else:
                    text, prec = atom_text(a)
                need = spec.arg_prec[i] if i < len(spec.arg_prec) else 0
                args.append(Operand(_wrap(text, prec, need), text, prec))
            out = eqn.out
            target = storage.get(out.name) or names.get(out.name, out.name)
            statements = _in_place(eqn, args, plan, owned, last_read, position, exprs, target)
            if statements is None:
                code = spec.fmt.format(*args)
                if (out.temp and uses.get(out.name, 0) == 1 and out.name not in names
                        and out.name not in materialized and level < MAX_INLINE_DEPTH):
                    exprs[out.name] = (code, spec.prec, frozenset(reads))
                    depth[out.name] = level
                    continue
                statements = [f"{target} = {code}"]
            if not blocks or blocks[-1].line != eqn.line:
                blocks.append(Block(eqn.line))
            blocks[-1].statements.extend(statements)
        out_sections.append(blocks)
    return out_sections


def _in_place(eqn: Eqn, args: list[str], plan: dict[str, int], owned: frozenset[str],
              last_read: dict[str, int], position: int, exprs: dict, target: str) -> list[str] | None:
    """`target op= other` statements when `eqn` overwrites an operand, else None."""
    i = plan.get(eqn.out.name)
    if i is None:
        for j in _in_place_candidates(eqn):
            a = eqn.inputs[j]
            # the caller's buffer, read for the last time here, whose new value this is
            if (isinstance(a, Var) and a.name in owned and last_read.get(a.name) == position
                    and _unwrap(args[j]) == target
                    and not any(a.name in refs for _, _, refs in exprs.values())):
                i = j
                break
        if i is None:
            return None
    own, other = _unwrap(args[i]), _unwrap(args[1 - i])
    statements = [] if own == target else [f"{target} = {own}"]
    return statements + [f"{target} {INPLACE_OPS[eqn.prim]} {other}"]


def _unwrap(text: str) -> str:
    """`text` without the parentheses that made it an operand (an assignment needs none)."""
    if text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        return text[1:-1]
    return text


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return False
    return depth == 0


def emit_body(eqns: tuple[Eqn, ...], results: list[Atom], names: dict[str, str] | None = None,
              owned: frozenset[str] = frozenset(), groups: dict[str, int] | None = None,
              autograd: bool = False) -> list[Block]:
    return emit_sections([eqns], results, names, owned, groups, autograd)[0]


def result_text(a: Atom) -> str:
    return atom_text(a)[0]


def caller_arrays(prog: Program) -> set[str]:
    """The names of the arrays a caller passes to an entry point: inputs and parameters."""
    return {d.var.name for d in prog.inputs} | {p.var.name for p in prog.params}


def view_base(a: Atom, defs: dict[str, Eqn]) -> Atom:
    """The array whose memory `a` may share: `a` itself, or what a chain of views of it
    (transpose, reshape, broadcast_to: VIEWS) starts from, `x` for `flatten(x).T`.
    `defs` maps each variable to the equation defining it."""
    while isinstance(a, Var) and a.name in defs and defs[a.name].prim in VIEWS:
        a = defs[a.name].inputs[0]
    return a


def handed_out(results: list[Atom], external: set[str], eqns: tuple[Eqn, ...] | list[Eqn]) -> list[str]:
    """Source for each array a function returns: a copy where it is, or is a view of
    (through `eqns`), one the caller already holds (`external`: an input, a parameter, an
    entry of `vector`) or one returned earlier in the same call (CSE can make two gradients
    one array; `transpose(x)` and `flatten(x)` share x's memory), so that updating a
    returned array in place never changes another, nor the caller's own."""
    seen: set[str] = set()
    texts = []
    defs = {e.out.name: e for e in eqns}  # once: a scan per result was quadratic in the spec
    for a in results:
        base = view_base(a, defs)
        if isinstance(base, Var) and (base.name in external or base.name in seen):
            texts.append(f"_copy(xp, {a.name})")
        else:
            texts.append(result_text(a))
        if isinstance(base, Var):
            seen.add(base.name)
    return texts
