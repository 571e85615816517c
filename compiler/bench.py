"""`nnc bench`: time a generated module's entry points on random data of chosen sizes.

The timing is benchmarks/bench.py's harness (nnc.runtime.timing): three warm-up calls,
then calls per sample calibrated to last at least `min_time`, then rounds that time
every entry point once, rotating which goes first. train_step runs on its own copy of
the parameters and optimizer state, restored to the initial values before every timed
sample (the restore is not timed); within a sample of n calls it takes n real steps
on the same batch, as training would.

FLOPs per call use nnc summary's cost model (compiler/summary.py) over the equations
each entry point computes, chosen the way codegen chooses them: forward() only what its
outputs need (not the loss), loss() what the loss needs, value_and_grad() that plus the
backward, train_step() value_and_grad's plus the optimizer update. For most specs these
are the summary's totals: forward + backward FLOPs, and FLOPs per training step.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np

from .api import build_program
from .ir.core import Program
from .passes.dce import live_eqns, live_split
from .runtime.gradcheck import bind_dims, draw_inputs, what_it_did
from .runtime.timing import Impl, blas_text, machine_info, run_rounds, summary
from .runtime.train import is_dask, persist
from .summary import Poly, align_columns, flops, summarize

ENTRIES = ("train_step", "value_and_grad", "loss", "forward", "jvp", "hvp")
DEFAULT_ENTRIES = ("train_step", "value_and_grad", "forward")  # those the module has
DEFAULT_DIM = 128  # size of a symbolic dimension the user did not bind


class BenchError(ValueError):
    """A bad argument or an unusable module: reported in one line (exit 2)."""


class EntryError(RuntimeError):
    """An entry point raised on the random inputs (the module's fault, not the arguments')."""


@dataclass
class Setup:
    """What to time: sizes, entry points, and the FLOPs of one call of each."""

    dims: dict[str, int]
    defaulted: list[str]  # dimensions that took DEFAULT_DIM
    entries: list[str]
    flops: dict[str, int | None]
    saved_bytes: int | None
    saved_input_bytes: int | None  # the part of saved_bytes that is inputs (see Summary.saved_inputs)
    notes: list[str] = field(default_factory=list)


def parse_entries(text: str | None, module: ModuleType) -> list[str]:
    """`train_step,forward` -> checked names; None -> the defaults the module has."""
    if text is None:
        return [e for e in DEFAULT_ENTRIES if callable(getattr(module, e, None))]
    names = [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in ENTRIES:
            raise BenchError(f"--entry {name}: unknown entry point (choose from {', '.join(ENTRIES)})")
        if not callable(getattr(module, name, None)):
            raise BenchError(f"--entry {name}: the module has no {name}()")
    if not names:
        raise BenchError("--entry: name at least one entry point")
    return list(dict.fromkeys(names))


def sizes_for(module: ModuleType, given: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """The size of every symbolic dimension: `given`, else DEFAULT_DIM."""
    try:
        sizes = bind_dims(module.INPUTS, given)
    except ValueError as exc:
        raise BenchError(f"--dim: {exc}") from None
    defaulted = [d for d in sizes if d not in given]
    return {d: given.get(d, DEFAULT_DIM) for d in sizes}, defaulted


def entry_flops(prog: Program, bound: dict[str, int], optimizer: Poly,
                direction: Poly | None = None) -> dict[str, Poly]:
    """FLOPs of one call of each entry point, from the equations codegen puts in it; with an
    optimizer's own step `direction` (perceptron), train_step computes it instead of the gradient."""
    def total(eqns) -> Poly:
        return sum((flops(e, bound) for e in eqns), Poly())

    fwd, bwd = live_split(prog.eqns, prog.backward, [prog.loss, *(g for _, g in prog.grads)])
    grad = total(fwd) + total(bwd)
    return {"forward": total(live_eqns(prog.eqns, list(prog.outputs))),
            "loss": total(live_eqns(prog.eqns, [prog.loss])),
            "value_and_grad": grad, "train_step": (grad if direction is None else direction) + optimizer}


def prepare(module: ModuleType, spec_text: str | None, spec_path: str, given: dict[str, int],
            entries: str | None, dtype: str) -> Setup:
    """Sizes, entry points and FLOPs. `spec_text` is the spec the module came from (None:
    take the module's embedded SOURCE, as for a module file)."""
    missing = [a for a in ("INPUTS", "PARAMS", "init_params") if not hasattr(module, a)]
    if missing:
        raise BenchError(f"not an nnc-generated module: it has no {', '.join(missing)}")
    names = parse_entries(entries, module)
    dims, defaulted = sizes_for(module, given)
    setup = Setup(dims, defaulted, names, dict.fromkeys(names), None, None)
    if "forward" in names and not getattr(module, "OUTPUTS", True):
        setup.notes.append("forward computes nothing: the spec has no output line, so it returns None")
    if spec_text is None:
        spec_text = getattr(module, "SOURCE", None)
        spec_path = str(getattr(module, "SPEC", spec_path))
        if spec_text is None:
            setup.notes.append("the module carries no SOURCE spec: FLOPs and saved bytes are unknown")
            return setup
        setup.notes.append(f"FLOPs are counted on the spec embedded in the module ({spec_path}); "
                           "hand edits of the module are not seen")
    try:
        summ = summarize(spec_text, spec_path, dims, dtype)
        per_entry = entry_flops(build_program(spec_text, spec_path), dims, summ.optimizer_flops,
                                summ.direction_flops)
    except Exception as exc:  # noqa: BLE001 - a module from another nnc version: time it, count nothing
        setup.notes.append(f"FLOPs unknown: its spec does not compile with this nnc ({type(exc).__name__})")
        return setup
    setup.saved_bytes, setup.saved_input_bytes = summ.saved.value, summ.saved_inputs.value
    for name in names:
        setup.flops[name] = per_entry[name].value if name in per_entry else None
    return setup


# ---- the calls that are timed ------------------------------------------------------------------

def _forward_arguments(fn: Callable, inputs: dict[str, Any]) -> list:
    """The inputs forward() takes (those its outputs need), by parameter name."""
    return [inputs[n] for n in list(inspect.signature(fn).parameters)[1:]]


def _directions(module: ModuleType, params: dict, inputs: dict, xp, dtype: str, rng) -> dict:
    """Random tangents for jvp and hvp: every parameter and `wrt` input."""
    like = {**params, **{n: inputs[n] for n in getattr(module, "WRT", ())}}
    return {k: xp.asarray(rng.standard_normal(tuple(v.shape)), dtype=getattr(xp, dtype)) for k, v in like.items()}


def _synced(impl: Impl, xp, also: object = None) -> Impl:
    """`impl` with a sync that waits for queued work: CuPy's device; JAX's results (it
    dispatches asynchronously, so the last result and `also` are waited for). Dask is lazy:
    each call computes its result (train_step: persists its parameters and state, `also`,
    as nnc train does). NumPy, array_api_strict and CPU PyTorch run eagerly."""
    name = getattr(xp, "__name__", "")
    if is_dask(xp):
        impl.step = partial(_computed, impl.step) if also is None else partial(_persisted, impl.step, also)
    elif "cupy" in name:
        import cupy

        impl.sync = lambda: cupy.cuda.Device().synchronize()
    elif name.startswith("jax"):
        import jax

        last: list = [None]
        call = impl.step

        def step() -> None:
            last[0] = call()

        impl.step = step
        impl.sync = lambda: jax.block_until_ready((last[0], also))
    return impl


def _computed(call: Callable) -> tuple:
    import dask

    return dask.compute(call())


def _persisted(call: Callable, also: tuple[dict, dict]) -> tuple:
    return persist(*also, call())


def impls(module: ModuleType, entries: list[str], dims: dict[str, int], xp, dtype: str,
          seed: int) -> tuple[list[Impl], Callable[[], float]]:
    """One Impl per entry point, each called once to prove it runs; and a function giving
    train_step's loss at its current, drifted parameters (nan-free or not)."""
    rng = np.random.default_rng(seed)
    host = draw_inputs(module, dims, rng, dtype)
    # labels keep NumPy's int64 (JAX without x64 makes them int32, the module accepts any int)
    inputs = {name: xp.asarray(a, dtype=getattr(xp, dtype)) if meta["kind"] == "float" else xp.asarray(a)
              for (name, meta), a in zip(module.INPUTS.items(), host)}
    params = module.init_params(seed, xp=xp, dtype=dtype)
    ordered = list(inputs.values())
    out, last_loss = [], lambda: math.nan
    for name in entries:
        fn, also = getattr(module, name), None
        if name == "train_step":
            own = {k: xp.asarray(v, copy=True) for k, v in params.items()}
            state = module.init_optimizer(own)

            def reset(own=own, state=state) -> None:
                own.clear()
                own.update({k: xp.asarray(v, copy=True) for k, v in params.items()})
                state.clear()
                state.update(module.init_optimizer(own))

            impl, also = Impl(name, partial(fn, own, state, *ordered), reset), (own, state)

            def last_loss(own=own, state=state, fn=fn) -> float:
                return float(fn(own, state, *ordered))
        elif name in ("jvp", "hvp"):
            impl = Impl(name, partial(fn, params, _directions(module, params, inputs, xp, dtype, rng), *ordered))
        elif name == "forward":
            impl = Impl(name, partial(fn, params, *_forward_arguments(fn, inputs)))
        else:
            impl = Impl(name, partial(fn, params, *ordered))
        impl = _synced(impl, xp, also)
        try:
            impl.reset()
            impl.step()
            impl.sync()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported as the module's failure
            raise EntryError(f"{name}() {what_it_did(exc)}") from exc
        out.append(impl)
    return out, last_loss


# ---- the run and its report --------------------------------------------------------------------

@dataclass
class Result:
    target: str
    model: str
    backend: str
    dtype: str
    seed: int
    rounds: int
    min_time_s: float
    threads: str
    setup: Setup
    rows: dict[str, dict]
    machine: dict
    notes: list[str]

    def to_json(self) -> dict:
        s = self.setup
        return {"target": self.target, "model": self.model, "backend": self.backend, "dtype": self.dtype,
                "dims": s.dims, "defaulted_dims": s.defaulted, "seed": self.seed, "rounds": self.rounds,
                "min_time_s": self.min_time_s, "threads": self.threads, "entries": self.rows,
                "saved_activation_bytes": s.saved_bytes, "saved_input_bytes": s.saved_input_bytes, "machine": self.machine, "notes": self.notes}


def run(module: ModuleType, setup: Setup, *, target: str, backend: str, xp, dtype: str, seed: int,
        rounds: int, min_time: float, threads: str, progress: Callable[[str], None] | None = None) -> Result:
    """Time the entry points of `setup` on `xp` arrays; medians, extremes, calls/s, GFLOP/s."""
    timed, last_loss = impls(module, setup.entries, setup.dims, xp, dtype, seed)
    with np.errstate(all="ignore"):  # a step that overflows is still timed; see the note below
        run_rounds(timed, rounds, min_time, progress)
    rows = {}
    for impl in timed:
        s = summary(impl, None)
        work = setup.flops.get(impl.name)
        rows[impl.name] = {"median_s": s["median_s"], "min_s": s["min_s"], "max_s": s["max_s"],
                           "rounds": s["rounds"], "calls_per_sample": s["steps_per_sample"],
                           "calls_per_s": 1.0 / s["median_s"], "flops": work,
                           "gflops": None if work is None else work / s["median_s"] / 1e9}
    notes = list(setup.notes)
    if "train_step" in rows:
        notes.append("train_step restarts from the initial parameters and optimizer state before every "
                     "sample (not timed) and takes real steps on one batch within it")
        with np.errstate(all="ignore"):
            loss = last_loss()
        if not math.isfinite(loss):
            notes.append(f"train_step's loss was {loss} after the timed steps: the figures include "
                         "non-finite arithmetic")
    info = machine_info()
    if info.get("OPENBLAS_CORETYPE") or info.get("OPENBLAS_L2_SIZE"):
        notes.append("OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set: they can hold OpenBLAS to an older "
                     "kernel; for speed figures run with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`")
    return Result(target, str(getattr(module, "MODEL", "?")), backend, dtype, seed, rounds, min_time, threads,
                  setup, rows, info, notes)


def _t(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.3f} s"


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def format_table(r: Result) -> str:
    s = r.setup
    dims = ", ".join(f"{d}={v}" + (" (default; --dim NAME=SIZE sets it)" if d in s.defaulted else "")
                     for d, v in s.dims.items())
    m = r.machine
    lines = [f"nnc bench {r.target}: model {r.model}, {r.backend}, {r.dtype}" + (f", {dims}" if dims else "")
             + f", seed {r.seed}",
             f"machine: {m.get('cpu') or m['platform']}, {m['cpus']} CPUs; Python {m['python']}, "
             f"numpy {m['numpy']}" + "".join(f", {k} {m[k]}" for k in ("torch", "jax", "cupy", "array_api_strict")
                                             if k in m and k in r.backend),
             f"BLAS: {blas_text(m)}; threads: {r.threads}",
             f"{r.rounds} round{'s' if r.rounds != 1 else ''}, samples of at least {r.min_time_s:g} s, "
             "entry points interleaved"]
    head = ["entry", "FLOPs/call", "median", "min", "max", "calls/s", "GFLOP/s", "calls/sample"]
    body = [[name, _count(row["flops"]), _t(row["median_s"]), _t(row["min_s"]), _t(row["max_s"]),
             f"{row['calls_per_s']:,.0f}" if row["calls_per_s"] >= 100 else f"{row['calls_per_s']:.3g}",
             "-" if row["gflops"] is None else f"{row['gflops']:.3g}", str(row["calls_per_sample"])]
            for name, row in r.rows.items()]
    lines += align_columns([head, *body], right=set(range(1, len(head))))
    saved = "unknown" if s.saved_bytes is None else f"{s.saved_bytes:,} bytes ({r.dtype})"
    if s.saved_input_bytes:
        saved += f", of which inputs {s.saved_input_bytes:,}"
    lines.append(f"activations saved for the backward: {saved}")
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)
