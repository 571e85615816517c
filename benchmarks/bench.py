"""Benchmark of nnc's generated modules against hand-written NumPy, PyTorch eager and jax.jit.

    python benchmarks/bench.py [--quick] [--json OUT.json] [--workloads A,B,C]

Workloads: (A) one SGD train_step of the 784-256-256-10 ReLU MLP with softmax
cross-entropy, float32, at several batch sizes; (B) one SGD step of the 2-2-2 sigmoid
network of worked example 1 (float64, one sample); (C) compile time, as a whole
`nnc compile` process and in-process for generated chains of growing length; (F) the
steps of (A) again, each implementation alone in a fresh process, with page faults a
step (benchmarks/fresh_process.py: what a user's own loop sees of the allocator).
Everything runs in one process, implementations interleaved round by round; ratios
are to the hand-written NumPy step, measured in the same rounds. Before timing, every
implementation takes one step from the same start and must agree with the baseline.
For speed figures run it with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (they hold
OpenBLAS to older kernels on this project's machines); the report says which kernel ran.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _threads_from_argv(argv: list[str]) -> int:
    for k, a in enumerate(argv):
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
        if a == "--threads" and k + 1 < len(argv):
            return int(argv[k + 1])
    return 1


# Thread pools are sized when NumPy, PyTorch and JAX load, so this runs before they do.
# One thread each by default: on a small shared machine a second BLAS thread that is
# descheduled stalls every product (medians swing 100x), and idle pools spin against
# the other libraries; every implementation gets the same count, shown in the report.
THREADS = _threads_from_argv(sys.argv) if __name__ == "__main__" else None
PINNED_CPU = None
if THREADS is not None:  # run as the benchmark (imported by a test, it changes nothing)
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(THREADS)
    # XLA ignores its thread flags (measured: jax.jit used 1.9 CPUs per step with them set),
    # so one thread means one CPU for the whole process; threads start after this inherit it.
    if THREADS == 1 and hasattr(os, "sched_setaffinity"):
        PINNED_CPU = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {PINNED_CPU})
    if THREADS == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()

# Imported only now, after the thread settings above take effect.
import baselines as hand  # noqa: E402, I001
import fresh_process  # noqa: E402
import nnc  # noqa: E402
import numpy as np  # noqa: E402
from harness import Impl, run_rounds, summary  # noqa: E402
from nnc.runtime.timing import blas_text, machine_info  # noqa: E402
from nnc.api import build_program, compile_spec  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MLP_SPEC = HERE / "mlp_sgd.nn"
MAZUR_SPEC = ROOT / "specs" / "mazur.nn"
LR_A, LR_B = 0.01, 0.5
TUNED_A, TUNED_B = "hand, out= buffers", "hand, ndarray.dot"  # baselines tuned past the careful ones
FLOATS_B = "hand, Python floats"  # (B) with no array operation at all: not a NumPy step, reported beside them


def optional(name: str):
    try:
        return __import__(name)
    except Exception:  # noqa: BLE001 - not installed, or broken: the baseline is skipped
        return None


def load_module(path: Path, tmp: Path, name: str):
    source = compile_spec(path.read_text(encoding="utf-8"), str(path))
    out = tmp / f"{name}.py"
    out.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def numpy_params(init: dict) -> tuple[dict, callable]:
    """Fresh copies of `init` and a reset() that copies the values back in place."""
    params = {k: np.array(v) for k, v in init.items()}

    def reset():
        for k, v in init.items():
            params[k][...] = v

    return params, reset


def torch_params(torch, init: dict) -> tuple[dict, callable]:
    params = {k: torch.asarray(np.array(v)) for k, v in init.items()}

    def reset():
        for k, v in init.items():
            params[k].copy_(torch.asarray(v))

    return params, reset


def jax_impl(name: str, jax, jstep, init: dict, *inputs) -> tuple[Impl, callable]:
    """jax.jit step holding its own (immutable) parameters, rebound every step."""
    cur = {}
    args = [jax.device_put(a) for a in inputs]

    def reset():
        cur["p"] = {k: jax.device_put(np.array(v)) for k, v in init.items()}
        cur["loss"] = None

    def step():
        cur["p"], cur["loss"] = jstep(cur["p"], *args)
        return cur["loss"]

    def sync():
        if cur["loss"] is not None:
            cur["loss"].block_until_ready()

    reset()
    return Impl(name, step, reset, sync), (lambda: {k: np.asarray(v) for k, v in cur["p"].items()})


def nnc_jax_step(jax, mod, lr: float):
    """The generated module's value_and_grad traced by jax.jit, with the SGD update written
    as a function of its result (train_step updates dicts in place, which jit cannot see)."""
    @jax.jit
    def step(p, *inputs):
        loss, grads = mod.value_and_grad(p, *inputs)
        return {k: p[k] - lr * grads[k] for k in p}, loss

    return step


def cupy_impl(cupy, mod, init: dict, *inputs) -> tuple[Impl, callable]:
    """The generated module on CuPy arrays (GPU): same code, through array_api_compat's CuPy
    namespace (CuPy 14 arrays name none of their own)."""
    params = {k: cupy.asarray(np.array(v)) for k, v in init.items()}
    state = mod.init_optimizer(params)
    args = [cupy.asarray(a) for a in inputs]

    def reset():
        for k, v in init.items():
            params[k][...] = cupy.asarray(v)

    impl = Impl("nnc (cupy)", lambda: mod.train_step(params, state, *args), reset,
                lambda: cupy.cuda.Device().synchronize())
    return impl, (lambda: {k: cupy.asnumpy(v) for k, v in params.items()})


def gpu_cupy():
    """CuPy when it is installed and sees a CUDA device, else None."""
    cupy = optional("cupy")
    try:
        return cupy if cupy is not None and cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # noqa: BLE001 - no driver, no device: the GPU rows are skipped
        return None


def check_agreement(impls: list[tuple[Impl, callable]], rtol: float, atol: float) -> dict:
    """One step of each implementation from the same start; compare losses and parameters."""
    results = {}
    for impl, get_params in impls:
        impl.reset()
        loss = impl.step()
        impl.sync()
        loss = float(loss.detach() if hasattr(loss, "detach") else loss)
        results[impl.name] = (loss, {k: np.array(v) for k, v in get_params().items()})
        impl.reset()
    base_loss, base_params = results[impls[0][0].name]
    report = {}
    for name, (loss, params) in results.items():
        worst = max(float(np.max(np.abs(params[k] - base_params[k]))) for k in base_params)
        ok = bool(np.isclose(loss, base_loss, rtol=rtol, atol=atol) and worst <= atol)
        report[name] = {"loss": loss, "max_param_diff": worst, "agrees": ok}
        if not ok:
            raise SystemExit(f"bench: {name} disagrees with {impls[0][0].name}: {report[name]}")
    return report


# ---- (A) ----------------------------------------------------------------------------------

def mlp_flops(batch: int) -> int:
    """FLOPs of the step's 8 matrix products: 3 forward, 3 weight gradients, and the input
    gradients of layers 2 and 3 (none for layer 1: x is data)."""
    return 2 * batch * (2 * 784 * 256 + 3 * 256 * 256 + 3 * 256 * 10)


def saved_activation_bytes(prog, dims: dict[str, int], itemsize: int) -> int:
    """Bytes of forward values that value_and_grad's backward section reads (params and
    inputs excluded): what must be kept alive from forward to backward."""
    external = {p.var.name for p in prog.params} | {d.var.name for d in prog.inputs}
    forward = {e.out.name: e.out for e in prog.eqns}
    read = {a.name for e in prog.backward for a in e.inputs if hasattr(a, "name")}
    total = 0
    for name in sorted(read & set(forward) - external):
        n = 1
        for d in forward[name].shape:
            n *= dims.get(d, d) if isinstance(d, str) else d
        total += n * itemsize
    return total


def peak_bytes(step) -> int:
    import tracemalloc

    tracemalloc.start()
    tracemalloc.reset_peak()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def product_time_in_step(fn, args: tuple, steps: int) -> tuple[float, float]:
    """Seconds per call spent on lines of `fn` holding a matrix product (`xp.matmul(`), and the
    whole call, from a line tracer over `steps` calls. The tracer adds about a microsecond
    per line executed; the product lines run for hundreds of microseconds each."""
    import inspect

    code = fn.__code__
    lines, first = inspect.getsourcelines(fn)
    product_lines = {first + k for k, text in enumerate(lines) if "xp.matmul(" in text.split("#")[0]}
    spent = [0.0]
    current: list = [None, 0.0]

    def local(frame, event, arg):
        now = time.perf_counter()
        if current[0] in product_lines:
            spent[0] += now - current[1]
        current[0] = frame.f_lineno if event == "line" else None
        current[1] = time.perf_counter()
        return local

    def global_(frame, event, arg):
        return local if frame.f_code is code else None

    fn(*args)
    t0 = time.perf_counter()
    sys.settrace(global_)
    try:
        for _ in range(steps):
            fn(*args)
    finally:
        sys.settrace(None)
    return spent[0] / steps, (time.perf_counter() - t0) / steps


def products_in_step(mod, args: tuple, reset, flops: int, sgemm, sgemm_flops: int, rounds: int) -> dict:
    """The 8 products' rate inside the generated step, as a fraction of sgemm's timed right
    after it in each round (a slow spell then hits both); medians over the rounds."""
    reset()
    fractions, seconds, steps = [], [], []
    for _ in range(max(rounds // 3, 3)):
        in_products, whole = product_time_in_step(mod.train_step, args, 3)
        t0 = time.perf_counter()
        sgemm()
        sgemm_rate = sgemm_flops / (time.perf_counter() - t0)
        fractions.append(flops / in_products / sgemm_rate)
        seconds.append(in_products)
        steps.append(whole)
    in_products = statistics.median(seconds)
    return {"seconds": in_products, "traced_step_seconds": statistics.median(steps),
            "gflops": flops / in_products / 1e9, "fraction_of_sgemm": statistics.median(fractions)}


def workload_a(tmp: Path, batches, rounds: int, sample_s: float, sgemm_n: int, use: dict) -> dict:
    mod = load_module(MLP_SPEC, tmp, "nnc_mlp_sgd")
    prog = build_program(MLP_SPEC.read_text(encoding="utf-8"), str(MLP_SPEC))
    init = mod.init_params(seed=0)
    rng = np.random.default_rng(1)
    out = {}
    for batch in batches:
        x = rng.random((batch, 784), dtype=np.float32)
        y = rng.integers(0, 10, size=batch)
        p_gen, reset_gen = numpy_params(init)
        state = mod.init_optimizer(p_gen)
        gen = Impl("nnc (numpy)", lambda p=p_gen, s=state, x=x, y=y: mod.train_step(p, s, x, y), reset_gen)
        p_hand, reset_hand = numpy_params(init)
        base = Impl("hand-written numpy", hand.numpy_mlp_step(p_hand, x, y, LR_A), reset_hand)
        p_buf, reset_buf = numpy_params(init)
        tuned = Impl(TUNED_A, hand.numpy_mlp_step_buffers(p_buf, x, y, LR_A), reset_buf)
        p_bt, reset_bt = numpy_params(init)
        tuned_t = Impl(TUNED_A + " + transposed", hand.numpy_mlp_step_buffers_T(p_bt, x, y, LR_A), reset_bt)
        checked = [(base, lambda p=p_hand: p), (gen, lambda p=p_gen: p), (tuned, lambda p=p_buf: p),
                   (tuned_t, lambda p=p_bt: p)]
        extra = [Impl("8 products only", hand.mlp_products(batch, [init["h1.W"], init["h2.W"],
                                                                  init["logits.W"]], x))]
        torch = use.get("torch")
        if torch is not None:
            tstep, model = hand.torch_mlp_step(init, x, y, LR_A)
            t_impl = Impl("torch eager", tstep, lambda m=model: hand.load_torch_mlp(m, init))
            checked.append((t_impl, lambda m=model: hand.torch_mlp_params(m)))
            p_t, reset_t = torch_params(torch, init)
            st_t = mod.init_optimizer(p_t)
            xt, yt = torch.asarray(x), torch.asarray(y)
            nt = Impl("nnc (torch tensors)", lambda p=p_t, s=st_t, xt=xt, yt=yt: mod.train_step(p, s, xt, yt),
                      reset_t)
            checked.append((nt, lambda p=p_t: {k: v.numpy() for k, v in p.items()}))
        jax = use.get("jax")
        if jax is not None:
            checked.append(jax_impl("jax.jit", jax, hand.jax_mlp_step(LR_A), init, x, y.astype(np.int32)))
            checked.append(jax_impl("nnc (jax.jit)", jax, nnc_jax_step(jax, mod, LR_A), init, x, y.astype(np.int32)))
        cupy = use.get("cupy")
        if cupy is not None:
            checked.append(cupy_impl(cupy, mod, init, x, y))
        agreement = check_agreement(checked, rtol=1e-4, atol=2e-5)
        if batch == max(batches):
            a = rng.random((sgemm_n, sgemm_n), dtype=np.float32)
            b = rng.random((sgemm_n, sgemm_n), dtype=np.float32)
            extra.append(Impl(f"sgemm {sgemm_n}x{sgemm_n}", lambda a=a, b=b: a @ b))
        impls = [c[0] for c in checked] + extra
        run_rounds(impls, rounds, sample_s)
        flops = mlp_flops(batch)
        rows = {}
        for impl in impls:
            s = summary(impl, base)
            work = 2 * sgemm_n ** 3 if impl.name.startswith("sgemm") else flops
            s["gflops"] = work / s["median_s"] / 1e9
            if impl.name in agreement:
                s["check"] = agreement[impl.name]
            rows[impl.name] = s
        rows["nnc (numpy)"]["ratio_to_tuned"] = summary(gen, tuned)["ratio"]
        rows["nnc (numpy)"]["ratio_to_fastest_hand"] = summary(gen, tuned_t)["ratio"]
        sg = rows.get(f"sgemm {sgemm_n}x{sgemm_n}")
        entry = {
            "rows": rows,
            "products_flops": flops,
            "saved_activation_bytes": {
                "nnc": saved_activation_bytes(prog, {"B": batch}, 4),
                "hand-written numpy": hand.mlp_saved_bytes_hand(batch),
            },
            "peak_traced_bytes_per_step": {"nnc": peak_bytes(gen.step), "hand-written numpy": peak_bytes(base.step)},
        }
        if sg is not None:
            entry["sgemm_gflops"] = sg["gflops"]
            entry["nnc_fraction_of_sgemm"] = rows["nnc (numpy)"]["gflops"] / sg["gflops"]
            entry["nnc_products_in_step"] = products_in_step(mod, (p_gen, state, x, y), reset_gen, flops,
                                                             lambda a=a, b=b: a @ b, 2 * sgemm_n ** 3, rounds)
        out[str(batch)] = entry
    return out


# ---- (B) ----------------------------------------------------------------------------------

def workload_b(tmp: Path, rounds: int, sample_s: float, use: dict) -> dict:
    mod = load_module(MAZUR_SPEC, tmp, "nnc_mazur")
    init = mod.init_params(dtype="float64")
    i, t = np.array([0.05, 0.10]), np.array([0.01, 0.99])
    p_gen, reset_gen = numpy_params(init)
    state = mod.init_optimizer(p_gen)
    gen = Impl("nnc (numpy)", lambda: mod.train_step(p_gen, state, i, t), reset_gen)
    p_hand, reset_hand = numpy_params(init)
    base = Impl("hand-written numpy", hand.numpy_mazur_step(p_hand, i, t, LR_B), reset_hand)
    p_dot, reset_dot = numpy_params(init)
    tuned = Impl(TUNED_B, hand.numpy_mazur_step_dot(p_dot, i, t, LR_B), reset_dot)
    p_py, reset_py = numpy_params(init)
    floats = Impl(FLOATS_B, hand.numpy_mazur_step_scalar(p_py, i, t, LR_B), reset_py)
    checked = [(base, lambda: p_hand), (gen, lambda: p_gen), (tuned, lambda: p_dot), (floats, lambda: p_py)]
    torch = use.get("torch")
    if torch is not None:
        tstep, tps = hand.torch_mazur_step(init, i, t, LR_B)

        def reset_torch():
            with torch.no_grad():
                for k, v in init.items():
                    tps[k].copy_(torch.asarray(v))

        checked.append((Impl("torch eager", tstep, reset_torch),
                        lambda: {k: v.detach().numpy() for k, v in tps.items()}))
    jax = use.get("jax")
    if jax is not None:
        jax.config.update("jax_enable_x64", True)
        checked.append(jax_impl("jax.jit", jax, hand.jax_mazur_step(LR_B), init, i, t))
        checked.append(jax_impl("nnc (jax.jit)", jax, nnc_jax_step(jax, mod, LR_B), init, i, t))
    if use.get("cupy") is not None:
        checked.append(cupy_impl(use["cupy"], mod, init, i, t))
    agreement = check_agreement(checked, rtol=1e-12, atol=1e-12)
    impls = [c[0] for c in checked]
    run_rounds(impls, rounds, sample_s)
    rows = {}
    for impl in impls:
        s = summary(impl, base)
        s["check"] = agreement[impl.name]
        rows[impl.name] = s
    rows["nnc (numpy)"]["ratio_to_tuned"] = summary(gen, tuned)["ratio"]
    rows["nnc (numpy)"]["ratio_to_python_floats"] = summary(gen, floats)["ratio"]
    if "torch eager" in rows:
        rows["nnc (numpy)"]["speedup_vs_torch_eager"] = statistics.median(
            b / a for a, b in zip(gen.samples, next(c[0] for c in checked if c[0].name == "torch eager").samples))
    return {"rows": rows}


# ---- (C) ----------------------------------------------------------------------------------

def chain_spec(layers: int) -> str:
    lines = ["model chain", "input x : float[B, 16]", "input y : float[B, 16]", "h0 = x"]
    lines += [f"h{k} = tanh(dense(h{k - 1}, 16))" for k in range(1, layers + 1)]
    lines += [f"loss = mse(h{layers}, y)", "optimizer sgd(lr=0.01)"]
    return "\n".join(lines) + "\n"


def nnc_command() -> list[str]:
    exe = Path(sys.executable).with_name("nnc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "nnc"]


def process_times(cmd: list[str], runs: int, env: dict | None = None) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - t0)
    return times


def stats(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": len(times)}


def workload_c(tmp: Path, runs: int, layer_counts, process_layers: int) -> dict:
    out_py = str(tmp / "out.py")
    mlp_cmd = [*nnc_command(), "compile", str(ROOT / "specs" / "mlp.nn"), "-o", out_py]
    # As installed: pip writes each module's bytecode at install time. Here it goes to a private
    # prefix, written by a first run; an environment with PYTHONDONTWRITEBYTECODE=1 (this
    # machine's) compiles nnc's sources in every process, 40-50 ms more, reported beside it.
    installed = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    installed["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    process_times(mlp_cmd, 1, installed)
    mlp = stats(process_times(mlp_cmd, runs, installed))
    as_is = stats(process_times(mlp_cmd, max(3, runs // 2))) if sys.dont_write_bytecode else None
    python = stats(process_times([sys.executable, "-c", "pass"], runs))
    scaling = {}
    for n in layer_counts:
        text = chain_spec(n)
        compile_spec(text, "chain.nn")  # warm: grammar and template built once per process
        times = []
        for _ in range(max(3, runs // 2)):
            t0 = time.perf_counter()
            compile_spec(text, "chain.nn")
            times.append(time.perf_counter() - t0)
        scaling[str(n)] = stats(times)
    per_layer = {n: s["min_s"] / int(n) for n, s in scaling.items()}  # the least disturbed run
    big = tmp / f"chain{process_layers}.nn"
    big.write_text(chain_spec(process_layers), encoding="utf-8")
    chain = stats(process_times([*nnc_command(), "compile", str(big), "-o", out_py], max(1, runs // 3), installed))
    first, last = min(scaling, key=int), max(scaling, key=int)
    return {
        "mlp_process": mlp, "mlp_process_without_bytecode": as_is, "python_startup": python, "in_process": scaling,
        "per_layer_s": per_layer,
        "growth": per_layer[last] / per_layer[first],  # 1.0 = linear; 10 = quadratic over 10x
        f"chain{process_layers}_process": chain,
    }


# ---- report -------------------------------------------------------------------------------

def machine() -> dict:
    info = machine_info()
    info.update(threads=THREADS, nnc=nnc.__version__, pinned_cpu=PINNED_CPU)
    return info


def table(results: dict) -> str:
    m = results["machine"]
    blas = blas_text(m)
    pinned = f", process pinned to CPU {m['pinned_cpu']}" if m.get("pinned_cpu") is not None else ""
    lines = [f"{m.get('cpu')} ({m['cpus']} CPUs), {m['threads']} thread(s) per library{pinned}; BLAS: {blas};"
             f" numpy {m['numpy']}" + "".join(f", {k} {m[k]}" for k in ("torch", "jax", "cupy") if k in m)]
    for batch, entry in results.get("A", {}).items():
        lines.append(f"(A) MLP 784-256-256-10 train_step, float32, batch {batch}")
        lines += _rows(entry["rows"], gflops=True)
        saved = entry["saved_activation_bytes"]
        lines.append(f"    saved activations: nnc {saved['nnc']:,} B, hand-written {saved['hand-written numpy']:,} B;"
                     f" traced peak per step: nnc {entry['peak_traced_bytes_per_step']['nnc']:,} B,"
                     f" hand-written {entry['peak_traced_bytes_per_step']['hand-written numpy']:,} B")
        lines.append(_tuned_line(entry["rows"], TUNED_A))
        lines.append(f"    nnc / '{TUNED_A} + transposed': {entry['rows']['nnc (numpy)']['ratio_to_fastest_hand']:.3f}"
                     " (the fastest hand-written NumPy step found; baselines.py says what it does)")
        if "sgemm_gflops" in entry:
            lines.append(f"    nnc step at {entry['nnc_fraction_of_sgemm']:.0%} of this machine's sgemm rate"
                         f" ({entry['sgemm_gflops']:.1f} GFLOP/s), counting the whole step")
            ip = entry["nnc_products_in_step"]
            lines.append(f"    the 8 products inside the nnc step (line-timed): {_t(ip['seconds'])} of"
                         f" {_t(ip['traced_step_seconds'])}, {ip['gflops']:.1f} GFLOP/s;"
                         f" {ip['fraction_of_sgemm']:.0%} of sgemm timed in the same rounds")
    if "B" in results:
        lines.append("(B) 2-2-2 sigmoid network (worked example 1), one sample per step, float64")
        lines += _rows(results["B"]["rows"], gflops=False)
        lines.append(_tuned_line(results["B"]["rows"], TUNED_B))
        lines.append(f"    nnc / '{FLOATS_B}': {results['B']['rows']['nnc (numpy)']['ratio_to_python_floats']:.3f}"
                     " (no array operation at all: this size's cost is NumPy's per-call overhead)")
        sp = results["B"]["rows"]["nnc (numpy)"].get("speedup_vs_torch_eager")
        if sp:
            lines.append(f"    nnc is {sp:.1f}x faster than torch eager")
    if "C" in results:
        c = results["C"]
        lines.append("(C) compile time")
        lines.append(f"    nnc compile specs/mlp.nn (whole process): median {c['mlp_process']['median_s']:.3f} s"
                     f" (min {c['mlp_process']['min_s']:.3f}; python -c pass {c['python_startup']['median_s']:.3f} s),"
                     " bytecode cached as an install leaves it")
        if c.get("mlp_process_without_bytecode"):
            lines.append(f"    the same with PYTHONDONTWRITEBYTECODE=1, as this environment sets it: median "
                         f"{c['mlp_process_without_bytecode']['median_s']:.3f} s (nnc's sources compiled every run)")
        for n, s in c["in_process"].items():
            lines.append(f"    {n:>5} layers in process: {s['median_s'] * 1e3:8.1f} ms"
                         f"  ({c['per_layer_s'][n] * 1e3:.2f} ms/layer)")
        key = next(k for k in c if k.startswith("chain"))
        lines.append(f"    {key} whole process: median {c[key]['median_s']:.2f} s;"
                     f" per-layer growth first->last {c['growth']:.2f}x (1.0 = linear)")
    if "F" in results:
        lines += fresh_process.table_lines(results["F"])
    return "\n".join(lines)


def _tuned_line(rows: dict, tuned: str) -> str:
    return (f"    nnc / '{tuned}': {rows['nnc (numpy)']['ratio_to_tuned']:.3f} (median over rounds; its"
            " docstring in baselines.py says what it does that nnc does not)")


def _rows(rows: dict, gflops: bool) -> list[str]:
    """ratio: median over rounds of (time / hand-written time in the same round), with its
    range; min ratio: best time over best time (the least disturbed runs)."""
    out = [f"    {'implementation':<32}{'median':>11}{'min':>11}{'max':>11}{'ratio':>8}  {'(range)':<14}"
           f"{'min ratio':>9}" + ("  GFLOP/s" if gflops else "")]
    for name, s in rows.items():
        ratio = (f"{s['ratio']:8.3f}  ({s['ratio_min']:.2f}-{s['ratio_max']:.2f})".ljust(24)
                 + f"{s['ratio_of_mins']:9.3f}") if "ratio" in s else " " * 33
        out.append(f"    {name:<32}{_t(s['median_s'])}{_t(s['min_s'])}{_t(s['max_s'])}{ratio}"
                   + (f"{s['gflops']:9.1f}" if gflops else ""))
    return out


def _t(seconds: float) -> str:
    return f"{seconds * 1e6:9.1f}us" if seconds < 1e-3 else f"{seconds * 1e3:9.2f}ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few rounds: proves it runs")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--workloads", default="A,B,C,F")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes for (A)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="threads for every library (default 1)")
    args = ap.parse_args(argv)
    quick = args.quick
    rounds = args.rounds or (3 if quick else 31)
    sample_s = 0.002 if quick else 0.05
    batches = [int(b) for b in args.batches.split(",")] if args.batches else ([32] if quick else [32, 128, 1024])
    use = {"torch": None if args.no_torch else optional("torch"),
           "jax": None if args.no_jax else optional("jax"),
           "cupy": gpu_cupy()}
    if use["torch"] is not None:
        use["torch"].set_num_threads(THREADS)
        optional("array_api_compat.torch")
    workloads = set(args.workloads.split(","))
    results: dict = {"quick": quick}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "A" in workloads:
            results["A"] = workload_a(tmp, batches, rounds, sample_s, 256 if quick else 2048, use)
        if "B" in workloads:
            results["B"] = workload_b(tmp, rounds, sample_s, use)
        if "C" in workloads:
            results["C"] = workload_c(tmp, 3 if quick else 15, [5, 10] if quick else [50, 100, 200, 500],
                                      20 if quick else 500)
    if "F" in workloads:
        results["F"] = fresh_process.measure(batches, 1 if quick else 5, 3 if quick else 40)
    results["machine"] = machine()
    results["skipped"] = {k: "not installed" + (" or no CUDA device" if k == "cupy" else "")
                          for k, v in use.items() if v is None}
    print(table(results))
    if results["machine"].get("OPENBLAS_CORETYPE"):
        print("note: OPENBLAS_CORETYPE is set, so OpenBLAS runs older kernels; unset it for speed figures")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
