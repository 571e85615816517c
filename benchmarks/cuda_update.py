"""CuPy's fused update kernel against the portable update loop, on a GPU.

    python benchmarks/cuda_update.py [--quick] [--json PATH]

For specs/mlp.nn (momentum SGD) and the same network with Adam, at batch 32 and 1024, it
times the generated train_step on CuPy twice in the same rounds: as generated (the update
loop as one CUDA kernel a parameter) and with the kernel switched off (the portable loop:
one kernel launch per array operation). It reports medians, min-max and the paired ratio,
and checks that both give the same parameters after the timed steps. Without CuPy or a CUDA
device it says so and exits 0 (benchmarks/gpu.sh runs it where there is one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Impl, run_rounds, summary  # noqa: E402

from nnc.api import compile_spec, load_module  # noqa: E402

ADAM = "optimizer adam(lr=0.001)"


def impl(cupy, module, name: str, batch: int) -> tuple[Impl, dict]:
    rng = np.random.default_rng(0)
    x = cupy.asarray(rng.normal(size=(batch, 784)).astype(np.float32))
    y = cupy.asarray(rng.integers(0, 10, size=batch))
    init = module.init_params(0, dtype="float32")
    params = {k: cupy.array(v) for k, v in init.items()}  # copies: reset() restores init
    state = module.init_optimizer(params)

    def reset():
        for k, v in init.items():
            params[k][...] = cupy.asarray(v)
        for buffers in state.values():
            if isinstance(buffers, dict):
                for b in buffers.values():
                    b[...] = 0
        state["step"] = 0

    return Impl(name, lambda: module.train_step(params, state, x, y), reset,
                lambda: cupy.cuda.Device().synchronize()), params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of short samples")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    try:
        import cupy

        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no CuPy, or CuPy without a driver or device
        print(f"cuda_update: skipped, CuPy cannot run here ({type(exc).__name__}: {exc})")
        return 0
    if devices < 1:
        print("cuda_update: skipped, no CUDA device")
        return 0
    rounds, sample_s = (3, 0.05) if args.quick else (15, 0.2)
    mlp = (ROOT / "specs" / "mlp.nn").read_text()
    sources = {"sgd momentum": mlp, "adam": mlp.replace("optimizer sgd(lr=0.1, momentum=0.9)", ADAM)}
    assert ADAM in sources["adam"], "specs/mlp.nn changed its optimizer line"
    results = {"cupy": cupy.__version__, "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
               "rows": []}
    print(f"CuPy {results['cupy']} on {results['device']}: train_step of specs/mlp.nn, float32")
    print(f"{'optimizer':<14}{'batch':>6}{'fused kernel':>16}{'portable loop':>16}{'ratio (min-max)':>22}")
    for label, source in sources.items():
        name = label.replace(" ", "_")
        text = compile_spec(source, f"{name}.nn")
        module, portable = load_module(text, name), load_module(text, name + "_portable")
        portable._CUDA_UPDATE.kernels[cupy.ndarray] = None  # the kernel cache says: no kernel, run the loop
        for batch in (32, 1024):
            fused, fused_params = impl(cupy, module, "fused kernel", batch)
            loop, loop_params = impl(cupy, portable, "portable loop", batch)
            run_rounds([fused, loop], rounds, sample_s)
            s, base = summary(fused, loop), summary(loop, None)
            fused.reset(), loop.reset()
            for _ in range(5):
                fused.step(), loop.step()
            worst = max(float(cupy.max(cupy.abs(fused_params[k] - loop_params[k]))) for k in fused_params)
            row = {"optimizer": label, "batch": batch, "fused": s, "loop": base, "max_abs_difference": worst}
            results["rows"].append(row)
            print(f"{label:<14}{batch:>6}{s['median_s'] * 1e6:>13.1f} us{base['median_s'] * 1e6:>13.1f} us"
                  f"{s['ratio']:>10.3f} ({s['ratio_min']:.3f}-{s['ratio_max']:.3f})"
                  f"   params differ by at most {worst:.3g} after 5 steps")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
