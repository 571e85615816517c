"""`nnc compile --section` and `nnc diff`: sections, hand-edit detection, tracing to the spec."""

from __future__ import annotations

import ast

import pytest
from click.testing import CliRunner

from helpers import SPECS
from nnc.api import compile_spec
from nnc.cli import main
from nnc.diff import SECTIONS, diff_sections, split_sections

MAZUR = SPECS / "mazur.nn"
DEFS = {"forward": ["forward", "loss"], "backward": ["value_and_grad"], "forward-mode": ["jvp", "hvp"],
        "optimizer": ["init_optimizer", "train_step"],
        "weights": ["_replace_file", "_to_numpy", "_float_dtype", "_check_weights", "_write_weights", "_read_weights", "save_params",
                    "load_params"]}


def _module(path=MAZUR) -> str:
    return compile_spec(path.read_text(), path.name)


def test_sections_partition_the_module_in_order():
    text = _module(SPECS / "mlp.nn")
    parts = split_sections(text)
    numbers = [n for s in SECTIONS for n, _ in parts[s]]
    assert numbers == list(range(1, len(text.splitlines()) + 1))  # contiguous, in SECTIONS order
    for section, names in DEFS.items():
        defs = [ln.split("(")[0][4:] for _, ln in parts[section] if ln.startswith("def ")]
        assert defs == names
    assert any(ln.startswith("def init_params(") for _, ln in parts["header"])


@pytest.mark.parametrize("section", SECTIONS)
def test_compile_section_prints_just_that_part(section):
    result = CliRunner().invoke(main, ["compile", str(MAZUR), "--section", section])
    assert result.exit_code == 0, result.output
    tree = ast.parse(result.output)  # each section is valid Python on its own
    defs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    if section == "header":
        assert "init_params" in defs and not set(defs) & {n for v in DEFS.values() for n in v}
    else:
        assert defs == DEFS[section]


def test_same_spec_has_no_diff():
    result = CliRunner().invoke(main, ["diff", str(MAZUR), str(MAZUR)])
    assert result.exit_code == 0 and result.output == ""


def test_hand_edits_are_detected_and_traced_to_the_spec(tmp_path):
    runner = CliRunner()
    module = tmp_path / "mazur.py"
    assert runner.invoke(main, ["compile", str(MAZUR), "-o", str(module)]).exit_code == 0
    clean = runner.invoke(main, ["diff", str(MAZUR), str(module)])
    assert clean.exit_code == 0 and "no hand edits" in clean.output
    text = module.read_text()
    edited = text.replace("    net_o += b2\n", "    net_o += 2.0 * b2\n", 1)
    assert edited != text
    module.write_text(edited)
    result = runner.invoke(main, ["diff", str(MAZUR), str(module)])
    assert result.exit_code == 1
    out = result.output
    assert f"--- {MAZUR} (compiled) [forward]" in out and f"+++ {module} [forward]" in out
    assert "@@ " in out and " @@ mazur.nn:12  net_o = W2 @ out_h + b2" in out
    assert "-    net_o += b2" in out and "+    net_o += 2.0 * b2" in out
    assert "differs from what" in out and "in: forward (hand edits" in out
    # hunk line numbers are those of the file
    hunk = next(ln for ln in out.splitlines() if ln.startswith("@@"))
    first = int(hunk.split()[2].split(",")[0].lstrip("+"))
    changed = edited.splitlines().index("    net_o += 2.0 * b2") + 1
    assert first <= changed < first + 7


def test_two_specs_differ_only_where_they_changed(tmp_path):
    new = tmp_path / "mlp_small.nn"
    new.write_text((SPECS / "mlp.nn").read_text().replace("relu(dense(h1, 256))", "relu(dense(h1, 128))"))
    result = CliRunner().invoke(main, ["diff", str(SPECS / "mlp.nn"), str(new), "--section", "forward"])
    assert result.exit_code == 1
    removed = [ln for ln in result.output.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    # in forward() and loss(): the comment, and the parameter shapes test (h2 and logits.W changed)
    assert [ln for ln in removed if ".shape != " not in ln] == ["-    # mlp.nn:6  h2 = relu(dense(h1, 256))"] * 2
    assert len(removed) == 2 * 3 and "h2_W.shape != (256, 256)" in removed[0]
    assert "logits = dense(h2, 10)" not in "".join(removed)  # a renamed spec file alone is no change


def test_diff_function_reports_sections():
    old, new = _module(), _module().replace("def init_optimizer(params):", "def init_optimizer(params):  # edited")
    diffs = diff_sections(old, new, "a", "b")
    assert [d.section for d in diffs] == ["optimizer"]
    assert diffs[0].lines[:2] == ["--- a [optimizer]", "+++ b [optimizer]"]


def test_colour_only_when_asked_or_on_a_terminal(tmp_path):
    other = tmp_path / "other.nn"
    other.write_text(MAZUR.read_text().replace("lr=0.5", "lr=0.25"))
    plain = CliRunner().invoke(main, ["diff", str(MAZUR), str(other)])
    coloured = CliRunner().invoke(main, ["diff", str(MAZUR), str(other), "--color"])
    assert "\x1b[" not in plain.output and "\x1b[32m+" in coloured.output and "\x1b[31m-" in coloured.output


def test_bad_inputs_exit_2(tmp_path):
    bad = tmp_path / "bad.nn"
    bad.write_text("model bad\ninput x : float[2]\nloss = sum(y)\n")
    result = CliRunner().invoke(main, ["diff", str(MAZUR), str(bad)])
    assert result.exit_code == 2 and "bad.nn:3:" in result.output
    missing = CliRunner().invoke(main, ["diff", str(MAZUR), str(tmp_path / "nope.py")])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_hunks_in_a_statement_over_several_lines_name_its_lines():
    """A statement continued over lines 5-7 is traced as `multi.nn:5-7` (the hunk header
    regex took only `:N`, so such a hunk named an earlier statement or none), and a change to
    the spec's text is the header's (its lines were taken for code of the forward section)."""
    spec = ("model multi\ninput x : float[B, 3]\ninput y : float[B, 2]\nh = dense(x, 2)\n"
            "loss = (mse(h, y)\n        + {c} * (l2(h.W)\n                 + l2(h.b)))\n")
    old, new = (compile_spec(spec.format(c=c), "multi.nn") for c in ("1e-3", "1e-2"))
    diffs = diff_sections(old, new, "a", "b")
    # the spec's own text (SOURCE) is the header's, though its `loss = (...` looks like code
    assert [d.section for d in diffs] == ["header", "forward", "backward", "forward-mode", "optimizer"]
    headers = [ln for d in diffs[1:] for ln in d.lines if ln.startswith("@@")]
    assert headers and all(ln.endswith("@@ multi.nn:5-7  loss = (mse(h, y)") for ln in headers), headers
