"""Reference evaluation of IR equations with NumPy (a test oracle and a debugging aid).

Each equation is evaluated through its primitive's emission, one at a time, so the
values of every intermediate (forward and adjoint) can be inspected by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..codegen.emit import atom_text
from ..primitives import PRIMITIVES
from ..primitives.core import ATOM, Operand
from ..runtime import kernels

_GLOBALS = {"xp": np, "_softmax": kernels._softmax, "_log_softmax": kernels._log_softmax,
            "_onehot": kernels._onehot, "__builtins__": {}}


def evaluate(eqns, env: dict[str, Any], xp: Any = np) -> dict[str, Any]:
    """Evaluate `eqns` in order; `env` maps input, parameter and dimension names to values."""
    env = dict(env)
    glb = dict(_GLOBALS, xp=xp)
    for eqn in eqns:
        spec = PRIMITIVES[eqn.prim].emit(eqn.inputs, dict(eqn.params))
        texts = [f"({atom_text(a)[0]})" for a in eqn.inputs]
        code = spec.fmt.format(*(Operand(t, t, ATOM) for t in texts))
        env[eqn.out.name] = eval(code, glb, env)  # noqa: S307 - compiler-made code, never user text
    return env
