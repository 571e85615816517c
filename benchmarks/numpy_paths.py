"""NumPy's slow elementwise paths against what generated modules run instead (docs/performance.md).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE taskset -c 1 python benchmarks/numpy_paths.py [--quick] [--json OUT]

Each pair is timed in turns in one process (median of the rounds, and the ratio of the
medians): `x ** n` against the products nnc emits for small integer powers, `np.where`
against `_NumPy.where`, and `np.logaddexp(0.0, x)` (softplus) against `_NumPy.logaddexp`.
Inputs are normal draws (both signs), as pre-activations are. Every pair is also checked
to agree (the same bits for where; a few eps for the others).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import timeit
from pathlib import Path

import numpy as np

from nnc.runtime.numpy_fast import _NumPy

XP = _NumPy()


def cases(x: np.ndarray) -> dict:
    """name -> (NumPy's call, nnc's, how close they must be in eps; 0: the same bits)."""
    mask = x > 0.0
    low = 0.01 * x
    positive = np.abs(x) + 0.5
    return {
        "x ** 3.0": (lambda: x ** 3.0, lambda: x * x * x, 4),
        "x ** 4.0": (lambda: x ** 4.0, lambda: x * x * x * x, 4),
        "x ** -2.0 (x > 0)": (lambda: positive ** -2.0, lambda: 1.0 / (positive * positive), 4),
        "where(x > 0, x, 0.01 x)": (lambda: np.where(mask, x, low), lambda: XP.where(mask, x, low), 0),
        "logaddexp(0.0, x)": (lambda: np.logaddexp(0.0, x), lambda: XP.logaddexp(0.0, x), 3),
    }


def agree(a: np.ndarray, b: np.ndarray, eps: int) -> bool:
    if eps == 0:
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    info = np.finfo(a.dtype)
    return bool(np.allclose(a, b, rtol=eps * info.eps, atol=info.smallest_normal))


def run(shapes, dtypes, rounds: int, number: int) -> list[dict]:
    rows = []
    for shape in shapes:
        for dtype in dtypes:
            x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
            for name, (numpy_call, nnc_call, eps) in cases(x).items():
                times = {"numpy": [], "nnc": []}
                for _ in range(rounds):
                    for side, call in (("numpy", numpy_call), ("nnc", nnc_call)):
                        times[side].append(timeit.timeit(call, number=number) / number)
                numpy_s, nnc_s = (statistics.median(times[k]) for k in ("numpy", "nnc"))
                rows.append({"operation": name, "shape": list(shape), "dtype": np.dtype(dtype).name,
                             "numpy_s": numpy_s, "nnc_s": nnc_s, "ratio": nnc_s / numpy_s,
                             "agrees": agree(numpy_call(), nnc_call(), eps)})
    return rows


def table(rows: list[dict]) -> str:
    lines = [f"{'operation':26s} {'shape':>11s} {'dtype':8s} {'NumPy':>10s} {'nnc':>10s}  nnc/NumPy  agrees"]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        lines.append(f"{r['operation']:26s} {shape:>11s} {r['dtype']:8s} {r['numpy_s'] * 1e6:8.1f}us "
                     f"{r['nnc_s'] * 1e6:8.1f}us  {r['ratio']:9.3f}  {r['agrees']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small arrays and few rounds: proves it runs")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)
    if args.quick:
        rows = run([(64, 256)], [np.float32], rounds=2, number=2)
    else:
        rows = run([(32, 256), (1024, 256)], [np.float32, np.float64], rounds=15, number=10)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"numpy": np.__version__, "quick": args.quick, "rows": rows}, indent=1))
    return 0 if all(r["agrees"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
