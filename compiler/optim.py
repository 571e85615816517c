"""Optimizers: each declares its settings and builds its per-parameter update as IR.

An update rule receives a Builder, atoms for one parameter `p` and its gradient `g`,
its state buffers, the settings `hp` (with `hp["lr"]` an atom: a literal, or the
host scalar `lr` when a schedule is in force) and the host scalar `step` (1 for the
first update). It returns the new parameter and buffers. Shapes stay symbolic
(scalars): the same rule applies to every parameter. Equations whose operands are all
host scalars (bias corrections, step sizes) are computed once per step, before the
loop over parameters. Every rule follows torch.optim's arithmetic so that trajectories
can be compared with it.

Settings common to all optimizers: the learning-rate schedule (`schedule`, `gamma`,
`step_size`, `total_steps`, `min_lr`) and gradient clipping by global norm
(`clip_norm`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .ir.builder import Builder
from .ir.core import Atom, Eqn, Lit, Program, Var
from .ir.naming import RESERVED, Namer
from .passes.dce import live_split
from .primitives import PRIMITIVES

Buffers = Mapping[str, Atom]  # one parameter's state buffers, by name (a rule only reads them)
Update = tuple[Atom, dict[str, Atom]]  # an update rule's result: the new parameter and buffers
UpdateRule = Callable[[Builder, Atom, Atom, Buffers, dict[str, Any], Atom], Update]  # (b, p, g, bufs, hp, step)
Direction = tuple[tuple[Eqn, ...], dict[str, Atom]] | str  # (eqns, {param name: direction}), or why not
DirectionRule = Callable[[Program, Builder], Direction]


@dataclass(frozen=True)
class Optimizer:
    name: str
    hyper: tuple[tuple[str, Any], ...]  # (name, default) in signature order
    buffers: Callable[[dict[str, Any]], tuple[str, ...]]  # per-parameter state buffer names
    update: UpdateRule  # (b, p, g, bufs, hp, step) -> (new p, new bufs)
    # Optional: the step direction replacing the gradient (perceptron); returns an error
    # message when the model does not fit, else (eqns, {param name: direction atom}).
    direction: DirectionRule | None = None


OPTIMIZERS: dict[str, Optimizer] = {}

SCHEDULES = ("constant", "step", "exponential", "cosine")
COMMON: tuple[tuple[str, Any], ...] = (
    ("schedule", "constant"), ("gamma", None), ("step_size", None), ("total_steps", None),
    ("min_lr", 0.0), ("clip_norm", None),
)
CHOICES = {"schedule": SCHEDULES}
SCHEDULE_SETTINGS = ("gamma", "step_size", "total_steps", "min_lr")
SCHEDULE_SETTINGS_USED = {"constant": (), "step": ("gamma", "step_size"), "exponential": ("gamma",),
                          "cosine": ("total_steps", "min_lr")}
INTEGER_SETTINGS = frozenset({"step_size", "total_steps"})
BOOL_SETTINGS = frozenset({"nesterov"})
# Allowed ranges: (low, high, high included?); low is always included.
_RANGES = {
    "momentum": (0.0, 1.0, False), "beta1": (0.0, 1.0, False), "beta2": (0.0, 1.0, False),
    "alpha": (0.0, 1.0, True), "rho": (0.0, 1.0, True), "gamma": (0.0, math.inf, False),
    "step_size": (1.0, math.inf, False), "total_steps": (1.0, math.inf, False),
}


def optimizer(name: str, hyper: tuple[tuple[str, Any], ...],
              buffers: Callable[[dict[str, Any]], tuple[str, ...]] = lambda hp: (),
              direction: DirectionRule | None = None) -> Callable[[UpdateRule], UpdateRule]:
    def register(update: UpdateRule) -> UpdateRule:
        OPTIMIZERS[name] = Optimizer(name, hyper, buffers, update, direction)
        return update

    return register


def settings(name: str) -> dict[str, Any]:
    """Every setting of optimizer `name` with its default: its own, then the common ones."""
    return dict(OPTIMIZERS[name].hyper) | dict(COMMON)


def setting_kind(key: str) -> str:
    """How a setting is written in a spec: "bool", "choice", "int" or "number"."""
    if key in BOOL_SETTINGS:
        return "bool"
    if key in CHOICES:
        return "choice"
    return "int" if key in INTEGER_SETTINGS else "number"


def check_value(key: str, value: Any) -> str | None:
    """Why `value` is not allowed for setting `key` (None when it is)."""
    if setting_kind(key) in ("bool", "choice"):
        return None
    low, high, closed = _RANGES.get(key, (0.0, math.inf, False))
    if not math.isfinite(value):  # nan passes every range test below
        return f"'{key}' must be a finite number, got {value}"
    if key == "clip_norm" and value <= 0:
        return "'clip_norm' must be positive"
    if key == "eps" and value <= 0:  # torch allows 0; here it would make 0 / 0 wherever a gradient is 0
        return ("'eps' must be positive: it keeps the update's division finite where a gradient is 0 "
                "(a dead relu unit, an unused parameter), which eps=0 turns into nan")
    if value < low or value > high or (value == high and not closed):
        upper = "" if high == math.inf else f" and {'at most' if closed else 'below'} {high:g}"
        return f"'{key}' must be at least {low:g}{upper}, got {value:g}"
    return None


def check_settings(hp: dict[str, Any]) -> str | None:
    """Why a combination of settings does not work (None when it does)."""
    schedule = hp["schedule"]
    if hp.get("nesterov") and not hp.get("momentum"):
        return "nesterov momentum needs momentum > 0"
    if schedule == "step" and (hp["step_size"] is None or hp["gamma"] is None):
        return "schedule=step needs step_size (optimizer steps between decays) and gamma (the factor)"
    if schedule == "exponential" and hp["gamma"] is None:
        return "schedule=exponential needs gamma (the factor applied after every step)"
    if schedule == "cosine" and hp["total_steps"] is None:
        return "schedule=cosine needs total_steps (the steps over which lr decays to min_lr)"
    if schedule == "cosine" and hp["min_lr"] > hp.get("lr", math.inf):
        # CosineAnnealingLR would raise the rate towards min_lr, which no one means by a decay
        return f"min_lr ({_show(hp['min_lr'])}) is above lr ({_show(hp['lr'])}): cosine decays lr down to min_lr, so min_lr must be at most lr"
    # a setting the schedule never reads would be silently ignored (min_lr with schedule=step
    # sets no floor): an error, as in the spec it is one
    defaults = dict(COMMON)
    for key in SCHEDULE_SETTINGS:
        if key not in SCHEDULE_SETTINGS_USED[schedule] and hp[key] != defaults[key]:
            return f"{key} has no effect with schedule={schedule}"
    return None


def schedule_source(hp: dict[str, Any], traced: bool = False) -> str | None:
    """The Python expression of the learning rate at `step` (None for a constant rate).

    Steps count from 1; the closed forms of torch's StepLR, ExponentialLR and
    CosineAnnealingLR stepped once per optimizer step (cosine stays at min_lr after
    total_steps instead of rising again). With `traced`, the expression for a step count
    that is an array (traced by jax.jit): cosine's `math.cos` and `min` become `xp.cos` and
    `xp.minimum`; the other schedules are arithmetic that works on either.
    """
    lr, schedule = float(hp["lr"]), hp["schedule"]
    if schedule == "step":
        return f"{lr!r} * {float(hp['gamma'])!r} ** ((step - 1) // {int(hp['step_size'])})"
    if schedule == "exponential":
        return f"{lr!r} * {float(hp['gamma'])!r} ** (step - 1)"
    if schedule == "cosine":
        low, total = float(hp["min_lr"]), int(hp["total_steps"])
        cos, least = ("xp.cos", "xp.minimum") if traced else ("math.cos", "min")
        wave = f"(1.0 + {cos}(math.pi * {least}(step - 1, {total}) / {total})) / 2.0"
        return f"{low!r} + {lr - low!r} * {wave}" if low else f"{lr!r} * {wave}"
    return None


def lr_at(hp: dict[str, Any], step: int) -> float:
    """The learning rate at `step` (from 1): the value the expression of schedule_source gives."""
    lr, schedule = float(hp["lr"]), hp["schedule"]
    if schedule == "step":
        return lr * float(hp["gamma"]) ** ((step - 1) // int(hp["step_size"]))
    if schedule == "exponential":
        return lr * float(hp["gamma"]) ** (step - 1)
    if schedule == "cosine":
        low, total = float(hp["min_lr"]), int(hp["total_steps"])
        wave = (1.0 + math.cos(math.pi * min(step - 1, total) / total)) / 2.0
        return low + (lr - low) * wave if low else lr * wave
    return lr


def describe(name: str, hp: dict[str, Any]) -> str:
    """`adam(lr=0.001, ...)`: the optimizer's own settings, then the active common ones."""
    own = [k for k, _ in OPTIMIZERS[name].hyper]
    common = [k for k, default in COMMON if hp.get(k, default) != default]
    return f"{name}(" + ", ".join(f"{k}={_show(hp[k])}" for k in own + common) + ")"


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return v if isinstance(v, str) else f"{v:g}"


def _decay(b: Builder, g: Atom, p: Atom, hp: dict) -> Atom:
    """L2 weight decay folded into the gradient, as torch.optim does (g + wd * p)."""
    return b.add(g, b.mul(hp["weight_decay"], p), hint="grad") if hp.get("weight_decay") else g


def _average(b: Builder, decay: float, avg: Atom, x: Atom) -> Atom:
    """The running average decay * avg + (1 - decay) * x."""
    # written `1.0 - decay`: the same double as PyTorch's 1 - beta, without its rounding digits
    rest = Lit(1.0 - decay, text=f"1.0 - {float(decay)!r}")
    return b.add(b.mul(decay, avg), b.mul(rest, x))


# ---- the optimizers ---------------------------------------------------------------------------

@optimizer("sgd", (("lr", 0.01), ("momentum", 0.0), ("nesterov", False), ("weight_decay", 0.0)),
           buffers=lambda hp: ("velocity",) if hp["momentum"] else ())
def sgd(b: Builder, p: Atom, g: Atom, bufs: Buffers, hp: dict[str, Any], step: Atom) -> Update:
    # PyTorch's convention: v = momentum * v + g;  p -= lr * (g + momentum * v if nesterov else v)
    g = _decay(b, g, p, hp)
    if not hp["momentum"]:
        return b.sub(p, b.mul(hp["lr"], g)), {}
    v = b.add(b.mul(hp["momentum"], bufs["velocity"]), g)
    direction = b.add(g, b.mul(hp["momentum"], v)) if hp["nesterov"] else v
    return b.sub(p, b.mul(hp["lr"], direction)), {"velocity": v}


_ADAM = (("lr", 0.001), ("beta1", 0.9), ("beta2", 0.999), ("eps", 1e-08))


def _adam_update(b: Builder, p: Atom, g: Atom, bufs: Buffers, hp: dict[str, Any], step: Atom) -> Update:
    # m and v are running averages of g and g^2; dividing by 1 - beta^step removes
    # their bias towards the zero they start from (Kingma & Ba, Algorithm 1).
    m = _average(b, hp["beta1"], bufs["exp_avg"], g)
    v = _average(b, hp["beta2"], bufs["exp_avg_sq"], b.square(g))
    bias1 = b.sub(1.0, b.pow(hp["beta1"], step), hint="bias_correction1")
    bias2 = b.sub(1.0, b.pow(hp["beta2"], step), hint="bias_correction2")
    step_size = b.div(hp["lr"], bias1, hint="step_size")
    denom = b.add(b.div(b.sqrt(v), b.pow(bias2, 0.5, hint="bias_correction2_sqrt")), hp["eps"])
    return b.sub(p, b.mul(step_size, b.div(m, denom))), {"exp_avg": m, "exp_avg_sq": v}


@optimizer("adam", _ADAM + (("weight_decay", 0.0),), buffers=lambda hp: ("exp_avg", "exp_avg_sq"))
def adam(b: Builder, p: Atom, g: Atom, bufs: Buffers, hp: dict[str, Any], step: Atom) -> Update:
    return _adam_update(b, p, _decay(b, g, p, hp), bufs, hp, step)


@optimizer("adamw", _ADAM + (("weight_decay", 0.01),), buffers=lambda hp: ("exp_avg", "exp_avg_sq"))
def adamw(b: Builder, p: Atom, g: Atom, bufs: Buffers, hp: dict[str, Any], step: Atom) -> Update:
    # Decoupled weight decay (Loshchilov & Hutter): shrink p itself, not through g.
    if hp["weight_decay"]:
        p = b.mul(b.sub(1.0, b.mul(hp["lr"], hp["weight_decay"]), hint="shrink"), p)
    return _adam_update(b, p, g, bufs, hp, step)


@optimizer("rmsprop", (("lr", 0.01), ("alpha", 0.99), ("eps", 1e-08), ("momentum", 0.0),
                       ("weight_decay", 0.0)),
           buffers=lambda hp: ("square_avg", "momentum_buffer") if hp["momentum"] else ("square_avg",))
def rmsprop(b: Builder, p: Atom, g: Atom, bufs: Buffers, hp: dict[str, Any], step: Atom) -> Update:
    g = _decay(b, g, p, hp)
    v = _average(b, hp["alpha"], bufs["square_avg"], b.square(g))
    scaled = b.div(g, b.add(b.sqrt(v), hp["eps"]))
    if not hp["momentum"]:
        return b.sub(p, b.mul(hp["lr"], scaled)), {"square_avg": v}
    buf = b.add(b.mul(hp["momentum"], bufs["momentum_buffer"]), scaled)
    return b.sub(p, b.mul(hp["lr"], buf)), {"square_avg": v, "momentum_buffer": buf}


@optimizer("adagrad", (("lr", 0.01), ("eps", 1e-10), ("weight_decay", 0.0)),
           buffers=lambda hp: ("sum_sq",))
def adagrad(b: Builder, p: Atom, g: Atom, bufs: Buffers, hp: dict[str, Any], step: Atom) -> Update:
    g = _decay(b, g, p, hp)
    total = b.add(bufs["sum_sq"], b.square(g))
    return b.sub(p, b.mul(hp["lr"], b.div(g, b.add(b.sqrt(total), hp["eps"])))), {"sum_sq": total}


@optimizer("adadelta", (("lr", 1.0), ("rho", 0.9), ("eps", 1e-06), ("weight_decay", 0.0)),
           buffers=lambda hp: ("square_avg", "acc_delta"))
def adadelta(b: Builder, p: Atom, g: Atom, bufs: Buffers, hp: dict[str, Any], step: Atom) -> Update:
    # Zeiler (2012): the step is g * RMS(previous steps) / RMS(gradients).
    g = _decay(b, g, p, hp)
    v = _average(b, hp["rho"], bufs["square_avg"], b.square(g))
    delta = b.mul(b.div(b.sqrt(b.add(bufs["acc_delta"], hp["eps"])), b.sqrt(b.add(v, hp["eps"]))), g,
                  hint="delta")
    acc = _average(b, hp["rho"], bufs["acc_delta"], b.square(delta))
    return b.sub(p, b.mul(hp["lr"], delta)), {"square_avg": v, "acc_delta": acc}


# ---- the perceptron rule ------------------------------------------------------------------------

_AFFINE = {"add", "sub", "neg", "matmul", "mul", "transpose", "reshape", "broadcast_to", "sum_to"}
_NEEDS = ("perceptron() trains a single-layer model whose output is step(...) or sign(...) of an "
          "affine function of the parameters, such as 'out = step(dense(x, 1))'")


def direction_split(prog: Program) -> tuple[tuple[Eqn, ...], tuple[Eqn, ...], dict[str, Atom], Namer] | None:
    """The step direction of an optimizer that replaces the gradient (perceptron), as train_step
    computes it: the forward equations it reads, the rule's equations, the direction per
    parameter, and the namer that named them (clear of the program's names and of RESERVED).
    None for an optimizer that steps along the gradient. Codegen emits these, the summary
    counts them."""
    direction = OPTIMIZERS[prog.optimizer[0]].direction
    if direction is None:
        return None
    namer = Namer({e.out.name for e in prog.eqns + prog.backward} | {d.var.name for d in prog.inputs}
                  | {p.var.name for p in prog.params} | RESERVED)
    eqns, directions = direction(prog, Builder(namer))
    fwd, rule = live_split(prog.eqns, eqns, list(directions.values()))
    return fwd, rule, directions, namer


def perceptron_direction(prog: Program, b: Builder) -> Direction:
    """The perceptron rule w <- w + lr (t - f(y)) x as a descent direction (f(y) - t) x.

    It is the gradient of sum((f(y) - t) * y) with f(y) held constant, so it is built by
    running the registry's VJP rules backwards from the pre-activation y (summed over
    the batch: with one example per step this is Rosenblatt's online rule).
    """
    if len(prog.outputs) != 1:
        return f"{_NEEDS}; this model has {len(prog.outputs)} outputs"
    out = prog.outputs[0]
    defs = {e.out.name: e for e in prog.eqns}
    last = defs.get(out.name)
    if last is None or last.prim not in ("step", "sign"):
        what = f"{last.prim}(...)" if last is not None and len(last.inputs) == 1 else "not step(...) or sign(...)"
        return f"{_NEEDS}; output '{out.name}' is {what}"
    pre = last.inputs[0]
    param_names = {p.var.name: p.name for p in prog.params}
    depends: dict[str, bool] = {}
    chain: list[Eqn] = []
    needed = {pre.name} if isinstance(pre, Var) else set()
    for e in reversed(prog.eqns):  # the equations the pre-activation is computed from
        if e.out.name in needed:
            needed |= {a.name for a in e.inputs if isinstance(a, Var)}
    for e in prog.eqns:  # those of them between the parameters and the pre-activation
        if e.out.name not in needed:
            continue
        deps = [isinstance(a, Var) and (a.name in param_names or depends.get(a.name, False)) for a in e.inputs]
        depends[e.out.name] = any(deps)
        if any(deps):
            if e.prim not in _AFFINE or (e.prim in ("mul", "matmul") and all(deps)):
                used = "" if e.prim not in _AFFINE else " of two parameter-dependent values"
                return f"{_NEEDS}; '{e.out.name}' applies {e.prim}{used} to the parameters"
            chain.append(e)
    targets = [d.var for d in prog.inputs if d.var.dtype == "float" and d.var.shape == out.shape
               and any(d.var in e.inputs for e in prog.eqns)]
    if not targets:
        return f"{_NEEDS}; no float input of the output's shape is used as the target"
    target = targets[-1]
    # cotangents flow from the pre-activation back to the parameters
    cot: dict[str, Atom] = {pre.name: b.sub(out, target, hint="error")}
    for e in reversed(chain):
        g = cot.get(e.out.name)
        if g is None:
            continue
        for a, ga in zip(e.inputs, PRIMITIVES[e.prim].vjp(b, e, g)):
            if ga is not None and isinstance(a, Var) and (a.name in param_names or depends.get(a.name)):
                cot[a.name] = b.add(cot[a.name], ga) if a.name in cot else ga
    missing = [name for ident, name in param_names.items() if ident not in cot]
    if missing:
        return f"{_NEEDS}; parameter '{missing[0]}' does not feed the output"
    return tuple(b.eqns), {name: cot[ident] for ident, name in param_names.items()}


@optimizer("perceptron", (("lr", 1.0),), direction=perceptron_direction)
def perceptron(b: Builder, p: Atom, g: Atom, bufs: Buffers, hp: dict[str, Any], step: Atom) -> Update:
    return b.sub(p, b.mul(hp["lr"], g)), {}
