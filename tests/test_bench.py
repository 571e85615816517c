"""The benchmark runs end to end in its quick mode (CI proves it works; figures come from full runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_quick_benchmark_reports_every_workload(quick_run):
    results, table = quick_run
    assert results["quick"] is True
    a = results["A"]["32"]
    for name in ("hand-written numpy", "nnc (numpy)"):
        row = a["rows"][name]
        assert row["check"]["agrees"] and row["median_s"] > 0 and row["gflops"] > 0
        assert row["min_s"] <= row["median_s"] <= row["max_s"]
    assert a["rows"]["hand-written numpy"]["ratio"] == 1.0
    assert a["sgemm_gflops"] > 0 and 0 < a["nnc_fraction_of_sgemm"]
    assert a["saved_activation_bytes"]["nnc"] > 0
    ip = a["nnc_products_in_step"]
    assert 0 < ip["seconds"] < ip["traced_step_seconds"] and ip["gflops"] > 0
    assert results["B"]["rows"]["nnc (numpy)"]["check"]["agrees"]
    c = results["C"]
    assert c["mlp_process"]["median_s"] > 0 and c["growth"] > 0
    assert "blas" in results["machine"] or "threadpoolctl" not in sys.modules
    fresh = results["F"]["batches"]["32"]
    assert set(fresh) == {"nnc", "nnc, no nudge", "hand-written numpy", "hand, out= buffers"}
    assert all(r["median_s"] > 0 and r["faults_per_step"] >= 0 for r in fresh.values())
    for line in ("(A) MLP", "(B) 2-2-2", "(C) compile time", "(A) batch 32, each implementation alone"):
        assert line in table


def test_optional_baselines_run_or_say_why(quick_run):
    results, _ = quick_run
    for name, row_name in (("torch", "torch eager"), ("jax", "jax.jit")):
        if name in results["skipped"]:
            assert results["skipped"][name].startswith("not installed")
        else:
            assert results["A"]["32"]["rows"][row_name]["check"]["agrees"]
            assert results["B"]["rows"][row_name]["check"]["agrees"]


def test_saved_activations_counted_from_the_ir():
    sys.path.insert(0, str(BENCH.parent))
    import bench

    from nnc.api import build_program

    prog = build_program(bench.MLP_SPEC.read_text(), "mlp_sgd.nn")
    # h1, h2 (B x 256 each) and the log-probabilities (B x 10): what the hand-written step
    # keeps. The one-hot labels are rebuilt in the backward, not kept.
    assert bench.saved_activation_bytes(prog, {"B": 8}, 4) == 8 * (256 + 256 + 10) * 4
    # `nnc summary` counts the inputs the backward reads too, and says how much of its figure they are
    from nnc.summary import summarize

    s = summarize(bench.MLP_SPEC.read_text(), "mlp_sgd.nn", dims={"B": 8})
    assert (s.saved_inputs.value, s.saved.value - s.saved_inputs.value) == (8 * (784 * 4 + 8), 8 * (256 + 256 + 10) * 4)
    assert bench.mlp_flops(1) == 2 * (2 * 784 * 256 + 3 * 256 * 256 + 3 * 256 * 10)


@pytest.mark.parametrize("damage", [b"not a pickle\n\x00\x01", None])
def test_compile_caches_are_private_and_a_bad_one_is_rebuilt(tmp_path, damage):
    """The analysed grammar and the compiled module template are cached (compile time) in
    the user's cache folder; a corrupt cache file changes nothing but speed. `None`: keep
    each file's header and damage the rest (Jinja reads a pickled checksum after it)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    spec = str(BENCH.parent.parent / "specs" / "mazur.nn")
    cmd = [sys.executable, "-m", "nnc", "compile", spec]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    cached = sorted((tmp_path / "nnc").iterdir())
    assert [p.name.split("-")[0] for p in cached] == ["grammar", "template"]
    assert (tmp_path / "nnc").stat().st_mode & 0o077 == 0
    from jinja2.bccache import bc_magic

    for path in cached:
        data = path.read_bytes()
        keep = len(bc_magic) if path.name.startswith("template") else 8
        path.write_bytes(damage if damage is not None else data[:keep] + b"\x80garbage" + data[keep:40])
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    assert again.stdout == first.stdout and again.stderr == ""
    assert all(p.read_bytes() != damage for p in cached)  # rebuilt: the next run is fast again


def test_product_lines_are_timed_apart_from_the_rest():
    """The line tracer charges a line holding `xp.matmul(` to the products and nothing else."""
    sys.path.insert(0, str(BENCH.parent))
    import time

    import bench

    class SlowNamespace:
        @staticmethod
        def matmul(a, b):
            time.sleep(0.004)
            return a

    def step(a, b):
        xp = SlowNamespace()
        c = xp.matmul(a, b)
        time.sleep(0.002)  # not a product: must not be counted
        return c

    in_products, whole = bench.product_time_in_step(step, (1.0, 2.0), 3)
    assert 0.004 <= in_products < whole and whole >= 0.006
    assert whole - in_products >= 0.002


def test_numpy_paths_benchmark_runs_and_its_pairs_agree(tmp_path):
    """benchmarks/numpy_paths.py (the table in docs/performance.md) in its quick mode: every
    pair timed, and nnc's side agreeing with NumPy's (its exit status says so)."""
    out = tmp_path / "paths.json"
    script = BENCH.with_name("numpy_paths.py")
    proc = subprocess.run([sys.executable, str(script), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["operation"] for r in rows} >= {"x ** 3.0", "where(x > 0, x, 0.01 x)", "logaddexp(0.0, x)"}
    assert all(r["agrees"] and r["numpy_s"] > 0 and r["nnc_s"] > 0 for r in rows)


def test_products_against_jax_runs_and_agrees():
    """benchmarks/products_vs_jax.py (docs/performance.md, "Where jax.jit is ahead") in one
    round: it checks each product against jax.jit's before timing, and prints a row each."""
    pytest.importorskip("jax", reason="JAX is not installed: the script compares against jax.jit")
    script = BENCH.with_name("products_vs_jax.py")
    proc = subprocess.run([sys.executable, str(script), "--rounds", "1", "--batch", "8"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if "jax.jit" in line and "ratio" in line]
    assert len(rows) == 4 and all(float(r.rsplit("ratio", 1)[1]) > 0 for r in rows), proc.stdout
