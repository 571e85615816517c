"""Model summaries: per spec statement its output shape, parameters, FLOPs and saved activations.

Counts are polynomials in the spec's symbolic dimensions (`401,408*B`) unless the caller
binds them (`B=128`). The cost model, also in docs/forward-mode.md: an elementwise
primitive costs 1 FLOP per output element (a transcendental function counts as one);
`x @ w` costs 2 per multiply-add (2 * out elements * inner size); sum and sum_to cost 1 per
input element; softmax and log_softmax 5 per element; nll 2 per input element; reshape,
transpose, broadcast_to, full_like and onehot move or fill memory and cost 0, as does
arithmetic on host scalars (constants and sizes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .autodiff import differentiate
from .ir.builder import Builder
from .ir.core import Eqn, Lit, Program, Var, is_host
from .ir.naming import Namer, identifier
from .lower import lower
from .optim import OPTIMIZERS, direction_split
from .passes import simplify
from .passes.dce import live_eqns
from .syntax import ast
from .syntax.parser import parse_spec

FREE = frozenset({"reshape", "transpose", "broadcast_to", "full_like", "onehot"})
PER_ELEMENT = {"softmax": 5, "log_softmax": 5, "nll": 2}
ITEMSIZE = {"float32": 4, "float64": 8, "int": 8, "bool": 1}


class Poly:
    """An integer polynomial in symbolic dimensions: {sorted symbols: coefficient}."""

    def __init__(self, terms: dict[tuple[str, ...], int] | int = 0):
        if isinstance(terms, int):
            terms = {(): terms}
        self.terms = {k: v for k, v in terms.items() if v}

    def __add__(self, other: Poly | int) -> Poly:
        other = other if isinstance(other, Poly) else Poly(other)
        out = dict(self.terms)
        for k, v in other.terms.items():
            out[k] = out.get(k, 0) + v
        return Poly(out)

    __radd__ = __add__

    def __mul__(self, other: Poly | int) -> Poly:
        other = other if isinstance(other, Poly) else Poly(other)
        out: dict[tuple[str, ...], int] = {}
        for k1, v1 in self.terms.items():
            for k2, v2 in other.terms.items():
                k = tuple(sorted(k1 + k2))
                out[k] = out.get(k, 0) + v1 * v2
        return Poly(out)

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        other = Poly(other) if isinstance(other, int) else other
        return isinstance(other, Poly) and self.terms == other.terms

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.terms.items())))

    @property
    def value(self) -> int | None:
        """The number, when no symbol is left."""
        return self.terms.get((), 0) if set(self.terms) <= {()} else None

    def text(self, sep: str = ",") -> str:
        """`401,408*B + 512` (highest degree first); `sep=""` gives `401408*B + 512`."""
        if not self.terms:
            return "0"
        parts = []
        for k in sorted(self.terms, key=lambda k: (-len(k), k)):
            coef = self.terms[k]
            number = f"{coef:,}".replace(",", sep)
            parts.append("*".join(([number] if coef != 1 or not k else []) + list(k)))
        return " + ".join(parts).replace("+ -", "- ")

    def __repr__(self) -> str:
        return f"Poly({self.text('')})"


def elements(shape, bound: dict[str, int]) -> Poly:
    count = Poly(1)
    for d in shape:
        count = count * (Poly(d) if isinstance(d, int) else Poly(bound[d]) if d in bound else Poly({(d,): 1}))
    return count


def flops(eqn: Eqn, bound: dict[str, int]) -> Poly:
    """FLOPs of one equation under the cost model in this module's docstring."""
    if eqn.prim in FREE or is_host(eqn.out):
        return Poly(0)
    if eqn.prim == "matmul":
        x = eqn.inputs[0]
        return 2 * elements(eqn.out.shape, bound) * elements(x.shape[-1:], bound)
    if eqn.prim in ("sum", "sum_to", "nll"):  # reductions: per input element
        return PER_ELEMENT.get(eqn.prim, 1) * elements(eqn.inputs[0].shape, bound)
    return PER_ELEMENT.get(eqn.prim, 1) * elements(eqn.out.shape, bound)


@dataclass
class Row:
    line: int
    kind: str  # "input" | "param" | "define" | "loss"
    name: str
    shape: tuple | None  # None: a definition nothing uses (removed as dead code)
    params: list[tuple[str, tuple, int]] = field(default_factory=list)  # (name, shape, count)
    forward: Poly = field(default_factory=Poly)
    backward: Poly = field(default_factory=Poly)
    saved: Poly = field(default_factory=Poly)  # bytes of forward values the backward reads

    @property
    def param_count(self) -> int:
        return sum(n for _, _, n in self.params)


@dataclass
class Summary:
    model: str
    source: str
    dims: dict[str, int | None]  # symbolic dimension -> bound value (None: symbolic)
    dtype: str
    rows: list[Row]
    optimizer: str
    optimizer_flops: Poly  # per training step, over all parameters
    peak: Poly | None  # None when symbolic dimensions are unbound
    # an optimizer with its own step direction (perceptron): train_step's loss() and direction,
    # which replace value_and_grad's forward and backward in a step
    direction_flops: Poly | None = None

    @property
    def params(self) -> int:
        return sum(r.param_count for r in self.rows)

    @property
    def forward(self) -> Poly:
        return sum((r.forward for r in self.rows), Poly())

    @property
    def backward(self) -> Poly:
        return sum((r.backward for r in self.rows), Poly())

    @property
    def saved(self) -> Poly:
        return sum((r.saved for r in self.rows), Poly())

    @property
    def saved_inputs(self) -> Poly:
        """The part of `saved` that is inputs (x for x.T @ d_h, labels): a hand-written step keeps
        them too, so comparisons with one count only the rest (`saved - saved_inputs`)."""
        return sum((r.saved for r in self.rows if r.kind == "input"), Poly())

    @property
    def step(self) -> Poly:
        gradient = self.forward + self.backward if self.direction_flops is None else self.direction_flops
        return gradient + self.optimizer_flops


def _bytes(var: Var, bound: dict[str, int], dtype: str) -> Poly:
    size = ITEMSIZE[dtype] if var.dtype == "float" else ITEMSIZE[var.dtype]
    return size * elements(var.shape, bound)


def _optimizer_flops_per_element(prog: Program) -> int:
    """Array operations of one parameter element's update (host arithmetic excluded)."""
    name, hyper = prog.optimizer
    opt = OPTIMIZERS[name]
    b = Builder(Namer({"p", "g"}))
    p, g = Var("p", (), "float"), Var("g", (), "float")
    bufs = {k: Var(k, (), "float") for k in opt.buffers(dict(hyper))}
    hp = dict(hyper)
    step = Var("step", (), "float", host=True)  # as in codegen: host scalars cost no array work
    opt.update(b, p, g, bufs, dict(hp, lr=Lit(float(hp["lr"]))), step)
    return sum(1 for e in b.eqns if e.prim not in FREE and not all(is_host(a) for a in e.inputs))


def _direction_flops(prog: Program, bound: dict[str, int]) -> Poly | None:
    """FLOPs of loss() and _perceptron_direction (its forward to the outputs, then the rule),
    as codegen emits them; None for an optimizer that steps along the gradient."""
    split = direction_split(prog)
    if split is None:
        return None
    fwd, rule, _, _ = split
    return sum((flops(e, bound) for e in [*live_eqns(prog.eqns, [prog.loss]), *fwd, *rule]), Poly())


def _peak(prog: Program, bound: dict[str, int], dtype: str) -> Poly | None:
    """Most bytes of intermediates alive at once in value_and_grad, each equation's result
    materialised and freed after its last use (parameters and inputs not counted)."""
    if any(d not in bound for d in prog.dims):
        return None
    eqns = [e for e in prog.eqns + prog.backward if not is_host(e.out)]
    keep = {a.name for a in [prog.loss, *(g for _, g in prog.grads)] if isinstance(a, Var)}
    last: dict[str, int] = {}
    for i, e in enumerate(eqns):
        for a in e.inputs:
            if isinstance(a, Var):
                last[a.name] = i
    live: dict[str, int] = {}
    peak = 0
    for i, e in enumerate(eqns):
        live[e.out.name] = _bytes(e.out, bound, dtype).value
        peak = max(peak, sum(live.values()))
        if e.out.name not in last and e.out.name not in keep:
            del live[e.out.name]  # a forward output value_and_grad does not need
        for a in e.inputs:
            if isinstance(a, Var) and a.name in live and last.get(a.name) == i and a.name not in keep:
                del live[a.name]
    return Poly(peak)


def _row(rows: list[Row], by_line: dict[int, Row], line: int) -> Row:
    """The row of a spec line; code from no statement line gets a row of its own."""
    if line not in by_line:
        by_line[line] = Row(line, "other", "(other)", None)
        rows.append(by_line[line])
    return by_line[line]


def summarize(text: str, path: str = "<spec>", dims: dict[str, int] | None = None,
              dtype: str = "float32") -> Summary:
    """The summary of spec `text`; `dims` binds symbolic dimensions (others stay symbolic)."""
    spec = parse_spec(text, path)
    prog = simplify(differentiate(lower(spec)))
    bound = dict(dims or {})
    unknown = sorted(set(bound) - set(prog.dims))
    if unknown:
        raise ValueError(f"unknown dimension {', '.join(unknown)} (the model's symbolic dimensions: "
                         f"{', '.join(prog.dims) or 'none'})")  # as nnc check and bench say it
    read_by_backward = {a.name for e in prog.backward for a in e.inputs if isinstance(a, Var)}
    defined = {e.out.name: e for e in prog.eqns}
    rows: list[Row] = []
    by_line: dict[int, Row] = {}
    for st in spec.statements:
        line = st.span.line
        if isinstance(st, ast.InputStmt):
            var = next(d.var for d in prog.inputs if d.var.name == identifier(st.name))
            row = Row(line, "input", st.name, var.shape)
            if var.name in read_by_backward:
                row.saved = _bytes(var, bound, dtype)
        elif isinstance(st, ast.ParamStmt):
            row = Row(line, "param", st.name, next(p.var.shape for p in prog.params if p.name == st.name))
        elif isinstance(st, ast.DefineStmt):
            eqn = defined.get(identifier(st.name))
            row = Row(line, "define", st.name, None if eqn is None else eqn.out.shape)
        elif isinstance(st, ast.LossStmt):
            row = Row(line, "loss", "loss", prog.loss.shape)
        else:
            continue
        rows.append(row)
        by_line[line] = row
    for p in prog.params:
        count = elements(p.var.shape, {}).value
        _row(rows, by_line, p.line).params.append((p.name, p.var.shape, count))
    for e in prog.eqns:
        row = _row(rows, by_line, e.line)
        row.forward = row.forward + flops(e, bound)
        if e.out.name in read_by_backward and not is_host(e.out):
            row.saved = row.saved + _bytes(e.out, bound, dtype)
    for e in prog.backward:
        row = _row(rows, by_line, e.line)
        row.backward = row.backward + flops(e, bound)
    total_params = sum(r.param_count for r in rows)
    return Summary(
        model=prog.name, source=prog.source_name, dims={d: bound.get(d) for d in prog.dims}, dtype=dtype,
        rows=rows, optimizer=prog.optimizer[0],
        optimizer_flops=Poly(_optimizer_flops_per_element(prog) * total_params),
        peak=_peak(prog, bound, dtype), direction_flops=_direction_flops(prog, bound))


# ---- presentation ------------------------------------------------------------------------

def _shape_text(shape) -> str:
    return "—" if shape is None else "[" + ", ".join(map(str, shape)) + "]" if shape else "scalar"


def align_columns(rows: list[list[str]], right: set[int]) -> list[str]:
    """Rows of cells as lines: columns two spaces apart, those in `right` right-aligned."""
    widths = [max(len(c) for c in col) for col in zip(*rows)]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
            for cells in rows]


def format_table(s: Summary) -> str:
    """A Keras/torchinfo-style table with totals."""
    head = ["line", "statement", "output shape", "parameters", "count", "forward FLOPs", "backward FLOPs",
            f"saved bytes ({s.dtype})"]
    body = []
    for r in s.rows:
        label = {"input": f"input {r.name}", "param": f"param {r.name}", "loss": "loss"}.get(r.kind, r.name)
        params = ", ".join(n for n, _, _ in r.params)
        body.append([str(r.line), label, _shape_text(r.shape), params, f"{r.param_count:,}" if r.params else "",
                     r.forward.text(), r.backward.text(), r.saved.text()])
    header, *lines = align_columns([head, *body], right={4, 5, 6, 7})
    rule = "-" * len(header)
    dims = ", ".join(f"{d}={v}" if v is not None else f"{d} symbolic" for d, v in s.dims.items())
    out = [f"Model: {s.model} ({s.source})" + (f"   dimensions: {dims}" if dims else ""), rule, header, rule]
    out += lines
    out.append(rule)
    n = s.params
    peak = s.peak.text() + " bytes" if s.peak is not None else "bind every dimension (--dim NAME=SIZE) to compute"
    totals = [
        ("Parameters", f"{n:,}"),
        ("Parameter bytes", f"float32 {4 * n:,}   float64 {8 * n:,}"),
        ("FLOPs, forward", s.forward.text()),
        ("FLOPs, backward", s.backward.text()),
        (f"FLOPs, optimizer ({s.optimizer})", s.optimizer_flops.text()),
        ("FLOPs per training step", s.step.text()),
        ("Activations saved for backward", _saved_text(s)),
        ("Peak activation memory", peak),
    ]
    if s.direction_flops is not None:  # train_step computes them in place of forward and backward
        totals.insert(4, (f"FLOPs, loss and {s.optimizer} direction", s.direction_flops.text()))
    width = max(len(k) for k, _ in totals) + 2
    out += [f"{k + ':':<{width}}{v}" for k, v in totals]
    return "\n".join(out) + "\n"


def _saved_text(s: Summary) -> str:
    """`5,357,568 bytes (float32), of which inputs 3,219,456`: the inputs are kept by the caller anyway."""
    text = f"{s.saved.text()} bytes ({s.dtype})"
    inputs = s.saved_inputs
    return text if inputs == Poly() else f"{text}, of which inputs {inputs.text()}"


def _json_count(p: Poly) -> int | str:
    return p.value if p.value is not None else p.text("")


def to_json(s: Summary) -> dict[str, Any]:
    """The summary as plain data: counts are ints, or expressions such as "401408*B + 512"."""
    n = s.params
    return {
        "model": s.model, "spec": s.source, "dims": s.dims, "dtype": s.dtype,
        "rows": [{"line": r.line, "kind": r.kind, "name": r.name,
                  "shape": None if r.shape is None else list(r.shape),
                  "params": [{"name": p, "shape": list(shape), "count": c} for p, shape, c in r.params],
                  "param_count": r.param_count, "flops_forward": _json_count(r.forward),
                  "flops_backward": _json_count(r.backward), "saved_bytes": _json_count(r.saved)}
                 for r in s.rows],
        "totals": {"params": n, "param_bytes": {"float32": 4 * n, "float64": 8 * n},
                   "flops_forward": _json_count(s.forward), "flops_backward": _json_count(s.backward),
                   "flops_optimizer": _json_count(s.optimizer_flops), "flops_step": _json_count(s.step),
                   "flops_direction": None if s.direction_flops is None else _json_count(s.direction_flops),
                   "saved_bytes": _json_count(s.saved), "saved_input_bytes": _json_count(s.saved_inputs),
                   "peak_activation_bytes": None if s.peak is None else s.peak.value},
    }
