"""Workload (A) in fresh processes: what a user's own training loop sees of the allocator.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/fresh_process.py [--batches 128,1024]

bench.py times every implementation in one process, and a process that has once freed a
block of a few MB has had glibc raise its mmap and trim thresholds, after which no step
page-faults. A fresh process has not: there glibc hands a step's freed temporaries back to
the system and faults them in again in the next step. This script runs each
implementation alone in its own fresh interpreter (one thread, pinned to one CPU),
alternating them run by run, and reports the median step and the minor page faults a
step. `nnc, no nudge` is the generated module with `_NumPy`'s allocator nudge switched off
(its docstring explains the nudge), to show what the nudge is worth. Ratios here compare
separate processes, so they are noisier than bench.py's same-process ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMPLS = ("nnc", "nnc, no nudge", "hand-written numpy", "hand, out= buffers")

CHILD = r"""
import json, os, resource, sys, time
os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
import numpy as np
impl, batch, steps, here, module_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
sys.path[:0] = [here, module_dir]
rng = np.random.default_rng(0)
x, y = rng.random((batch, 784), dtype=np.float32), rng.integers(0, 10, batch)
import mlp_sgd
if impl == "nnc, no nudge":
    mlp_sgd._NumPy.__init__ = lambda self: setattr(self, "_rows", {})  # all but the nudge
params = mlp_sgd.init_params(seed=0)
if impl.startswith("nnc"):
    state = mlp_sgd.init_optimizer(params)
    step = lambda: mlp_sgd.train_step(params, state, x, y)
else:  # the hand-written steps never build the module's namespace, so nothing is nudged
    import baselines
    make = baselines.numpy_mlp_step if impl == "hand-written numpy" else baselines.numpy_mlp_step_buffers
    step = make(params, x, y, 0.01)
for _ in range(3):
    step()
times, faults = [], 0
for _ in range(steps):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
    faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
print(json.dumps({"median_s": sorted(times)[len(times) // 2], "faults_per_step": faults / steps}))
"""


def run(impl: str, batch: int, steps: int, module_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD, impl, str(batch), str(steps), str(HERE), module_dir],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def measure(batches: list[int], runs: int, steps: int) -> dict:
    """{batch: {implementation: {median_s, ratio, faults_per_step}}}, medians over the runs;
    ratios are to the hand-written step's median."""
    from nnc.api import compile_spec

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = HERE / "mlp_sgd.nn"
        (Path(tmp) / "mlp_sgd.py").write_text(compile_spec(spec.read_text(), str(spec)), encoding="utf-8")
        for batch in batches:
            runs_of: dict[str, list[dict]] = {impl: [] for impl in IMPLS}
            for _ in range(runs):
                for impl in IMPLS:  # alternating, so a slow spell hits every implementation
                    runs_of[impl].append(run(impl, batch, steps, tmp))
            base = statistics.median(r["median_s"] for r in runs_of["hand-written numpy"])
            results[str(batch)] = {
                impl: {"median_s": (med := statistics.median(r["median_s"] for r in rs)), "ratio": med / base,
                       "faults_per_step": statistics.median(r["faults_per_step"] for r in rs)}
                for impl, rs in runs_of.items()}
    return {"runs": runs, "steps": steps, "batches": results}


def table_lines(results: dict) -> list[str]:
    lines = []
    for batch, rows in results["batches"].items():
        lines.append(f"(A) batch {batch}, each implementation alone in a fresh process"
                     f" ({results['runs']} runs x {results['steps']} steps, median)")
        lines.append(f"    {'implementation':<22}{'median':>11}{'ratio':>8}{'faults/step':>13}")
        for impl, r in rows.items():
            lines.append(f"    {impl:<22}{r['median_s'] * 1e3:9.3f}ms{r['ratio']:8.3f}{r['faults_per_step']:13.0f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="32,128,1024")
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per implementation and batch")
    ap.add_argument("--steps", type=int, default=40, help="timed steps in each process")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    results = measure([int(b) for b in args.batches.split(",")], args.runs, args.steps)
    print("\n".join(table_lines(results)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0

if __name__ == "__main__":
    sys.exit(main())
