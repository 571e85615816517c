"""The command line end to end over tests/unseen9/*.nn: compile, check, diff, graph, summary, train.

tests/test_unseen_specs.py runs these specs' modules on every backend; this runs them the way a
user does, through `nnc`, and holds each command to its exit status, its files (no temporary
left behind, the module the same bytes twice, lint-clean) and what it says about the spec.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import load_source
from nnc.cli import main

UNSEEN9 = sorted((Path(__file__).resolve().parent / "unseen9").glob("*.nn"))


def _nnc(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.stderr + result.stdout
    return result.exit_code, result.stdout, result.stderr


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


@pytest.mark.parametrize("spec", UNSEEN9, ids=[p.stem for p in UNSEEN9])
def test_unseen9_through_the_command_line(spec: Path, tmp_path: Path):
    out = tmp_path / "m.py"
    assert _nnc("compile", spec, "-o", out)[0] == 0
    code, again, _ = _nnc("compile", spec)
    assert code == 0 and again == out.read_text()  # the same bytes, to stdout as to -o
    if shutil.which("ruff") is not None:
        lint = subprocess.run(["ruff", "check", "--no-cache", "--isolated", str(out)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout[-2000:]
    code, report, _ = _nnc("check", spec, "--mode", "rev")
    assert code == 0 and "PASS" in report and "FAIL" not in report
    assert _nnc("diff", spec, out)[0] == 0  # a spec against its own module: no hand edits
    code, dot, _ = _nnc("graph", spec, "--backward", "-o", tmp_path / "g.dot")
    assert code == 0 and (tmp_path / "g.dot").read_text().startswith("digraph")

    module = load_source(out.read_text(), tmp_path, spec.stem)
    code, text, _ = _nnc("summary", spec, "--json")
    assert code == 0
    want = sum(math.prod(shape) for shape in module.PARAMS.values())
    assert json.loads(text)["totals"]["params"] == want, text[:500]

    shapes = [meta["shape"] for meta in module.INPUTS.values()]
    if all(s and isinstance(s[0], str) for s in shapes):  # a batch axis: nnc train on an .npz
        rng = np.random.default_rng(0)
        data = {}
        for name, meta in module.INPUTS.items():
            shape = tuple(24 if i == 0 else (5 if isinstance(d, str) else d) for i, d in enumerate(meta["shape"]))
            data[name] = (rng.integers(0, meta["classes"], size=shape) if meta["kind"] == "int"
                          else rng.normal(size=shape))
        np.savez(tmp_path / "train.npz", **data)
        code, _, err = _nnc("train", spec, "--data", tmp_path / "train.npz", "--epochs", "2", "-q",
                            "--out", tmp_path / "w.npz")
        assert code == 0, err
        with np.load(tmp_path / "w.npz") as weights:
            assert {k: weights[k].shape for k in weights.files} == module.PARAMS
    assert _leftovers(tmp_path) == []
