"""Messages and edge cases a demanding user met (the seventeenth sweep's nitpicks).

The sweep's bugs have their tests beside the code they fixed (test_cli_errors: a failed write
to stdout; test_check: a module that exits; tests/errors: losses that broadcast to [B, B],
eps=0, invisible characters, output h.W of a failed h; test_weights: the temporary file's name,
two dtypes; test_names_and_regressions: adjoint names). These are the smaller ones:
- `sum(x, axis=None)`, documented as the signature, and `dense(x, c)` with `c` a name said
  "must be a number" and offered "write a constant such as 0.5 or -1e-3";
- keywords were accepted as model names (`model float`);
- init_params(seed=-1) raised NumPy's "expected non-negative integer", naming no argument,
  and seed=None gave values no seed reproduces;
- complex directions to jvp and hvp lost their imaginary part, with only NumPy's ComplexWarning;
- `nnc check --mode fwd` let the module's RuntimeWarnings through to stderr;
- a truncated safetensors file was "data offsets that do not match its shape and dtype".
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers import SPECS, load_source
from nnc.api import compile_spec
from nnc.errors import SpecError, SpecErrors


def _error(text: str) -> SpecError:
    with pytest.raises((SpecError, SpecErrors)) as info:
        compile_spec(text, "s.nn")
    errors = info.value.errors if isinstance(info.value, SpecErrors) else [info.value]
    assert len(errors) == 1, [e.message for e in errors]
    return errors[0]


@pytest.mark.parametrize("body, message, hint", [
    ("loss = sum(x, axis=None)", "sum(): 'axis' must be an integer written as a number, got 'None'",
     "leave axis out to reduce over every element (there is no None)"),
    ("loss = mean(x, axis=true)", "mean(): 'axis' must be an integer written as a number, got 'true'",
     "write the axis as a number"),
    ("c = 3\nh = dense(x, c)\nloss = sum(h)", "dense(): 'units' must be an integer written as a number, got 'c'",
     "write the number itself (dense(x, 3))"),
])
def test_integer_arguments_say_what_to_write(body: str, message: str, hint: str):
    err = _error(f"model m\ninput x : float[B, 2]\n{body}\n")
    assert err.message == message and hint in err.help, (err.message, err.help)


def test_the_documented_reductions_compile():
    compile_spec("model m\ninput x : float[B, 2]\nloss = sum(x) + sum(mean(x, axis=1))\n", "s.nn")


@pytest.mark.parametrize("name", ["float", "loss", "model", "output"])
def test_a_keyword_is_no_model_name(name: str):
    err = _error(f"model {name}\ninput x : float[B, 2]\nloss = sum(x)\n")
    assert err.message == f"'{name}' is a keyword and cannot be used as a name"
    assert err.span.line == 1 and f"model {name}_net" in err.help


@pytest.fixture(scope="module")
def xor(tmp_path_factory):
    return load_source(compile_spec((SPECS / "xor.nn").read_text(), "xor.nn"), tmp_path_factory.mktemp("xor"))


@pytest.mark.parametrize("seed", [-1, 1.5, None, True, "3"])
def test_init_params_names_a_bad_seed(xor, seed):
    with pytest.raises(ValueError, match=r"^init_params: seed must be a non-negative integer, got "):
        xor.init_params(seed)


def test_init_params_takes_any_integer_seed(xor):
    a, b = xor.init_params(np.int64(7)), xor.init_params(7)
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("entry", ["jvp", "hvp"])
def test_complex_directions_are_refused(xor, entry):
    params = xor.init_params()
    x, y = np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)
    directions = {k: np.ones(v.shape, np.complex64) for k, v in params.items()}
    arg = "tangents" if entry == "jvp" else "vector"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before NumPy's ComplexWarning
        with pytest.raises(TypeError, match=rf"^{arg}\['hidden.W'\] has dtype complex64: directions are real"):
            getattr(xor, entry)(params, directions, x, y)
    real = {k: np.ones(v.shape, np.float64) for k, v in params.items()}  # another real dtype: cast
    want = getattr(xor, entry)(params, {k: v.astype(np.float32) for k, v in real.items()}, x, y)
    got = getattr(xor, entry)(params, real, x, y)
    assert repr(got) == repr(want)


def test_forward_mode_check_prints_no_numpy_warning(tmp_path: Path):
    """log of an input: the first real-valued point gives nan (redrawn positive, as it says)."""
    spec = tmp_path / "nanl.nn"
    spec.write_text("model t\ninput x : float[B, 2]\nparam w : float[2] = 1.0\nloss = sum(log(x * w - 10))\n")
    proc = subprocess.run([sys.executable, "-m", "nnc", "check", str(spec), "--mode", "fwd"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert "forward mode: inputs and parameters drawn positive" in proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr


def test_a_cut_short_safetensors_file_says_so(xor, tmp_path: Path):
    path = tmp_path / "w.safetensors"
    xor.save_params(xor.init_params(), path)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"the file is cut short: '.+' ends at byte \d+ of the data, which has \d+"):
        xor.load_params(path)


@pytest.mark.parametrize("loss", ["bce", "mse", "sse"])
def test_the_help_for_a_column_against_a_vector_compiles(loss: str):
    """The help of the [B, 1]-against-[B] error (sweep 18: it offered flatten(...), which keeps
    [B, 1]): both of its remedies compile, and the spec as written does not."""
    text = f"model t\ninput x : float[B, 2]\ninput y : float[B]\nh = dense(x, 1)\nloss = {loss}(h, y)\n"
    err = _error(text)
    assert "sum(..., axis=1)" in err.help and "flatten" not in err.help, err.help
    compile_spec(text.replace("h = dense(x, 1)", "h = sum(dense(x, 1), axis=1)"), "s.nn")
    compile_spec(text.replace("float[B]", "float[B, 1]"), "s.nn")
