"""Timing harness: interleaved rounds, warm-up, per-implementation calibration, robust stats.

Shared by `nnc bench` and benchmarks/bench.py (benchmarks/harness.py re-exports it).
On a shared, noisy machine absolute times drift; the figures that mean something are
ratios between implementations measured in the same rounds. Each round times every
implementation once, in a rotating order, so a slow spell hits all of them alike.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Impl:
    """One implementation of a workload: `step()` runs one training step."""

    name: str
    step: Callable[[], object]
    reset: Callable[[], None] = lambda: None  # restore the initial parameters (not timed)
    sync: Callable[[], None] = lambda: None  # wait for queued device work (JAX, GPUs)
    number: int = 1  # steps per timed sample, set by calibrate()
    samples: list[float] = field(default_factory=list)  # seconds per step


def calibrate(impl: Impl, sample_s: float) -> None:
    """Warm up, then choose how many steps one timed sample runs (at least `sample_s`)."""
    impl.reset()
    for _ in range(3):
        impl.step()
    impl.sync()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            impl.step()
        impl.sync()
        elapsed = time.perf_counter() - t0
        if elapsed >= sample_s or n >= 1 << 20:
            break
        n = max(n * 2, int(n * sample_s / max(elapsed, 1e-9) * 1.2))
    impl.number = n


def run_rounds(impls: list[Impl], rounds: int, sample_s: float,
               progress: Callable[[str], None] | None = None) -> None:
    """Time every implementation once per round, rotating which goes first.

    `progress`, when given, is told what is happening ("calibrated ...", "round 3/15")."""
    for impl in impls:
        calibrate(impl, sample_s)
        if progress is not None:
            progress(f"calibrated {impl.name}: {impl.number} call(s) per sample")
    for r in range(rounds):
        if progress is not None:
            progress(f"round {r + 1}/{rounds}")
        k = r % len(impls)
        for impl in impls[k:] + impls[:k]:
            impl.reset()
            step, n = impl.step, impl.number
            t0 = time.perf_counter()
            for _ in range(n):
                step()
            impl.sync()
            impl.samples.append((time.perf_counter() - t0) / n)


def summary(impl: Impl, base: Impl | None) -> dict:
    """Median, min and max seconds per step; the ratio to `base` as the median of the
    per-round ratios (paired, so drift between rounds cancels) with its min and max."""
    s = impl.samples
    out = {"median_s": statistics.median(s), "min_s": min(s), "max_s": max(s),
           "rounds": len(s), "steps_per_sample": impl.number}
    if base is not None and base.samples:
        ratios = [a / b for a, b in zip(s, base.samples)]
        out.update(ratio=statistics.median(ratios), ratio_min=min(ratios), ratio_max=max(ratios),
                   ratio_of_mins=min(s) / min(base.samples))
    return out


# ---- the machine a figure comes from ------------------------------------------------------

def machine_info() -> dict:
    """CPU, Python, NumPy and the BLAS libraries loaded (through threadpoolctl, when it is
    installed: it names the kernel OpenBLAS picked, e.g. Haswell or SkylakeX), and the
    OPENBLAS_* variables that change that choice."""
    import numpy as np

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "numpy": np.__version__, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE")}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        pass
    for name in ("torch", "jax", "cupy", "array_api_compat", "array_api_strict"):
        mod = sys.modules.get(name)
        if mod is not None:
            info[name] = getattr(mod, "__version__", "?")
    try:
        import threadpoolctl
    except ImportError:
        return info
    info["blas"] = [{k: d.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
                    for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]
    return info


def blas_text(info: dict) -> str:
    """`openblas Haswell x1`, or what to install to find out."""
    if "blas" not in info:
        return "unknown (install threadpoolctl to see which kernel runs)"
    return ", ".join(f"{b['internal_api']} {b['architecture'] or '?'} x{b['num_threads']}"
                     for b in info["blas"]) or "none found"
