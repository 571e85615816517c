"""Checking a generated module's forward mode: jvp against finite differences of the loss and
against reverse mode (<grad, v>), and hvp against finite differences of the gradient.

Directions are random and of unit length, so a central difference perturbs every value by
at most `eps`. Everything runs in float64 with NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from .gradcheck import what_it_did


@dataclass
class Comparison:
    """One checked quantity: what the module computed against a reference."""

    what: str  # "jvp vs finite differences", ...
    direction: int
    got: float
    want: float
    error: float  # |got - want| / max(1, |want|) (for arrays: the largest over elements)
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.error <= self.tolerance)


@dataclass
class ForwardModeReport:
    comparisons: list[Comparison] = field(default_factory=list)
    error: str | None = None  # the module raised: the check failed, with this message

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.comparisons)

    def lines(self) -> list[str]:
        lines = [f"{c.what:<40} direction {c.direction}: got {c.got: .9e}  want {c.want: .9e}  "
                 f"error {c.error:.1e} (tolerance {c.tolerance:.0e})  {'ok' if c.ok else 'FAILED'}"
                 for c in self.comparisons]
        return lines + ([self.error] if self.error else [])


def _f64(a: Any) -> Any:
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def _error(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.size == 0:
        return 0.0
    err = np.abs(got - want) / np.maximum(1.0, np.abs(want))
    return float(np.max(np.where(np.isnan(err), np.inf, err)))  # a nan is no agreement


def check_forward_mode(module: ModuleType, params: dict, inputs: list, *, directions: int = 3,
                       seed: int = 0, eps: float = 1e-6, fd_tolerance: float = 1e-5,
                       mode_tolerance: float = 1e-9, reverse: bool = True,
                       hessian: bool = True) -> ForwardModeReport:
    """Check `module.jvp` (and `module.hvp`) at `params`, `inputs` along random directions.

    jvp's derivative is compared with central differences of `module.loss` and, when
    `reverse`, with <value_and_grad's gradient, v> (forward and reverse mode must agree to
    rounding); hvp, when `hessian`, with central differences of the gradient.
    """
    report = ForwardModeReport()
    try:
        with np.errstate(all="ignore"):  # non-finite values are reported, not warned (as check_module does)
            _compare(report, module, params, inputs, directions, seed, eps, fd_tolerance, mode_tolerance,
                     reverse, hessian)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - what the module under test does wrong is reported
        report.error = f"the module {what_it_did(exc)}"
    return report


def _compare(report: ForwardModeReport, module: ModuleType, params: dict, inputs: list, directions: int,
             seed: int, eps: float, fd_tolerance: float, mode_tolerance: float, reverse: bool,
             hessian: bool) -> None:
    rng = np.random.default_rng(seed)
    params = {k: _f64(v) for k, v in params.items()}
    inputs = [_f64(a) for a in inputs]
    names = list(module.INPUTS)
    wrt = {k: names.index(k) for k in module.WRT}
    grads = module.value_and_grad(params, *inputs)[1] if reverse else None

    def moved(v: dict, h: float) -> tuple[dict, list]:
        p = {k: a + h * v[k] for k, a in params.items()}
        ins = [a + h * v[names[i]] if names[i] in wrt else a for i, a in enumerate(inputs)]
        return p, ins

    for d in range(1, directions + 1):
        v = {k: rng.normal(size=np.shape(a)) for k, a in params.items()}
        v.update({k: rng.normal(size=np.shape(inputs[i])) for k, i in wrt.items()})
        norm = np.sqrt(sum(float(np.sum(a * a)) for a in v.values())) or 1.0
        v = {k: a / norm for k, a in v.items()}
        derivative = float(module.jvp(params, v, *inputs)[1])
        up, down = moved(v, eps), moved(v, -eps)
        fd = (float(module.loss(up[0], *up[1])) - float(module.loss(down[0], *down[1]))) / (2 * eps)
        report.comparisons.append(Comparison("jvp vs finite differences of the loss", d, derivative, fd,
                                             _error(derivative, fd), fd_tolerance))
        if reverse:
            inner = sum(float(np.sum(np.asarray(grads[k]) * v[k])) for k in v)
            report.comparisons.append(Comparison("jvp vs reverse mode <grad, v>", d, derivative, inner,
                                                 _error(derivative, inner), mode_tolerance))
        if hessian:
            hv = module.hvp(params, v, *inputs)
            g_up = module.value_and_grad(up[0], *up[1])[1]
            g_down = module.value_and_grad(down[0], *down[1])[1]
            worst, got, want = 0.0, 0.0, 0.0
            for k in hv:
                ref = (np.asarray(g_up[k]) - np.asarray(g_down[k])) / (2 * eps)
                err = _error(hv[k], ref)
                if err >= worst:
                    i = int(np.argmax(np.abs(np.asarray(hv[k]) - ref))) if np.size(ref) else 0
                    worst, got, want = err, float(np.ravel(hv[k])[i]), float(np.ravel(ref)[i])
            report.comparisons.append(Comparison("hvp vs finite differences of the gradient", d, got, want,
                                                 worst, fd_tolerance))
