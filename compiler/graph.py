"""The computational graph of a spec as Graphviz DOT text, optionally with values and gradients.

One node per input, parameter and primitive equation, grouped by the spec line they come
from; edges carry shapes. With the backward equations, adjoint nodes are drawn in red; with
concrete values, every edge shows the value flowing forward (green) and the gradient of the
loss flowing back (red), like textbook backpropagation diagrams.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .ir.builder import Builder
from .ir.core import Atom, Eqn, Lit, Program, Var
from .ir.interpret import evaluate
from .ir.naming import Namer
from .primitives import PRIMITIVES
from .primitives.core import size_text
from .runtime.files import _replace_file, write_atomically

RENDERED = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
DOT_SUFFIXES = (".dot", ".gv")
_INPUT, _PARAM, _OP, _BACK = "#dbe9f6", "#fde9c9", "#f2f2f2", "#f9d6d5"
_VALUE, _GRAD = "#1a7f37", "#cf222e"


class GraphvizError(Exception):
    """Rendering failed: Graphviz's `dot` rejected the graph, or ran out of memory or time."""


class GraphvizMissing(GraphvizError):
    """The `dot` program is not installed: the picture asked for cannot be made here."""


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _shape(a: Atom) -> str:
    dtype = "" if a.dtype == "float" else a.dtype
    return f"{dtype}[{', '.join(map(str, a.shape))}]" if a.shape else (dtype or "scalar")


def fmt_value(x: Any, digits: int = 4) -> str:
    """An array for a label: all elements when there are few, else its range."""
    a = np.asarray(x)
    if a.dtype == bool:
        a = a.astype(np.int8)
    if a.ndim == 0:
        return f"{float(a):.{digits}g}"
    if a.size <= 6:
        return _nested(a, digits)
    return f"min {float(a.min()):.{digits}g}, max {float(a.max()):.{digits}g}"


def _nested(a: np.ndarray, digits: int) -> str:
    if a.ndim == 0:
        return f"{float(a):.{digits}g}"
    return "[" + ", ".join(_nested(row, digits) for row in a) + "]"


def adjoints(prog: Program) -> tuple[list[Eqn], dict[str, Atom]]:
    """The gradient of the loss with respect to every float value of the forward program.

    A plain reverse sweep through the VJP rules (no fusion, nothing pruned), only for
    display: the generated backward keeps just what the parameters' gradients need.
    """
    taken = {e.out.name for e in prog.eqns + prog.backward} | {d.var.name for d in prog.inputs}
    b = Builder(Namer(taken | {p.var.name for p in prog.params} | set(prog.dims)))
    cts: dict[str, Atom] = {prog.loss.name: Lit(1.0)}
    for eqn in reversed(prog.eqns):
        g = cts.get(eqn.out.name)
        if g is None or not PRIMITIVES[eqn.prim].differentiable:
            continue
        for inp, ct in zip(eqn.inputs, PRIMITIVES[eqn.prim].vjp(b, eqn, g)):
            if ct is not None and isinstance(inp, Var) and inp.dtype == "float":
                cts[inp.name] = ct if inp.name not in cts else b.add(cts[inp.name], ct)
    return b.eqns, cts


def concrete_inputs(prog: Program, assigns: list[str], data: dict[str, Any] | None = None) -> dict:
    """Input values from `NAME=VALUE` texts (a number or a JSON list) and/or a data mapping,
    checked against the spec's types; raises ValueError with a message for the user."""
    given: dict[str, Any] = dict(data or {})
    assigned: set[str] = set()  # an --input overrides --data, but not an earlier --input
    for text in assigns:
        name, sep, value = text.partition("=")
        if not sep:
            raise ValueError(f"--input {text!r}: expected NAME=VALUE, e.g. x=1.5 or x=[0.05,0.1]")
        if name.strip() in assigned:
            raise ValueError(f"--input {name.strip()} is given twice")
        assigned.add(name.strip())
        try:
            given[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"--input {text!r}: the value must be a number or a list such as [1, 2]") from None
    decls = {d.var.name: d for d in prog.inputs}
    unknown = sorted(set(given) - set(decls))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not an input of model {prog.name} "
                         f"(inputs: {', '.join(decls) or 'none'})")
    dims: dict[str, int] = {}
    bound_by: dict[str, str] = {}  # the input that first gave each symbolic dimension its size
    out = {}
    for name, d in decls.items():
        if name not in given:
            raise ValueError(f"missing a value for input {name!r} (give --input {name}=... or --data FILE)")
        try:
            value = np.asarray(given[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"input {name!r}: not a rectangular array of numbers") from None
        if not np.all(np.isfinite(value)):  # as nnc train refuses such data
            at = [int(i) for i in np.argwhere(~np.isfinite(value))[0]]
            raise ValueError(f"input {name!r} holds nan or inf" + (f" (at {at})" if at else ""))
        if d.var.dtype == "int":
            if not np.array_equal(value, np.round(value)):
                raise ValueError(f"input {name!r} holds class labels: whole numbers expected")
            value = value.astype(np.int64)
            if d.classes is not None and value.size and not (0 <= value.min() and value.max() < d.classes):
                raise ValueError(f"input {name!r} holds class labels in [0, {d.classes}), "
                                 f"got values from {value.min()} to {value.max()}")
        clash = _clash(d.var.shape, value.shape, dims, bound_by)
        if clash is not None:
            raise ValueError(f"input {name!r} must have shape {_shape(d.var)}, got {list(value.shape)}{clash}")
        bound_by.update({dim: name for dim in d.var.shape if isinstance(dim, str) and dim not in bound_by})
        out[name] = value
    return out


def _clash(shape, actual, dims: dict[str, int], bound_by: dict[str, str]) -> str | None:
    """None when `actual` matches `shape` (binding symbolic dimensions in `dims` consistently),
    else what to add to the error: "" or, for a size an earlier input gave, where it came from."""
    if len(shape) != len(actual):
        return ""
    for want, n in zip(shape, actual):
        if isinstance(want, int) and want != n:
            return ""
        if isinstance(want, str) and dims.setdefault(want, n) != n:
            where = f"in input {bound_by[want]!r}" if want in bound_by else "on an earlier axis of this input"
            return f": {want} is {n} here but {dims[want]} {where}"
    return None


def load_data(path: Path) -> dict[str, Any]:
    """Arrays by input name from a .npz or .json file."""
    if path.suffix.lower() == ".npz":  # as nnc train reads one: a zip of arrays, never unpickled
        from .runtime.data import _load_npz

        return _load_npz(path).arrays
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark is no part of it
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
        if isinstance(data, dict):
            return data
    raise ValueError(f"{path}: expected a .npz file or a .json object mapping input names to arrays")


def initial_params(module_source: str, seed: int = 0) -> dict[str, Any]:
    """`init_params(seed, dtype="float64")` of a generated module's source (nnc's own output)."""
    module = types.ModuleType("_nnc_graph_model")
    exec(compile(module_source, "<generated module>", "exec"), module.__dict__)  # noqa: S102 - generated code
    return module.init_params(seed, dtype="float64")


def graph_values(prog: Program, params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, tuple]:
    """(value, gradient or None) of every variable, for `inputs` and `params` (spec names)."""
    env: dict[str, Any] = {}
    for d in prog.inputs:
        value = np.asarray(inputs[d.var.name])
        env[d.var.name] = value
        for dim, n in zip(d.var.shape, value.shape):
            if isinstance(dim, str):
                env[dim] = n
    env.update({p.var.name: np.asarray(params[p.name], dtype=np.float64) for p in prog.params})
    adj_eqns, cts = adjoints(prog)
    values = evaluate(tuple(prog.eqns) + tuple(adj_eqns) + tuple(prog.backward), env)

    def value_of(a: Atom):
        if isinstance(a, Var):
            return values[a.name]
        return float(a.value) if isinstance(a, Lit) else None

    names = [d.var.name for d in prog.inputs] + [p.var.name for p in prog.params]
    names += [e.out.name for e in prog.eqns + prog.backward]
    return {n: (values[n], value_of(cts[n]) if n in cts else None) for n in names}


class _Dot:
    def __init__(self, name: str):
        self.lines = [f"digraph {_q(name)} {{", "  rankdir=LR;", "  newrank=true;", '  fontname="Helvetica";',
                      '  node [fontname="Helvetica", fontsize=10, style=filled, fillcolor="white"];',
                      '  edge [fontname="Helvetica", fontsize=9];']
        self.consts = 0

    def node(self, ident: str, label: str, indent: str = "  ", **attrs: str) -> None:
        extra = "".join(f", {k}={v}" for k, v in attrs.items())
        self.lines.append(f"{indent}{_q(ident)} [label={_q(label)}{extra}];")

    def const(self, a: Atom, indent: str) -> str:
        self.consts += 1
        ident = f"const{self.consts}"
        text = str(a) if isinstance(a, Lit) else size_text(a.dims)  # a Size: elements of some axes
        self.node(ident, text, indent, shape="plaintext", style='""')
        return ident


def _label(eqn: Eqn) -> str:
    params = " ".join(f"{k}={v}" for k, v in eqn.params if v is not None and v is not False)
    op = f"{eqn.prim} {params}".strip()
    return op if eqn.out.temp else f"{eqn.out.name} = {op}"


def to_dot(prog: Program, *, backward: bool = False, values: dict[str, tuple] | None = None,
           digits: int = 4) -> str:
    """The DOT text of `prog`'s graph (forward only unless `backward`), annotated with `values`."""
    dot = _Dot(prog.name)
    for d in prog.inputs:
        dot.node(d.var.name, f"input {d.var.name}\n{_shape(d.var)}", shape="ellipse",
                 fillcolor=_q(_INPUT))
    for p in prog.params:
        dot.node(p.var.name, f"param {p.name}\n{_shape(p.var)}", shape="box",
                 style=_q("rounded,filled"), fillcolor=_q(_PARAM))
    edges: list[str] = []
    outputs = {o.name for o in prog.outputs}
    groups = [("forward", prog.eqns, _OP)] + ([("backward", prog.backward, _BACK)] if backward else [])
    for kind, eqns, color in groups:
        by_line: dict[int, list[Eqn]] = {}
        for e in eqns:
            by_line.setdefault(e.line, []).append(e)
        for line, group in by_line.items():
            indent = "    " if line else "  "
            if line:
                text = " ".join(" ".join(prog.statement_lines(line)).split())
                title = f"{prog.source_name}:{line}  {text}" if kind == "forward" else f"backward of line {line}"
                dot.lines.append(f"  subgraph {_q(f'cluster_{kind}_{line}')} {{")
                dot.lines += [f"    label={_q(title)};", '    style=dashed;', '    color="gray60";']
            for e in group:
                attrs = {"shape": "box", "fillcolor": _q(color)}
                label = _label(e)
                if e.out.name == prog.loss.name:
                    attrs["peripheries"] = "2"
                if e.out.name in outputs:
                    attrs["penwidth"] = "2"
                if values is not None and e.out.name == prog.loss.name:
                    label += f"\n{fmt_value(values[e.out.name][0], digits)}"
                dot.node(e.out.name, label, indent, **attrs)
                for a in e.inputs:
                    src = a.name if isinstance(a, Var) else dot.const(a, indent)
                    edges.append(_edge(src, e.out.name, a, values, digits, kind))
            if line:
                dot.lines.append("  }")
    if backward:
        for name, g in prog.grads:
            ident = f"grad:{name}"
            dot.node(ident, f"gradient of {name}", shape="ellipse", fillcolor=_q(_BACK))
            src = g.name if isinstance(g, Var) else dot.const(g, "  ")
            edges.append(_edge(src, ident, g, values, digits, "backward"))
    dot.lines += edges
    dot.lines.append("}")
    return "\n".join(dot.lines) + "\n"


def _edge(src: str, dst: str, a: Atom, values, digits: int, kind: str) -> str:
    style = ', color="#b03a2e"' if kind == "backward" else ""
    if values is None or not isinstance(a, Var) or a.name not in values:
        return f"  {_q(src)} -> {_q(dst)} [label={_q(_shape(a))}{style}];"
    value, grad = values[a.name]
    rows = [_html(_shape(a)), f'<font color="{_VALUE}">{_html(fmt_value(value, digits))}</font>']
    if grad is not None and kind == "forward":
        rows.append(f'<font color="{_GRAD}">grad {_html(fmt_value(grad, digits))}</font>')
    return f"  {_q(src)} -> {_q(dst)} [label=<{'<br/>'.join(rows)}>{style}];"


def _dot_failure(result: subprocess.CompletedProcess) -> str:
    """What dot said, or, when it said nothing, how it ended (a signal: killed, out of memory)."""
    said = result.stderr.decode(errors="replace").strip()
    if said:
        return said
    if result.returncode < 0:
        import signal

        try:
            name = signal.Signals(-result.returncode).name
        except ValueError:
            name = f"signal {-result.returncode}"
        return f"dot was killed by {name} before it finished (a large graph can take minutes; -o FILE.dot needs no dot)"
    return f"dot exited with status {result.returncode} and no message"


def graph_size(dot_text: str) -> tuple[int, int]:
    """(nodes, edges) of DOT text that to_dot wrote (one statement a line)."""
    nodes = edges = 0
    for line in dot_text.splitlines():
        if " -> " in line:
            edges += 1
        elif line.lstrip().startswith('"') and " [" in line:
            nodes += 1
    return nodes, edges


# dot's layout grows much faster than the graph: a chain of 20 dense layers with --backward
# (445 nodes, 550 edges) took 6 s here, 40 layers (870 nodes) over 2 minutes
LARGE_GRAPH = 400


def render(dot_text: str, out: Path, waiting: Callable[[float], None] | None = None) -> None:
    """Write `dot_text` to `out`: as DOT for .dot/.gv, else rendered by Graphviz's `dot`,
    calling `waiting(seconds so far)` about once a second while dot works."""
    suffix = out.suffix.lower()
    if suffix in DOT_SUFFIXES:
        write_atomically(out, dot_text)
        return
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizMissing(
            f"cannot render {out.name}: the Graphviz 'dot' program is not installed "
            f"(Debian/Ubuntu: apt-get install graphviz); use -o {out.with_suffix('.dot').name} for the DOT text")

    def dot(target: str) -> None:  # dot writes the temporary file, renamed over `out` once whole
        result = _run_dot([exe, f"-T{RENDERED[suffix]}", "-o", target], dot_text.encode("utf-8"), waiting)
        if result.returncode != 0:
            raise GraphvizError(f"dot failed: {_dot_failure(result)}")

    _replace_file(out, dot)


def _run_dot(cmd: list[str], text: bytes, waiting: Callable[[float], None] | None) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, input=text, capture_output=True), with `waiting` called between
    one-second waits. Ctrl-C (or any exception) kills dot before it propagates."""
    if waiting is None:
        return subprocess.run(cmd, input=text, capture_output=True, check=False)
    start = time.monotonic()
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            pending: bytes | None = text
            while True:
                try:
                    stdout, stderr = proc.communicate(pending, timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    pending = None  # communicate keeps feeding what it has started to write
                    waiting(time.monotonic() - start)
        except BaseException:
            proc.kill()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
