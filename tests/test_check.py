"""`nnc check` and `nnc.check`: the report, the command line, kinks, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from mutate import edit_grad, generated

import nnc
from helpers import SPEC_PATHS, SPECS
from nnc.api import compile_spec, load_module
from nnc.cli import main
from nnc.runtime.gradcheck import (
    Report,
    Row,
    _entry_probes,
    _judge,
    _Probe,
    _Tolerance,
    check_module,
)


def run_cli(*args: str):
    return CliRunner().invoke(main, ["check", *args])


def _mlp_module():
    return load_module(compile_spec((SPECS / "mlp.nn").read_text(), "mlp.nn"))


@pytest.mark.parametrize("path", SPEC_PATHS, ids=[p.stem for p in SPEC_PATHS])
def test_every_bundled_spec_passes(path: Path):
    result = run_cli(str(path), "--max-entries", "64")
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().splitlines()[-1].startswith("PASS")
    module = load_module(compile_spec(path.read_text(), str(path)))
    for name in (*module.PARAMS, *module.WRT):  # one row per gradient, named as in the spec
        assert f"\n{name}" in result.output


def test_mlp_uses_entries_for_small_and_samples_for_large_arrays():
    report = check_module(_mlp_module())
    modes = {r.name: (r.mode, r.entries, r.directions) for r in report.rows}
    assert modes["h1.W"] == ("sampled", 256, 4)
    assert modes["h1.b"] == ("all", 256, 0)
    assert modes["logits.b"] == ("all", 10, 0)
    assert report.passed, report.format()


def test_json_report(tmp_path: Path):
    result = run_cli(str(SPECS / "xor.nn"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["passed"] is True and data["dtype"] == "float64" and data["dims"] == {"N": 3}
    assert [r["name"] for r in data["rows"]] == ["hidden.W", "hidden.b", "logit.W", "logit.b"]
    row = data["rows"][0]
    assert row["shape"] == [2, 2] and row["entries"] == 4 and row["status"] == "PASS"
    assert row["max_abs_err"] < 1e-8 and isinstance(row["analytic"], float)


def test_seed_reproduces_a_run_and_dims_are_honoured():
    a = json.loads(run_cli(str(SPECS / "svm.nn"), "--json", "--seed", "7").output)
    b = json.loads(run_cli(str(SPECS / "svm.nn"), "--json", "--seed", "7").output)
    c = json.loads(run_cli(str(SPECS / "svm.nn"), "--json", "--seed", "8", "--dim", "N=6").output)
    assert a == b
    assert c["loss"] != a["loss"] and c["dims"] == {"N": 6} and c["seed"] == 8


def test_wrt_inputs_get_rows(tmp_path: Path):
    spec = tmp_path / "w.nn"
    spec.write_text("model w\ninput x : float[B, 3]\ninput t : float[B, 2]\nh = tanh(dense(x, 2))\n"
                    "loss = mse(h, t)\noutput h\nwrt x\n")
    result = run_cli(str(spec), "--dim", "B=4")
    assert result.exit_code == 0, result.output
    assert "x (input)  [4, 3]" in result.output


def test_float32_says_float64_is_the_real_test():
    result = run_cli(str(SPECS / "mazur.nn"), "--dtype", "float32")
    assert result.exit_code == 0, result.output
    assert "float64 (the default) is the real test" in result.output
    assert "rtol 0.01" in result.output


def test_sampled_mode_with_max_entries():
    report = nnc.check(SPECS / "activations.nn", max_entries=5)
    row = next(r for r in report.rows if r.name == "z.W")
    assert (row.mode, row.entries, row.directions) == ("sampled", 5, 4)
    assert report.passed, report.format()


def test_library_call_on_paths_and_modules(tmp_path: Path):
    source = compile_spec((SPECS / "xor.nn").read_text(), "xor.nn")
    module_path = tmp_path / "xor_module.py"
    module_path.write_text(source)
    for target in (SPECS / "xor.nn", str(module_path), load_module(source)):
        report = nnc.check(target, seed=3)
        assert isinstance(report, Report) and report.passed and report.seed == 3
        assert [r.name for r in report.rows] == ["hidden.W", "hidden.b", "logit.W", "logit.b"]


def test_import_nnc_stays_light():
    code = "import sys, nnc; print('numpy' in sys.modules, 'nnc.runtime.gradcheck' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ---- exit status 2: bad spec, bad module, bad arguments -------------------------------------

def test_bad_spec_exits_2_with_a_located_error(tmp_path: Path):
    spec = tmp_path / "bad.nn"
    spec.write_text("model bad\ninput x : float[2]\nloss = sum(relu(y))\n")
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert result.exit_code == 2
    assert "bad.nn:3:17: error: undefined name 'y'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("text,message", [
    ("x = 1\n", "not an nnc-generated module"),
    ("def broken(:\n", "cannot import the module: SyntaxError"),
    ("raise RuntimeError('no')\n", "cannot import the module: RuntimeError"),
    ("import sys\nsys.exit(0)\n", "cannot import the module: it called sys.exit(0)"),  # was exit 0, silent
])
def test_bad_module_exits_2(tmp_path: Path, text: str, message: str):
    path = tmp_path / "m.py"
    path.write_text(text)
    result = run_cli(str(path))
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize("args,message", [
    (["--dim", "B"], "NAME=SIZE"),
    (["--dim", "B=0"], "NAME=SIZE"),
    (["--dim", "Q=3"], "unknown dimension Q (the model's symbolic dimensions: B)"),
    (["--dtype", "float16"], "float16"),
    (["--max-entries", "0"], "max-entries"),
    (["--rtol", "0", "--atol", "0"], "rtol and atol cannot both be 0"),  # was a ZeroDivisionError blamed on the module
])
def test_bad_arguments_exit_2(args, message):
    result = run_cli(str(SPECS / "mlp.nn"), *args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_missing_file_exits_2():
    assert run_cli("no/such/spec.nn").exit_code == 2
    assert run_cli("no/such/module.py").exit_code == 2


# ---- the module misbehaves: FAIL (exit 1), never a traceback --------------------------------

def test_wrong_gradient_dtype_and_missing_gradient_fail():
    module = load_module(edit_grad("xor", "logit.b", lambda d: f"xp.astype({d}, xp.float32)"))
    row = next(r for r in check_module(module).rows if r.name == "logit.b")
    assert row.status == "FAIL" and row.message == "gradient has dtype float32, expected float64"
    module = load_module(edit_grad("xor", "logit.b", lambda d: "None"))
    row = next(r for r in check_module(module).rows if r.name == "logit.b")
    assert row.status == "FAIL" and "no gradient" in row.message
    module = load_module(edit_grad("xor", "logit.b", lambda d: "0.5"))
    row = next(r for r in check_module(module).rows if r.name == "logit.b")
    assert row.status == "FAIL" and row.message == "gradient is a float, not an array of shape (1,)"


def test_a_module_that_raises_fails_with_its_error(tmp_path: Path):
    path = tmp_path / "raises.py"
    path.write_text(edit_grad("xor", "logit.b", lambda d: "d_typo_name"))
    result = run_cli(str(path))
    assert result.exit_code == 1
    assert "FAIL: the module raised NameError: name 'd_typo_name' is not defined" in result.output
    assert "Traceback" not in result.output


def test_loss_and_value_and_grad_must_agree():
    # loss() returns twice the loss that value_and_grad() returns
    text = generated("xor")
    start = text.index("\ndef loss(")
    end = text.index("\n    return loss\n", start)
    module = load_module(text[:end] + "\n    return 2.0 * loss\n" + text[end + len("\n    return loss\n"):])
    report = check_module(module)
    assert not report.passed and "disagree on the loss value" in report.error
    # the gradients are still compared with loss(), which doubled
    assert {r.status for r in report.rows} == {"FAIL"} and len(report.rows) == 4
    assert "error: loss() gives" in report.format()


# ---- kinks ----------------------------------------------------------------------------------

PIECEWISE = ("model pw\ninput x : float[B, 8]\ninput t : float[B, 3]\nh = relu(dense(x, 16))\n"
             "o = dense(h, 3)\nloss = mse(o, t)\noutput o\n")


def test_entries_straddling_kinks_are_skipped_not_failed():
    # Piecewise quadratic in every parameter, so central differences are exact away from
    # kinks; a large step makes many of them cross a relu kink, and those are skipped
    # (each would fail: only failing comparisons are examined for kinks).
    report = check_module(load_module(compile_spec(PIECEWISE, "pw.nn")), eps=0.02, dims={"B": 8})
    assert sum(r.skipped for r in report.rows) > 0
    assert report.passed, report.format()
    assert "skipped at kinks" in report.format()
    assert "least affected" in report.format()


def test_points_are_drawn_again_to_leave_kinks():
    report = check_module(load_module(compile_spec(PIECEWISE, "pw.nn")), eps=3e-3, dims={"B": 8})
    assert report.passed and report.draw > 0 and sum(r.skipped for r in report.rows) == 0
    assert any("earlier points had comparisons straddling kinks" in n for n in report.notes)


def test_discontinuous_step_and_sign_are_skipped():
    spec = ("model jumps\ninput x : float[B, 3]\nz = dense(x, 3)\n"
            "loss = sum(step(z) + sign(z) + 0.1 * relu(z) + abs(z)) + maximum(sum(z), 0.0)\noutput z\n")
    module = load_module(compile_spec(spec, "jumps.nn"))
    report = check_module(module, eps=0.1, dims={"B": 8}, seed=1)
    assert sum(r.skipped for r in report.rows) > 0
    assert report.passed, report.format()


def test_parameters_initialised_on_kinks_pass_without_skips():
    spec = ("model kinks\ninput x : float[B, 4]\nparam a : float[4] = [0, 0, 0, 0]\n"
            "param b : float[4] = [0, 0, 0, 0]\n"
            "loss = sum(relu(a) + abs(b) + maximum(a, b) + minimum(a, 0.0) + leaky_relu(b)) + mean(x * a)\n")
    report = check_module(load_module(compile_spec(spec, "kinks.nn")))
    assert report.passed and sum(r.skipped for r in report.rows) == 0, report.format()


def test_kink_rule_separates_kinks_from_bugs():
    tol = _Tolerance(1e-5, 1e-8, 1.0)

    def halved(central, fwd, bwd):
        return lambda: (central, fwd, bwd)

    # one kink inside the step: the one-sided slopes differ by the jump
    kink = Row("k", "param", (1,))
    _judge(kink, [_Probe("[0]", 1.0, 0.6, 0.8, halved(0.8, 1.0, 0.6))], tol)
    assert (kink.status, kink.skipped) == ("SKIP", 1)
    # kinks on both sides that cancel in fwd - bwd: halving the step moves the estimate
    both = Row("b", "param", (1,))
    _judge(both, [_Probe("[0]", 1.0, 0.6, 0.0, halved(0.9, 0.9, 0.9))], tol)
    assert (both.status, both.skipped) == ("SKIP", 1)
    # a wrong derivative at a smooth point: every estimate agrees, the analytic value does not
    bug = Row("b", "param", (2,))
    _judge(bug, [_Probe("[0]", 1.0, 0.6, 1e-7, halved(0.6, 0.6, 0.6)),
                 _Probe("[1]", 2.0, 2.0, 0.0, halved(2.0, 2.0, 2.0))], tol)
    assert (bug.status, bug.skipped, bug.worst) == ("FAIL", 0, "[0]")
    assert np.isclose(bug.max_rel_err, 0.4)


@pytest.mark.parametrize("jump", [1.0, -1.0, 0.01, "step"])
@pytest.mark.parametrize("curvature", [0.0, 5.0, -50.0])
def test_a_single_kink_anywhere_in_the_step_is_recognised(jump, curvature):
    # L(t) = 0.3 t + curvature t^2 + (a kink of slope jump, or a unit step, at t = u h)
    h, x = 1e-2, np.zeros(1)
    for u in np.linspace(-0.99, 0.99, 99):
        at = u * h
        if jump == "step":
            def f(at=at):
                return 0.3 * x[0] + curvature * x[0] ** 2 + float(x[0] >= at)
            analytic = 0.3
        else:
            def f(at=at):
                return 0.3 * x[0] + curvature * x[0] ** 2 + jump * max(x[0] - at, 0.0)
            analytic = 0.3 + (jump if at < 0 else 0.0)
        probe = next(_entry_probes(f, x, np.array([analytic]), np.array([0]), h, f()))
        err = abs(probe.analytic - probe.numeric)
        assert err < 1e-9 or probe.straddles_kink(err), u


@pytest.mark.parametrize("command", ["check", "bench"])
def test_a_module_that_exits_fails_instead_of_passing(command: str, tmp_path: Path):
    """value_and_grad calling sys.exit(0): nnc check printed nothing and exited 0 (read as
    "every gradient passes"), nnc bench the same, and nnc.check() ended the caller's
    interpreter (sweep 17). SystemExit is no Exception; the checks now catch it too."""
    text = compile_spec((SPECS / "xor.nn").read_text(), "xor.nn").replace(
        "def value_and_grad(params, x, y):\n", "def value_and_grad(params, x, y):\n    import sys\n    sys.exit(0)\n", 1)
    assert "sys.exit(0)" in text
    path = tmp_path / "exits.py"
    path.write_text(text)
    result = run_cli(str(path)) if command == "check" else CliRunner().invoke(main, ["bench", str(path), "--rounds", "1", "--min-time", "0.001"])
    if command == "check":
        assert result.exit_code == 1 and "FAIL: the module called sys.exit(0)" in result.output, result.output
    else:
        assert result.exit_code == 2 and "called sys.exit(0)" in result.output, result.output
    report = nnc.check(str(path))
    assert not report.passed and report.error == "the module called sys.exit(0)"


@pytest.mark.parametrize("dtype, eps", [("float64", "1e-300"), ("float32", "1e-12")])
def test_an_eps_that_rounds_away_is_said_to_be_too_small(dtype, eps):
    """x + eps == x made a ZeroDivisionError in nnc's own difference quotient, reported as
    'the module raised ZeroDivisionError' (sweep 20)."""
    r = CliRunner().invoke(main, ["check", str(SPECS / "xor.nn"), "--dtype", dtype, "--eps", eps])
    assert r.exit_code == 1, r.output
    assert f"FAIL: eps {eps} is too small: a step of {eps} rounds away in {dtype}" in r.output
    assert "the module raised" not in r.output


def test_a_check_that_skipped_every_comparison_does_not_pass():
    """--rtol 1e-30 --atol 0, far below what finite differences resolve, made every error look
    like a kink's: every row SKIP, and 'PASS: 4 gradient(s) match', exit 0 (sweep 20)."""
    r = CliRunner().invoke(main, ["check", str(SPECS / "xor.nn"), "--rtol", "1e-30", "--atol", "0"])
    assert r.exit_code == 1, r.output
    assert "PASS" not in r.output.splitlines()[-1]
    assert r.output.splitlines()[-1].startswith("FAIL: no comparison gave a verdict")
    report = check_module(load_module(compile_spec((SPECS / "xor.nn").read_text(), "xor.nn")), rtol=1e-30, atol=0.0)
    assert not report.passed and all(row.status == "SKIP" for row in report.rows)
