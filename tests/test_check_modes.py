"""`nnc check --mode fwd|rev|both`: forward mode checked as users run it, and a planted jvp bug caught."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from helpers import SPECS
from nnc.api import compile_spec
from nnc.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_forward_mode_passes_on_a_correct_spec():
    result = run("check", str(SPECS / "mazur.nn"), "--mode", "fwd")
    assert result.exit_code == 0, result.output
    assert "jvp vs finite differences of the loss" in result.output
    assert "hvp vs finite differences of the gradient" in result.output
    assert "forward mode: PASS" in result.output


def test_both_modes_report_both_and_json_has_both():
    result = run("check", str(SPECS / "xor.nn"), "--mode", "both", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"reverse", "forward"}
    assert any(c["what"].startswith("jvp vs reverse mode") for c in data["forward"])
    assert all(c["ok"] for c in data["forward"])


def test_a_wrong_tangent_in_a_module_fails_forward_mode(tmp_path):
    text = compile_spec((SPECS / "mazur.nn").read_text(), "mazur.nn")
    jvp = text[text.index("def jvp("):text.index("def hvp(")]
    line = next(ln for ln in jvp.splitlines() if ln.strip().startswith("dot_out_h = "))
    broken = line.replace("dot_out_h = ", "dot_out_h = 1.5 * ", 1)  # a wrong tangent rule for sigmoid
    module = tmp_path / "mazur_broken.py"
    module.write_text(text.replace(jvp, jvp.replace(line, broken)))
    result = run("check", str(module), "--mode", "fwd")
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output and "forward mode: FAIL" in result.output
    assert run("check", str(module), "--mode", "rev").exit_code == 0  # reverse mode is untouched


def test_a_module_whose_jvp_raises_fails_with_the_reason_and_keeps_the_reverse_table(tmp_path):
    text = compile_spec((SPECS / "mazur.nn").read_text(), "mazur.nn")
    jvp = text[text.index("def jvp("):text.index("def hvp(")]
    broken = re.sub(r"(\n    xp = _namespace\(.*\)\n)", r"\1    raise RuntimeError('planted')\n", jvp, count=1)
    assert broken != jvp
    module = tmp_path / "mazur_raises.py"
    module.write_text(text.replace(jvp, broken))
    result = run("check", str(module), "--mode", "both")
    assert result.exit_code == 1, result.output
    assert "PASS: 4 gradient(s) match" in result.output  # the reverse-mode table is still printed
    assert "the module raised RuntimeError: planted" in result.output and "forward mode: FAIL" in result.output
    assert "Traceback" not in result.output
    data = json.loads(run("check", str(module), "--mode", "fwd", "--json").output)
    assert data["forward"][-1] == {"error": "the module raised RuntimeError: planted", "ok": False}


def test_forward_mode_redraws_positive_for_sqrt_of_an_input(tmp_path):
    """As the reverse check does: sqrt(x) of a standard normal x made every jvp nan and the
    check FAIL on a correct module (sweep 11, found with tests/unseen8/multihead_split)."""
    spec = tmp_path / "sq.nn"
    spec.write_text("model sq\ninput x : float[B, 3]\ny = dense(sqrt(x), 2)\nloss = mean(y ^ 2)\n")
    result = run("check", str(spec), "--mode", "both")
    assert result.exit_code == 0, result.output
    assert "forward mode: PASS" in result.output
    assert "drawn positive" in result.output
