"""Random valid specs over the language's functions, for property and differential tests.

`generate(pick)` writes a spec; `pick(options)` chooses one element (hypothesis's
`draw(sampled_from(...))` or a seeded `random.Random().choice`). Values keep a rough
bound on their magnitude so exp, powers and products never overflow, and log, sqrt and
division only see arguments bounded away from zero. Shapes mix the broadcasting
patterns (), (n,), (1, n), (m, 1) and (m, n). With `batch=True` the first axis of the
inputs is a symbolic batch dimension `B` (written for m, which is then 5, a size nothing
else has): parameters never span it, so any batch size runs the spec, and means over it
divide by a size known only at call time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

M, N = 3, 4  # distinct, so a gradient summed over the wrong axis has the wrong shape
M_BATCH = 5  # m in batch mode: distinct from N and from every layer width (2, 3)
SHAPES = [(), (N,), (1, N), (M, 1), (M, N)]
Pick = Callable[[Sequence], object]


@dataclass
class Value:
    name: str
    shape: tuple[int, ...]
    bound: float  # |entries| stay below about this


@dataclass
class _Spec:
    pick: Pick
    m: int = M  # the size of the inputs' first axis
    batch: bool = False  # m is written as the symbolic dimension B in inputs
    lines: list[str] = field(default_factory=list)
    pool: list[Value] = field(default_factory=list)
    count: int = 0

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [(), (N,), (1, N), (self.m, 1), (self.m, N)]

    def input_dims(self, shape: tuple[int, ...]) -> str:
        return _dims(tuple("B" if self.batch and d == self.m else d for d in shape))

    def spans_batch(self, *sizes: int) -> bool:
        """Whether a parameter of these sizes would span the batch axis (not allowed)."""
        return self.batch and self.m in sizes

    def new_name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def param(self, shape: tuple[int, ...]) -> Value:
        assert not self.spans_batch(*shape), shape
        name = self.new_name("p")
        init = self.pick(["normal(0.5)", "uniform(-1, 1)", "0.3"] if shape else ["0.3", "-0.7", "normal(1.0)"])
        self.lines.append(f"param {name} : float{_dims(shape)} = {init}")
        return Value(name, shape, 3.0)

    def operand(self) -> Value:
        # later values are likelier, so the graph grows deep as well as wide
        weights = self.pool + self.pool[len(self.pool) // 2:] + self.pool[-2:]
        return self.pick(weights)


def _dims(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]" if shape else ""


def _bshape(a, b):
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None


_SQUASH = ["tanh", "sigmoid", "arctan", "sin", "cos"]
_KINKED = ["relu", "leaky_relu({}, alpha=0.2)", "abs", "elu({}, alpha=0.7)", "step", "sign"]
_SMOOTH = ["softplus", "silu", "gelu", "identity"]


def _unary(s: _Spec, a: Value) -> tuple[str, tuple, float]:
    kinds = ["squash", "kinked", "smooth", "neg", "pow", "logsqrt"]
    if a.bound <= 4:
        kinds.append("exp")
    if a.shape:
        kinds += ["softmax", "reduce", "reduce"]
    kind = s.pick(kinds)
    if kind == "squash":
        return f"{s.pick(_SQUASH)}({a.name})", a.shape, 1.6
    if kind in ("kinked", "smooth"):
        fn = s.pick(_KINKED if kind == "kinked" else _SMOOTH)
        text = fn.format(a.name) if "{}" in fn else f"{fn}({a.name})"
        return text, a.shape, a.bound + 1
    if kind == "neg":
        return f"-{a.name}", a.shape, a.bound
    if kind == "pow":
        if a.bound > 10:
            return f"tanh({a.name}) ^ 3", a.shape, 1.0
        p = s.pick(["2", "3"])
        return f"{a.name} ^ {p}", a.shape, a.bound ** int(p) + 1
    if kind == "logsqrt":
        fn = s.pick(["log", "sqrt"])
        return f"{fn}(1 + {a.name} ^ 2)", a.shape, math.log1p(a.bound ** 2) + a.bound + 1
    if kind == "exp":
        return f"exp({a.name})", a.shape, math.exp(a.bound)
    if kind == "softmax":
        fn = s.pick(["softmax", "log_softmax"])
        axis = s.pick(list(range(-len(a.shape), len(a.shape))))
        return f"{fn}({a.name}, axis={axis})", a.shape, 2 * a.bound + 3
    fn = s.pick(["sum", "mean"])
    axis = s.pick([None, *range(len(a.shape))])
    if axis is None:
        return f"{fn}({a.name})", (), a.bound * int(np.prod(a.shape))
    shape = a.shape[:axis] + a.shape[axis + 1:]
    return f"{fn}({a.name}, axis={axis})", shape, a.bound * a.shape[axis]


def _binary(s: _Spec, a: Value) -> tuple[str, tuple, float] | None:
    partners = [b for b in s.pool if _bshape(a.shape, b.shape) is not None]
    b = s.pick(partners)  # a itself is always a partner
    shape = _bshape(a.shape, b.shape)
    op = s.pick(["+", "-", "*", "/", "maximum", "minimum"])
    if op in ("+", "-"):
        return f"{a.name} {op} {b.name}", shape, a.bound + b.bound
    if op == "*":
        if a.bound * b.bound > 1e3:
            return f"{a.name} * tanh({b.name})", shape, a.bound
        return f"{a.name} * {b.name}", shape, a.bound * b.bound
    if op == "/":  # the denominator stays in [1, 3]
        return f"{a.name} / (2 + sin({b.name}))", shape, a.bound
    return f"{op}({a.name}, {b.name})", shape, max(a.bound, b.bound)


def _layer(s: _Spec, a: Value, name: str) -> tuple[str, tuple, float] | None:
    if not a.shape or len(a.shape) > 2 or a.bound > 100:
        return None
    kind = s.pick(["dense", "matmul", "lmatmul", "prelu", "transpose"])
    if kind == "transpose" and len(a.shape) == 1:
        kind = "matmul"  # a vector's transpose is itself: take it to a product instead
    k = a.shape[-1]
    if kind != "transpose" and s.spans_batch(a.shape[0] if kind == "lmatmul" else k):
        return None  # its parameter would span the batch axis
    if kind == "dense":
        units = s.pick([2, 3])
        return f"dense({a.name}, {units})", a.shape[:-1] + (units,), a.bound * k + 1
    if kind == "prelu":
        return f"prelu({a.name})", a.shape, a.bound
    if kind == "transpose":
        return f"transpose({a.name})", a.shape[::-1], a.bound
    if kind == "lmatmul":  # W @ a contracts a's first axis
        w = s.param((s.pick([2, 3]), a.shape[0]))
        return f"{w.name} @ {a.name}", w.shape[:1] + a.shape[1:], 3 * a.bound * a.shape[0]
    w = s.param((k, s.pick([2, 3])) if s.pick([True, False]) else (k,))
    return f"{a.name} @ {w.name}", a.shape[:-1] + w.shape[1:], 3 * a.bound * k


def _loss(s: _Spec, v: Value) -> str:
    forms = ["sum", "mean", "l2", "mse", "sse", "bce"]
    if len(v.shape) == 2 and v.bound < 100 and not s.spans_batch(v.shape[1]):
        forms += ["cross_entropy", "cross_entropy_probs", "hinge"]
    form = s.pick(forms)
    if form in ("sum", "mean", "l2"):
        return f"{form}({v.name})"
    if form in ("mse", "sse", "bce"):
        shape = s.pick([v.shape] + [sh for sh in s.shapes if _bshape(sh, v.shape) == v.shape and sh != v.shape])
        s.lines.insert(1, f"input t : float{s.input_dims(shape)}")
        return f"{form}({v.name}, t)"
    rows, classes = v.shape
    if form == "cross_entropy_probs":
        s.lines.insert(1, f"input q : float{s.input_dims((rows, classes))}")
        return f"cross_entropy({v.name}, q)"
    s.lines.insert(1, f"input y : int{s.input_dims((rows,))}")
    return f"{form}({v.name}, y)" if form == "cross_entropy" else f"hinge({v.name}, y, margin=0.5)"


def generate(pick: Pick, steps: int, batch: bool = False) -> str:
    """A random valid spec with `steps` definitions before the loss (see the module doc for
    `batch`)."""
    s = _Spec(pick, M_BATCH if batch else M, batch)
    s.lines = ["model random", f"input x : float{s.input_dims((s.m, N))}"]
    s.pool.append(Value("x", (s.m, N), 3.0))
    if pick([True, False]):
        s.lines.append(f"input u : float[{N}]")
        s.pool.append(Value("u", (N,), 3.0))
    for _ in range(pick([1, 2, 3])):
        s.pool.append(s.param(pick([sh for sh in s.shapes if not s.spans_batch(*sh)])))
    for _ in range(steps):
        name = s.new_name("v")
        a = s.operand()
        kind = pick(["unary", "unary", "binary", "binary", "layer"])
        made = (_unary(s, a) if kind == "unary" else _binary(s, a) if kind == "binary"
                else _layer(s, a, name)) or _unary(s, a)
        text, shape, bound = made
        s.lines.append(f"{name} = {text}")
        s.pool.append(Value(name, shape, bound))
    last = s.pool[-1]
    loss = _loss(s, last)
    extra = pick([None, *[v for v in s.pool if v is not last]])
    if extra is not None:  # a second term, so more of the graph reaches the loss
        loss += f" + 0.5 * mean({extra.name})" if extra.shape else f" + 0.5 * {extra.name}"
    s.lines.append(f"loss = {loss}")
    s.lines.append(f"output {last.name}")
    if pick([True, False]):
        s.lines.append("wrt x")
    return "\n".join(s.lines) + "\n"
