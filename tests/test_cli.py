"""The command line as a user runs it: exit codes, stdout, -o behaviour, `nnc ir`."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from helpers import SPECS
from nnc import __version__
from nnc.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_compile_to_stdout():
    result = run("compile", str(SPECS / "mlp.nn"))
    assert result.exit_code == 0
    assert result.output.startswith('"""Model \'mlp\'')
    assert "def value_and_grad(params, x, y):" in result.output


def test_compile_dash_o_dash_is_stdout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("compile", str(SPECS / "mlp.nn"), "-o", "-")
    assert result.exit_code == 0 and result.output == run("compile", str(SPECS / "mlp.nn")).output
    assert list(tmp_path.iterdir()) == []  # no file named '-'


def test_compile_to_file(tmp_path):
    out = tmp_path / "mlp.py"
    result = run("compile", str(SPECS / "mlp.nn"), "-o", str(out))
    assert result.exit_code == 0 and result.output == ""
    assert out.read_text().startswith('"""Model \'mlp\'')
    assert [p.name for p in tmp_path.iterdir()] == ["mlp.py"]  # no temporary left behind


def test_bad_spec_exits_2_and_leaves_output_untouched(tmp_path):
    spec = tmp_path / "bad.nn"
    spec.write_text("model m\ninput x : float[3]\nloss = sum(relu(y))\n")
    out = tmp_path / "out.py"
    out.write_text("precious")
    result = subprocess.run([sys.executable, "-m", "nnc", "compile", str(spec), "-o", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{spec}:3:17: error: undefined name 'y'" in result.stderr
    assert out.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.nn", "out.py"]


def test_output_equal_to_the_spec_is_refused(tmp_path):
    spec = tmp_path / "m.nn"
    spec.write_text((SPECS / "xor.nn").read_text())
    result = run("compile", str(spec), "-o", str(spec))
    assert result.exit_code == 2
    assert spec.read_text() == (SPECS / "xor.nn").read_text()


def test_missing_spec_is_a_usage_error(tmp_path):
    result = run("compile", str(tmp_path / "nope.nn"))
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_ir_prints_forward_and_backward():
    result = run("ir", str(SPECS / "mazur.nn"))
    assert result.exit_code == 0
    assert "forward:" in result.output and "backward:" in result.output
    assert "d_W1" in result.output


def test_version_and_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "nnc", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and __version__ in result.stdout
