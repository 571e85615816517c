"""Every spec in specs/: compiles, runs without nnc, has exact gradients, matches its golden file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, SPEC_PATHS, assert_gradients_match, load_source, random_inputs
from nnc.api import compile_spec

GOLDEN = ROOT / "tests" / "golden"
ids = [p.stem for p in SPEC_PATHS]


def _cli_compile(path: Path) -> str:
    """The module text exactly as `nnc compile SPEC` prints it (goldens come only from the CLI)."""
    done = subprocess.run([sys.executable, "-m", "nnc", "compile", str(path.relative_to(ROOT))],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.mark.parametrize("path", SPEC_PATHS, ids=ids)
def test_golden_module(path, update_goldens):
    """Regenerate with: python -m pytest tests/test_specs.py --update-goldens (then read the diff)."""
    text = _cli_compile(path)
    golden = GOLDEN / f"{path.stem}.py"
    if update_goldens:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file; run pytest {__file__} --update-goldens"
    assert text == golden.read_text(), f"generated code of {path.name} changed; see the diff with --update-goldens"


@pytest.mark.parametrize("path", SPEC_PATHS, ids=ids)
def test_compiles_to_the_same_bytes_twice(path):
    text = path.read_text()
    assert compile_spec(text, str(path)) == compile_spec(text, str(path))


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_generated_modules_pass_ruff(tmp_path):
    for path in SPEC_PATHS:
        (tmp_path / f"{path.stem}.py").write_text(compile_spec(path.read_text(), str(path)))
    done = subprocess.run(["ruff", "check", "--no-cache", "--isolated", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_generated_modules_of_the_sweep_specs_pass_ruff(tmp_path):
    """The hand-written specs of tests/unseen*/ too (ruff's default rules): the tests/unseen6 sweep
    found `B = _check_forward_inputs(x)` never read where a spec name contained a B (F841), an
    unread second dimension unpacked (`B, T = ...`, RUF059), `return None` as a function's only
    return (RET501) and `z >= z` in the derivative of maximum(z, z) (PLR0124)."""
    folders = sorted(Path(__file__).resolve().parent.glob("unseen*"))
    for folder in folders:
        for path in sorted(folder.glob("*.nn")):
            (tmp_path / f"{folder.name}_{path.stem}.py").write_text(compile_spec(path.read_text(), path.name))
    done = subprocess.run(["ruff", "check", "--no-cache", "--isolated", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


_BLOCK_NNC = """
import importlib.abc, sys
class _NoNnc(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "nnc" or name.startswith("nnc."):
            raise ImportError("nnc is deliberately unavailable here")
sys.meta_path.insert(0, _NoNnc())
sys.path.insert(0, sys.argv[1])
import numpy as np
import model
params = model.init_params(seed=0, dtype="float64")
rng = np.random.default_rng(0)
inputs = []
for meta in model.INPUTS.values():
    shape = tuple(3 if isinstance(d, str) else d for d in meta["shape"])
    if meta["kind"] == "int":
        inputs.append(rng.integers(0, meta.get("classes") or 2, size=shape))
    else:
        inputs.append(rng.normal(size=shape))
loss, grads = model.value_and_grad(params, *inputs)
state = model.init_optimizer(params)
model.train_step(params, state, *inputs)
try:
    import nnc  # noqa: F401
except ImportError:
    print("OK", float(loss))
"""


@pytest.mark.parametrize("path", SPEC_PATHS, ids=ids)
def test_module_runs_where_nnc_cannot_be_imported(path, tmp_path):
    (tmp_path / "model.py").write_text(compile_spec(path.read_text(), str(path)))
    done = subprocess.run([sys.executable, "-c", _BLOCK_NNC, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK "), done.stdout


@pytest.mark.parametrize("path", SPEC_PATHS, ids=ids)
def test_gradients_match_finite_differences(path, tmp_path):
    m = load_source(compile_spec(path.read_text(), str(path)), tmp_path, path.stem)
    rng = np.random.default_rng(1)
    params = m.init_params(seed=3, dtype="float64")
    assert_gradients_match(m, params, random_inputs(m, rng, size=3), rng)
