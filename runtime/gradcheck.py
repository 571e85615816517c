"""Finite-difference checking of a generated module's gradients (the engine of `nnc check`).

The checker needs only the module's own metadata (INPUTS, PARAMS, WRT), `init_params`,
`loss` and `value_and_grad`, so it works on any generated module, edited or not.
At one random point it compares every analytic gradient with central differences

    numeric = (L(x + h) - L(x - h)) / 2h,   h = eps * max(1, |x|),

entry by entry for small arrays, and for large ones on a random subset of entries plus
a few random directions v, comparing (L(x + hv) - L(x - hv)) / 2h with <grad, v>.

Kinks (relu, abs, step, maximum, hinge, ...) are found without knowing which primitive
has one. Only a comparison that fails is examined: if the forward slope
(L(x + h) - L(x)) / h and the backward slope (L(x) - L(x - h)) / h disagree by more than
the analytic and central values do (one kink of jump J inside the step gives a gap of J
and an error of J/2 at most), or the differences at step h/2 move by about that much
(kinks on both sides), the step straddles a kink: the comparison is skipped and counted,
never failed. A wrong derivative at a smooth point leaves all of these within O(h |L''|)
of each other, so it still fails. When a draw has skips, the point is drawn again (a few
times) to move off the kinks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np

# Default tolerances, chosen from measurements (docs/check.md): correct float64 code
# shows errors of about 1e-10 relative and below; the planted bugs of the mutation tests
# (a dropped 1/N, a transposed gradient, a wrong tanh', a flipped sign) show 0.2 and up,
# the subtlest one (1e-3 added to gelu') 2e-4.
DEFAULTS = {
    "float64": {"eps": 1e-6, "rtol": 1e-5, "atol": 1e-8},
    "float32": {"eps": 3e-3, "rtol": 1e-2, "atol": 1e-3},
}
MAX_ENTRIES = 256  # arrays larger than this are checked on a sample plus directions
DIRECTIONS = 4  # random directional derivatives per sampled array
DRAWS = 4  # draws of the evaluation point tried when kinks or non-finite values get in the way
JITTER = 0.1  # relative noise added to init_params, so zero biases and tied constants are
# not special points (kinks, symmetric ties that hide a swapped index)
FLOAT32_NOTE = ("float32 run: rounding limits finite differences to a few digits, so the "
                "tolerances are loose; float64 (the default) is the real test")


class NotAModuleError(ValueError):
    """The object lacks what a generated module carries (INPUTS, PARAMS, loss, ...)."""


@dataclass
class Row:
    """The verdict on one gradient (a parameter, or a `wrt` input)."""

    name: str
    kind: str  # "param" | "input"
    shape: tuple[int, ...]
    mode: str = "all"  # "all": every entry; "sampled": a subset of entries plus directions
    entries: int = 0  # entries compared one by one
    directions: int = 0  # directional derivatives compared
    skipped: int = 0  # comparisons whose finite difference straddled a kink
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0  # over entries where rtol, not atol, dominates the tolerance
    worst: str = ""  # where the worst comparison was: "[2, 3]" or "direction 1"
    analytic: float | None = None
    numeric: float | None = None
    status: str = "PASS"  # "PASS" | "FAIL" | "SKIP" (every comparison straddled a kink)
    message: str = ""

    @property
    def label(self) -> str:
        return self.name if self.kind == "param" else f"{self.name} (input)"


@dataclass
class Report:
    """The outcome of a check: one Row per gradient, plus the settings that reproduce it."""

    model: str
    target: str
    dtype: str
    seed: int
    eps: float
    rtol: float
    atol: float
    max_entries: int
    dims: dict[str, int]
    loss: float | None = None
    draw: int = 0  # which draw of the evaluation point the rows come from
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the module could not be evaluated at all

    @property
    def passed(self) -> bool:
        return self.error is None and all(r.status != "FAIL" for r in self.rows) and not self.no_verdict

    @property
    def no_verdict(self) -> bool:
        """Every comparison was skipped: nothing was checked, which is no pass (a tolerance
        below what finite differences resolve makes every error look like a kink's)."""
        return bool(self.rows) and all(r.status == "SKIP" for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        for row in out["rows"]:
            row["shape"] = list(row["shape"])
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=True)

    def format(self) -> str:
        return format_report(self)


# ---- drawing the evaluation point ----------------------------------------------------------

def bind_dims(inputs: dict, given: dict[str, int] | None) -> dict[str, int]:
    """Sizes for the symbolic dimensions: small distinct primes, unless given."""
    names = list(dict.fromkeys(d for meta in inputs.values() for d in meta["shape"] if isinstance(d, str)))
    given = dict(given or {})
    unknown = sorted(set(given) - set(names))
    if unknown:
        have = ", ".join(names) if names else "none"
        raise ValueError(f"unknown dimension {', '.join(unknown)} (the model's symbolic dimensions: {have})")
    sizes = iter((3, 5, 7, 11, 13, 17, 19, 23))
    # distinct sizes, so a gradient summed over the wrong axis cannot have the right shape
    return {n: given[n] if n in given else next(sizes, 3) for n in names}


def draw_point(module: ModuleType, sizes: dict[str, int], rng: np.random.Generator, dtype: str = "float64",
               positive: bool = False) -> tuple[dict, list]:
    """Parameters (init_params plus jitter) and inputs for one check.

    `positive` draws float inputs in [0.5, 1.5] and takes |parameter| + 0.5, for models
    that apply log, sqrt or fractional powers to them.
    """
    params = {}
    for name, p in module.init_params(int(rng.integers(2**31)), dtype=dtype).items():
        p = np.asarray(p, dtype=dtype)
        rms = float(np.sqrt(np.mean(np.square(p)))) if p.size else 0.0
        jittered = p + JITTER * max(rms, 0.1) * rng.standard_normal(p.shape)
        params[name] = np.array(np.abs(jittered) + 0.5 if positive else jittered, dtype=dtype)
    return params, draw_inputs(module, sizes, rng, dtype, positive)


def draw_inputs(module: ModuleType, sizes: dict[str, int], rng: np.random.Generator, dtype: str = "float64",
                positive: bool = False) -> list[np.ndarray]:
    """NumPy inputs in INPUTS order: float ones standard normal (or in [0.5, 1.5] when
    `positive`) in `dtype`, int labels uniform over their class count (0 or 1 without one)."""
    inputs = []
    for meta in module.INPUTS.values():
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in meta["shape"])
        if meta["kind"] == "int":
            inputs.append(rng.integers(0, meta.get("classes") or 2, size=shape))
        elif positive:
            inputs.append(np.array(rng.uniform(0.5, 1.5, size=shape), dtype=dtype))
        else:
            inputs.append(np.array(rng.standard_normal(shape), dtype=dtype))
    return inputs


# ---- comparing one array -------------------------------------------------------------------

@dataclass
class _Probe:
    """One finite-difference comparison."""

    where: str
    analytic: float
    numeric: float  # the central difference
    gap: float  # forward slope - backward slope
    half: Callable[[], tuple[float, float, float]]  # the differences again at step h/2

    def straddles_kink(self, err: float) -> bool:
        """Could a kink inside [x - h, x + h] explain an error `err`?

        At a smooth point the one-sided gap is h L'' + O(h^2), so it halves with the step,
        and the central difference moves by O(h^2): a wrong derivative keeps all three
        tests far below its error. A kink of jump J at distance u h (0 < u < 1) adds
        J (1 - u) to the gap and at most J (1 - u) / 2 to the error, and breaks the
        scaling: one of the three tests exceeds the error for every u (checked in
        tests/test_check.py), even when curvature or a second kink offsets the gap.
        """
        if abs(self.gap) > err:
            return True
        central, fwd, bwd = self.half()
        return abs(self.gap - 2 * (fwd - bwd)) > err or 4 * abs(central - self.numeric) > err


class _Tolerance:
    def __init__(self, rtol: float, atol: float, loss: float):
        # Rounding in L(x+h) - L(x-h) scales with |L|, so the absolute floor does too.
        self.rtol, self.atol = rtol, atol * max(1.0, abs(loss))

    def ratio(self, probe: _Probe) -> float:
        """Error over allowed error: above 1 fails."""
        err = abs(probe.analytic - probe.numeric)
        return err / (self.atol + self.rtol * max(abs(probe.analytic), abs(probe.numeric)))


def _slopes(f: Callable[[], float], set_value: Callable[[float], float], h: float,
            loss0: float) -> tuple[float, float, float]:
    """(central, forward, backward) differences; steps are measured after rounding."""
    up_step = set_value(+h)
    up = f()
    down_step = set_value(-h)
    down = f()
    set_value(0.0)
    if not (up_step and down_step):
        raise _StepVanished(h)
    return (up - down) / (up_step + down_step), (up - loss0) / up_step, (loss0 - down) / down_step


class _StepVanished(ArithmeticError):
    """x + h rounded to x: eps is too small for the values (nnc's arithmetic, not the module's)."""


def _entry_probes(f, x: np.ndarray, grad: np.ndarray, idx: np.ndarray, eps: float, loss0: float):
    for j in idx:
        at = np.unravel_index(int(j), x.shape)  # () for a 0-d array
        old = x[at]
        h = eps * max(1.0, abs(float(old)))

        def set_value(delta, at=at, old=old):
            x[at] = old + delta
            return abs(float(x[at]) - float(old))

        central, fwd, bwd = _slopes(f, set_value, h, loss0)
        where = "[" + ", ".join(str(int(i)) for i in at) + "]"
        half = partial(_slopes, f, set_value, h / 2, loss0)
        yield _Probe(where, float(grad[at]), central, fwd - bwd, half)


def _direction_probes(f, x: np.ndarray, grad: np.ndarray, rng, count: int, eps: float, loss0: float):
    original = x.copy()
    h = eps * max(1.0, float(np.max(np.abs(original))))
    for k in range(count):
        v = rng.standard_normal(x.shape)
        v /= np.linalg.norm(v)

        def set_value(delta, v=v):
            x[...] = original + delta * v
            return h  # direction steps are not re-measured; the analytic side uses the real step

        x[...] = original + h * v
        up_step = (x - original).astype(np.float64)
        x[...] = original - h * v
        down_step = (original - x).astype(np.float64)
        x[...] = original
        analytic = float(np.sum(grad * (up_step + down_step))) / (2 * h)
        central, fwd, bwd = _slopes(f, set_value, h, loss0)
        half = partial(_slopes, f, set_value, h / 2, loss0)
        yield _Probe(f"direction {k + 1}", analytic, central, fwd - bwd, half)


def _judge(row: Row, probes, tol: _Tolerance) -> None:
    worst_ratio = -1.0
    judged = 0
    for p in probes:
        err = abs(p.analytic - p.numeric)
        ratio = tol.ratio(p)
        if not math.isfinite(p.numeric) or (ratio > 1.0 and p.straddles_kink(err)):
            row.skipped += 1  # the step straddles a kink (or leaves the domain): no verdict
            continue
        judged += 1
        scale = max(abs(p.analytic), abs(p.numeric))
        row.max_abs_err = max(row.max_abs_err, err)
        if tol.rtol * scale > tol.atol:  # smaller entries are judged by the absolute floor
            row.max_rel_err = max(row.max_rel_err, err / scale)
        if not ratio <= worst_ratio:  # also takes NaN
            worst_ratio = ratio
            row.worst, row.analytic, row.numeric = p.where, p.analytic, p.numeric
    if judged == 0 and row.skipped:
        row.status = "SKIP"
    elif not worst_ratio <= 1.0 and judged:
        row.status = "FAIL"


def _check_array(row: Row, f, x: np.ndarray, grad, dtype: str, *, rng, eps: float, tol: _Tolerance,
                 max_entries: int, loss0: float) -> None:
    if grad is None:
        row.status, row.message = "FAIL", "value_and_grad returned no gradient for it"
        return
    if not hasattr(grad, "dtype"):
        row.status = "FAIL"
        row.message = f"gradient is a {type(grad).__name__}, not an array of shape {tuple(x.shape)}"
        return
    grad = np.array(grad, copy=True)  # it may alias an array that the probes perturb
    if tuple(grad.shape) != tuple(x.shape):
        row.status = "FAIL"
        row.message = f"gradient has shape {tuple(grad.shape)}, expected {tuple(x.shape)}"
        return
    if grad.dtype != np.dtype(dtype):
        row.status, row.message = "FAIL", f"gradient has dtype {grad.dtype}, expected {dtype}"
        return
    if not np.all(np.isfinite(grad)):
        row.status, row.message = "FAIL", "gradient has non-finite entries"
        return
    size = x.size
    if size <= max_entries:
        idx = np.arange(size)
        probes = list(_entry_probes(f, x, grad, idx, eps, loss0))
    else:
        row.mode = "sampled"
        # the largest analytic entries, then random ones
        top = np.argsort(-np.abs(grad.reshape(-1)), kind="stable")[: max(1, max_entries // 16)]
        chosen = np.zeros(size, dtype=bool)
        chosen[top] = True
        rest = rng.permutation(np.flatnonzero(~chosen))[: max_entries - len(top)]
        idx = np.concatenate([top, np.sort(rest)])
        probes = list(_entry_probes(f, x, grad, idx, eps, loss0))
        probes += list(_direction_probes(f, x, grad, rng, DIRECTIONS, eps, loss0))
        row.directions = DIRECTIONS
    row.entries = len(idx)
    _judge(row, probes, tol)


# ---- the whole check -------------------------------------------------------------------------

_REQUIRED = ("INPUTS", "PARAMS", "WRT", "init_params", "loss", "value_and_grad")


def check_module(module: ModuleType, *, dims: dict[str, int] | None = None, seed: int = 0,
                 eps: float | None = None, rtol: float | None = None, atol: float | None = None,
                 max_entries: int = MAX_ENTRIES, dtype: str = "float64",
                 target: str | None = None) -> Report:
    """Check every gradient of a generated module against finite differences.

    Unset eps, rtol and atol take the defaults of `dtype` (DEFAULTS). Raises
    NotAModuleError for an object without the generated module's interface and
    ValueError for a bad argument (an unknown dimension name, dtype or max_entries, eps <= 0,
    rtol and atol both 0).
    """
    missing = [a for a in _REQUIRED if not hasattr(module, a)]
    if missing:
        raise NotAModuleError(f"not an nnc-generated module: it has no {', '.join(missing)}")
    if dtype not in DEFAULTS:
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    if max_entries < 1:
        raise ValueError("max_entries must be at least 1")
    d = DEFAULTS[dtype]
    settings = Report(
        model=str(getattr(module, "MODEL", module.__name__)),
        target=target or str(getattr(module, "SPEC", "")), dtype=dtype, seed=seed,
        eps=d["eps"] if eps is None else eps, rtol=d["rtol"] if rtol is None else rtol,
        atol=d["atol"] if atol is None else atol, max_entries=max_entries,
        dims=bind_dims(module.INPUTS, dims))
    if not settings.eps > 0:
        raise ValueError(f"eps must be positive, got {settings.eps:g}")
    if settings.rtol == 0 and settings.atol == 0:
        raise ValueError("rtol and atol cannot both be 0: rounding keeps a finite difference from "
                         "matching a gradient exactly")
    if dtype == "float32":
        settings.notes.append(FLOAT32_NOTE)
    with np.errstate(all="ignore"):  # non-finite values are detected and reported, not warned
        return _search(module, settings)


def _search(module: ModuleType, settings: Report) -> Report:
    """Draw points until one gives a verdict free of kinks (or DRAWS are used up)."""
    best: Report | None = None
    positive = False
    for draw in range(DRAWS):
        attempt, retry = _attempt(module, settings, draw, positive)
        if retry and not positive:
            positive = True  # log, sqrt or pow of an input or parameter: try positive values
            attempt, retry = _attempt(module, settings, draw, positive)
        if attempt.error is not None and not retry:
            return attempt  # the module raised, or its two loss functions disagree
        if attempt.error is None and (not attempt.passed or not _skips(attempt)):
            if draw and attempt.passed and best is not None and best.error is None:
                attempt.notes.append(f"drawn {draw + 1} times: earlier points had comparisons "
                                     "straddling kinks")
            return attempt  # a failure is reported as found; a clean pass ends the search
        if best is None or best.error is not None or (
                attempt.error is None and _skips(attempt) < _skips(best)):
            best = attempt
    assert best is not None
    if best.error is None:
        best.notes.append(f"comparisons straddled kinks at each of {DRAWS} points drawn; "
                          "the least affected one is shown")
    return best


def _skips(report: Report) -> int:
    return sum(r.skipped for r in report.rows)


def _attempt(module: ModuleType, template: Report, draw: int, positive: bool) -> tuple[Report, bool]:
    """The check at one draw; the flag says a non-finite value makes another draw worth trying."""
    report = Report(**{k: getattr(template, k) for k in (
        "model", "target", "dtype", "seed", "eps", "rtol", "atol", "max_entries", "dims")})
    report.notes, report.draw = list(template.notes), draw
    if positive:
        report.notes.append("inputs and parameters were drawn positive, as real-valued ones "
                            "gave a non-finite loss or gradient")
    rng = np.random.default_rng([report.seed, draw])
    params, inputs = draw_point(module, report.dims, rng, report.dtype, positive)

    def f() -> float:  # the loss at the current (possibly perturbed) point
        return float(module.loss(params, *inputs))

    try:
        loss0, grads = module.value_and_grad(params, *inputs)
        loss0, plain = float(loss0), f()
        if not isinstance(grads, dict):
            raise TypeError(f"value_and_grad returned {type(grads).__name__} gradients, not a dict")
        report.loss = loss0
        if not (math.isfinite(loss0) and math.isfinite(plain)):
            report.error = f"non-finite loss ({loss0}) at every point tried"
            return report, True
        arrays = [np.asarray(g) for g in grads.values() if hasattr(g, "dtype")]  # rows judge the rest
        if not all(np.all(np.isfinite(g)) for g in arrays if np.issubdtype(g.dtype, np.number)):
            report.error = "non-finite gradient at every point tried"
            return report, True
        tol = _Tolerance(report.rtol, report.atol, plain)
        if abs(plain - loss0) > tol.atol + tol.rtol * abs(loss0):
            # a failure; the rows still say which gradients agree with loss()
            report.error = (f"loss() gives {plain!r} but value_and_grad() gives {loss0!r}: "
                            "they disagree on the loss value")
        names = list(module.INPUTS)
        targets = [(n, "param", params[n]) for n in module.PARAMS]
        targets += [(n, "input", inputs[names.index(n)]) for n in module.WRT]
        for name, kind, x in targets:  # each x is perturbed in place, then restored
            row = Row(name, kind, tuple(x.shape))
            _check_array(row, f, x, grads.get(name), report.dtype, rng=rng, eps=report.eps, tol=tol,
                         max_entries=report.max_entries, loss0=plain)
            report.rows.append(row)
    except _StepVanished as exc:
        report.error = (f"eps {report.eps:g} is too small: a step of {exc.args[0]:g} rounds away in "
                        f"{report.dtype} (x + h == x); pass a larger --eps (eps=)")
        return report, False
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - what the module under test does wrong is reported
        report.error = f"the module {what_it_did(exc)}"
        return report, False
    extra = sorted(set(grads) - set(module.PARAMS) - set(module.WRT))
    if extra:
        report.notes.append(f"value_and_grad also returned {', '.join(extra)} (not checked)")
    return report, False


def what_it_did(exc: BaseException) -> str:
    """What a module under test did instead of returning, for a report: "raised KeyError: 'x'",
    or "called sys.exit(0)" (a SystemExit, which would otherwise end the check, and read as a pass)."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    return f"raised {type(exc).__name__}: {exc}"


# ---- the text table ----------------------------------------------------------------------

def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}" if v == 0 else f"{v:.3e}"


def format_report(r: Report) -> str:
    """A table with one row per gradient and a final PASS/FAIL line."""
    dims = ", ".join(f"{k}={v}" for k, v in r.dims.items())
    lines = [f"nnc check {r.target}: model {r.model}, {r.dtype}, seed {r.seed}" + (f", {dims}" if dims else ""),
             f"eps {r.eps:g}, rtol {r.rtol:g}, atol {r.atol:g} (times max(1, |loss|)), "
             f"max entries {r.max_entries}" + (f", draw {r.draw + 1}" if r.draw else "")]
    if r.loss is not None:
        lines.append(f"loss {r.loss!r}")
    if r.rows:
        head = ("gradient", "shape", "mode", "checked", "skipped", "max abs err", "max rel err",
                "worst at", "analytic", "numeric", "result")
        body = []
        for row in r.rows:
            checked = str(row.entries) + (f" + {row.directions} dirs" if row.directions else "")
            body.append((row.label, "[" + ", ".join(map(str, row.shape)) + "]", row.mode, checked,
                         str(row.skipped), _num(row.max_abs_err), _num(row.max_rel_err), row.worst or "-",
                         _num(row.analytic), _num(row.numeric), row.status))
        widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
        for cells in [head, *body]:
            lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
        lines += [f"{row.label}: {row.message}" for row in r.rows if row.message]
    lines += [f"note: {n}" for n in r.notes]
    failed = [row.label for row in r.rows if row.status == "FAIL"]
    if r.error and failed:
        lines.append(f"error: {r.error}")
    if r.passed:
        skipped = sum(row.skipped for row in r.rows)
        tail = f" ({skipped} comparison(s) skipped at kinks)" if skipped else ""
        lines.append(f"PASS: {len(r.rows)} gradient(s) match finite differences{tail}")
    elif failed:
        lines.append(f"FAIL: {len(failed)} of {len(r.rows)} gradient(s) disagree with finite "
                     f"differences: {', '.join(failed)}")
    elif r.no_verdict and r.error is None:
        lines.append(f"FAIL: no comparison gave a verdict: each straddled a kink at every point drawn, or "
                     f"the tolerance (rtol {r.rtol:g}, atol {r.atol:g}) is below what finite differences "
                     "resolve")
    else:
        lines.append(f"FAIL: {r.error}")
    return "\n".join(lines)
