"""`nnc bench` as a user runs it: rows, JSON, FLOP rates against `nnc summary`, backends, errors.

Nothing here asserts a speed: only that the figures are consistent with each other and
with the summary's FLOP counts.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import ROOT, SPECS
from nnc.cli import main

FAST = ["--rounds", "3", "--min-time", "0.001"]
MLP = str(SPECS / "mlp.nn")


def bench(*args: str):
    return CliRunner().invoke(main, ["bench", *args])


def summary_totals(spec: str, *dims: str) -> dict:
    result = CliRunner().invoke(main, ["summary", spec, *(a for d in dims for a in ("--dim", d)), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "mlp.json"
    result = bench(MLP, "--dim", "B=8", *FAST, "--quiet", "--json", str(out))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # --quiet: no progress
    return json.loads(out.read_text()), result.stdout


def test_a_row_per_default_entry_point(mlp_run):
    data, table = mlp_run
    assert list(data["entries"]) == ["train_step", "value_and_grad", "forward"]
    lines = table.splitlines()
    for name in data["entries"]:
        assert sum(line.split()[0] == name for line in lines if line.strip()) == 1
    assert "B=8" in lines[0] and "default" not in lines[0]
    assert any(line.startswith("BLAS: ") for line in lines)
    assert data["dims"] == {"B": 8} and data["defaulted_dims"] == []
    assert data["rounds"] == 3 and data["backend"] == "numpy" and data["dtype"] == "float32"
    assert data["machine"]["numpy"] == np.__version__ and data["machine"]["cpus"] >= 1


def test_times_are_consistent(mlp_run):
    data, _ = mlp_run
    for row in data["entries"].values():
        assert row["rounds"] == 3 and row["calls_per_sample"] >= 1
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["calls_per_s"] == pytest.approx(1 / row["median_s"], rel=1e-12)


def test_gflops_are_the_summary_flops_over_the_median(mlp_run):
    data, _ = mlp_run
    s = summary_totals(MLP, "B=8")
    totals = s["totals"]
    # forward() computes the outputs, not the loss: every row but the loss line's
    forward = sum(r["flops_forward"] for r in s["rows"] if r["kind"] != "loss")
    expected = {"train_step": totals["flops_step"],
                "value_and_grad": totals["flops_forward"] + totals["flops_backward"],
                "forward": forward}
    for name, flops in expected.items():
        row = data["entries"][name]
        assert row["flops"] == flops
        assert row["gflops"] == pytest.approx(flops / row["median_s"] / 1e9, rel=1e-9)
    # the summary's definition: x, h1, h2 and the log-probabilities in float32, the labels y as int64
    assert data["saved_activation_bytes"] == totals["saved_bytes"] == 4 * 8 * (784 + 256 + 256 + 10) + 8 * 8
    assert data["saved_input_bytes"] == totals["saved_input_bytes"] == 4 * 8 * 784 + 8 * 8  # x and the labels


def test_unbound_dimension_defaults_to_128_and_says_so():
    result = bench(str(SPECS / "xor.nn"), "--entry", "forward", *FAST, "--quiet")
    assert result.exit_code == 0, result.output
    assert "N=128 (default" in result.stdout.splitlines()[0]


def test_forward_of_a_spec_without_outputs_is_noted(tmp_path):
    """It timed the no-op (0.1 us, 14 million calls/s) without a word (sweep 19)."""
    spec = tmp_path / "nodef.nn"
    spec.write_text("model nodef\nparam w : float[3] = 1.0\nloss = l2(w)\n")
    result = bench(str(spec), "--entry", "forward,loss", *FAST, "--quiet")
    assert result.exit_code == 0, result.output
    assert "note: forward computes nothing: the spec has no output line" in result.stdout
    result = bench(str(SPECS / "xor.nn"), "--entry", "forward", *FAST, "--quiet")
    assert result.exit_code == 0 and "computes nothing" not in result.stdout


def test_progress_goes_to_stderr(tmp_path):
    result = bench(str(SPECS / "mazur.nn"), "--entry", "loss", *FAST)
    assert result.exit_code == 0, result.output
    assert "calibrated loss" in result.stderr and "calibrated" not in result.stdout


def test_a_generated_module_file(tmp_path):
    module = tmp_path / "xor_mod.py"
    assert CliRunner().invoke(main, ["compile", str(SPECS / "xor.nn"), "-o", str(module)]).exit_code == 0
    out = tmp_path / "mod.json"
    result = bench(str(module), "--dim", "N=6", "--entry", "value_and_grad,loss,jvp,hvp", *FAST, "-q",
                   "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert list(data["entries"]) == ["value_and_grad", "loss", "jvp", "hvp"]
    totals = summary_totals(str(SPECS / "xor.nn"), "N=6")["totals"]
    assert data["entries"]["value_and_grad"]["flops"] == totals["flops_forward"] + totals["flops_backward"]
    assert data["entries"]["jvp"]["flops"] is None and data["entries"]["jvp"]["gflops"] is None
    assert "spec embedded in the module" in result.stdout


def test_array_api_strict_backend():
    pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    result = bench(MLP, "--dim", "B=4", "--backend", "array_api_strict", "--dtype", "float64", *FAST, "-q")
    assert result.exit_code == 0, result.output
    assert "array_api_strict, float64" in result.stdout.splitlines()[0]
    assert all(any(line.startswith(e) for line in result.stdout.splitlines())
               for e in ("train_step", "value_and_grad", "forward"))


def test_train_step_is_timed_on_a_copy_that_is_reset():
    from nnc.api import compile_spec, load_module
    from nnc.bench import impls

    module = load_module(compile_spec((SPECS / "mlp.nn").read_text(), "mlp.nn"), "mlp")
    (step,), _ = impls(module, ["train_step"], {"B": 4}, np, "float32", seed=3)
    own, state = step.step.args[:2]
    init = module.init_params(3)
    for _ in range(3):
        step.step()
    assert state["step"] == 4 and not np.array_equal(own["h1.W"], init["h1.W"])  # one call proved it runs
    step.reset()
    assert state["step"] == 0
    assert all(np.array_equal(own[k], init[k]) for k in init)
    assert all(not np.any(v) for v in state["velocity"].values())


def test_dask_backend_times_computed_work():
    """Dask is lazy: bench computes each call's result, and train_step persists its parameters
    and state after every call (as nnc train does), so the graph behind them does not grow
    with the calls and every timed call is one step's work."""
    da = pytest.importorskip("dask.array", reason="Dask is not installed")
    from nnc.api import compile_spec, load_module
    from nnc.bench import impls

    module = load_module(compile_spec((SPECS / "mlp.nn").read_text(), "mlp.nn"), "mlp")
    (step, grads), _ = impls(module, ["train_step", "value_and_grad"], {"B": 4},
                             pytest.importorskip("array_api_compat").array_namespace(da.zeros(1)), "float64", seed=3)
    own, state = step.step.args[0].args[:2]  # _persisted(partial(train_step, own, state, ...))
    sizes = []
    for _ in range(2):
        for _ in range(3):
            step.step()
        sizes.append({k: len(v.__dask_graph__()) for k, v in own.items()})
    assert sizes[0] == sizes[1] and state["step"] == 7  # one call proved it runs
    assert all(isinstance(v, da.Array) for v in own.values())
    [(loss, g)] = grads.step()  # dask.compute of the call: NumPy values
    assert isinstance(g["h1.W"], np.ndarray)
    result = bench(str(SPECS / "xor.nn"), "--backend", "dask", "--dtype", "float64", *FAST, "-q")
    assert result.exit_code == 0, result.output


def test_one_harness(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.delitem(sys.modules, "harness", raising=False)
    import harness

    from nnc.runtime import timing

    assert harness.run_rounds is timing.run_rounds and harness.Impl is timing.Impl


@pytest.mark.parametrize("args, message", [
    (["--dim", "B=x"], "--dim 'B=x': expected NAME=SIZE"),
    (["--dim", "Q=3"], "--dim: unknown dimension Q"),
    (["--entry", "train_step,backward"], "--entry backward: unknown entry point"),
    (["--backend", "no_such_array_library"], "--backend no_such_array_library: cannot import it"),
])
def test_bad_arguments_exit_2_in_one_line(args, message):
    result = bench(MLP, *args, *FAST)
    assert result.exit_code == 2
    assert result.stderr.startswith("nnc bench: error: ") and "Traceback" not in result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_bad_spec_gets_located_diagnostics(tmp_path):
    spec = tmp_path / "bad.nn"
    spec.write_text("model m\ninput x : float[3]\nloss = sum(relu(y))\n")
    result = bench(str(spec), *FAST)
    assert result.exit_code == 2
    assert f"{spec}:3:17: error: undefined name 'y'" in result.stderr


def test_module_problems_exit_2(tmp_path):
    plain = tmp_path / "plain.py"
    plain.write_text("x = 1\n")
    result = bench(str(plain), *FAST)
    assert result.exit_code == 2 and "not an nnc-generated module" in result.stderr
    module = tmp_path / "xor_mod.py"
    assert CliRunner().invoke(main, ["compile", str(SPECS / "xor.nn"), "-o", str(module)]).exit_code == 0
    text = module.read_text().replace('def forward(params, x):\n',
                                      'def forward(params, x):\n    raise ValueError("a bad hand edit")\n')
    assert "a bad hand edit" in text
    module.write_text(text)
    result = bench(str(module), *FAST)
    assert result.exit_code == 2
    assert result.stderr == "nnc bench: error: forward() raised ValueError: a bad hand edit\n"


def test_json_naming_the_target_is_refused(tmp_path):
    module = tmp_path / "m.py"
    assert CliRunner().invoke(main, ["compile", str(SPECS / "xor.nn"), "-o", str(module)]).exit_code == 0
    before = module.read_bytes()
    r = CliRunner().invoke(main, ["bench", str(module), "--json", str(module), "-q"])
    assert r.exit_code == 2, r.output
    assert "is the target itself" in r.output and module.read_bytes() == before


def test_an_unexpected_failure_while_timing_is_one_line_exit_3(monkeypatch):
    """Only EntryError was caught around the timed run: anything else (a --backend namespace
    failing mid-run) escaped as a raw traceback with exit 1, where every other command says one
    line and exits 3 (found by the sweep of tests/unseen9, with --backend cupy and no driver)."""
    from nnc import bench

    def broken(*args, **kwargs):
        raise RuntimeError("device lost")

    monkeypatch.setattr(bench, "run", broken)
    result = CliRunner().invoke(main, ["bench", str(SPECS / "xor.nn"), "--rounds", "1", "--min-time", "0.001", "-q"])
    assert result.exit_code == 3, result.output
    assert "internal error: RuntimeError: device lost" in result.output
    assert isinstance(result.exception, SystemExit)  # no exception escaped the command
    assert "Traceback" not in result.output
