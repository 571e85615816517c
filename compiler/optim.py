"""Optimizers: each declares its hyper-parameters and builds its update as IR.

An update rule receives a Builder and atoms for one parameter `p`, its gradient `g`,
its state buffers and the step count, and returns the new parameter and buffers.
The shapes are left symbolic (scalars), since the same rule applies to every parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Optimizer:
    name: str
    hyper: tuple[tuple[str, Any], ...]  # (name, default) in signature order
    buffers: Callable[[dict], tuple[str, ...]]  # per-parameter state buffer names
    update: Callable[..., tuple[Any, dict]]  # (b, p, g, bufs, hp) -> (new p, new bufs)


OPTIMIZERS: dict[str, Optimizer] = {}


def optimizer(name: str, hyper: tuple, buffers=lambda hp: ()):
    def register(update):
        OPTIMIZERS[name] = Optimizer(name, hyper, buffers, update)
        return update

    return register


@optimizer("sgd", (("lr", 0.01), ("momentum", 0.0), ("nesterov", False), ("weight_decay", 0.0)),
           buffers=lambda hp: ("velocity",) if hp["momentum"] else ())
def sgd(b, p, g, bufs, hp):
    # PyTorch's convention: v = momentum * v + g;  p -= lr * (g + momentum * v if nesterov else v)
    if hp["weight_decay"]:
        g = b.add(g, b.mul(hp["weight_decay"], p))
    if not hp["momentum"]:
        return b.sub(p, b.mul(hp["lr"], g)), {}
    v = b.add(b.mul(hp["momentum"], bufs["velocity"]), g)
    direction = b.add(g, b.mul(hp["momentum"], v)) if hp["nesterov"] else v
    return b.sub(p, b.mul(hp["lr"], direction)), {"velocity": v}
