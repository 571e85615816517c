"""Warnings, dtypes and threads, as a careful user meets them (the fifteenth sweep).

Probed on every spec of specs/ and about 70 of tests/unseen*/, on NumPy, array_api_strict,
PyTorch (CPU) and JAX: every entry point under `warnings.simplefilter("error")` in float32 and
float64; misuse (parameters, inputs, directions and optimizer state of another library, wrong
dtypes, wrong shapes); float16, bfloat16 (PyTorch, JAX, ml_dtypes on NumPy), longdouble and
complex parameters and inputs; int8/uint8/int16/uint32/uint64, bool and float labels; one module
called from 8 threads at once with different inputs, dtypes and parameters.

Found and fixed, each kept here as a regression test:
- optimizer state made for parameters of another library (PyTorch state, NumPy parameters)
  failed in the update of the first parameter with the libraries' own message ("unsupported
  operand type(s) for -=", "Concatenation operation is not implemented for NumPy arrays"),
  after NumPy's DeprecationWarning about __array_wrap__ and after changing that parameter's
  state; train_step now compares the first parameter's state entry's class with it (one
  comparison a step) and raises a TypeError naming the entry before anything is updated;
- float16 and bfloat16 parameters trained silently wrong: adam's eps of 1e-8 is 0 in float16,
  so a gradient of 0 gave 0/0 and nan parameters (NumPy with RuntimeWarnings, PyTorch without);
  init_optimizer now refuses half precision, which the pure entry points still compute in (the
  policy is in docs/language.md);
- NumPy arrays of ml_dtypes' bfloat16 (np.asarray of a JAX bfloat16 array) raised NumPy's
  "dtype argument must be a NumPy dtype" from np.isdtype inside the checks; the NumPy namespace's
  isdtype now gives them no kind, so the checks name the input or the parameter.

Found fine and kept as probes: no warning from any entry point on ordinary arguments; the
misuse errors come without a warning first; labels of every integer dtype agree with int64 ones
and bool, float labels and complex inputs are refused naming the input; the module-level caches
(_NAMESPACES, _LIBRARIES, _DTYPE_KINDS, the namespace wrappers' attributes) are filled by
idempotent writes, and threads sharing a fresh module get exactly their results alone.
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from helpers import SPEC_PATHS, load_source, random_inputs
from nnc.api import compile_spec

TESTS = Path(__file__).resolve().parent
SPECS = {p.stem: p for p in SPEC_PATHS}
UNSEEN_SAMPLE = [TESTS / "unseen" / "nested_init.nn", TESTS / "unseen3" / "losses3d.nn",
                 TESTS / "unseen6" / "two_heads_labels.nn", TESTS / "unseen8" / "attention_sdpa.nn",
                 TESTS / "unseen9" / "wrt_only_grad.nn"]
_SOURCES: dict[Path, str] = {}


def _module(path: Path, tmp_path: Path, optimizer: str | None = None):
    """A freshly imported module of the spec at `path` (empty caches), its optimizer replaced."""
    key = (path, optimizer)
    if key not in _SOURCES:
        text = path.read_text()
        if optimizer is not None:
            text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("optimizer")) + f"\noptimizer {optimizer}\n"
        _SOURCES[key] = compile_spec(text, path.name)
    return load_source(_SOURCES[key], tmp_path, path.stem)


def _lib(name: str):
    """(namespace, host array -> array) of a backend."""
    if name == "numpy":
        return np, np.asarray
    if name == "array_api_strict":
        xs = pytest.importorskip("array_api_strict")
        return xs, xs.asarray
    if name == "torch":
        torch = pytest.importorskip("torch")
        pytest.importorskip("array_api_compat")
        return torch, lambda a: torch.asarray(np.array(a))
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)  # float64 (as tests/test_portability.py's _jax)
    import jax.numpy as jnp

    return jnp, jnp.asarray


def _args(module, asarray, dtype: str, seed: int = 0, batch: int = 3):
    inputs = dict(zip(module.INPUTS, (asarray(v) for v in random_inputs(
        module, np.random.default_rng(seed), size=batch, dtype=np.dtype(dtype)))))
    forward = [inputs[n] for n in inspect.signature(module.forward).parameters if n != "params"]
    return inputs, forward


def _no_grad():
    torch = sys.modules.get("torch")
    return torch.no_grad() if torch is not None else warnings.catch_warnings()


def _every_entry_point(module, xp, asarray, dtype, tmp_path):
    params = module.init_params(seed=1, xp=xp, dtype=dtype)
    inputs, forward = _args(module, asarray, dtype)
    args = list(inputs.values())
    module.forward(params, *forward)
    module.loss(params, *args)
    module.value_and_grad(params, *args)
    along = {**params, **{k: inputs[k] for k in module.WRT}}
    directions = {k: asarray(np.full(tuple(v.shape), 0.3, dtype=dtype)) for k, v in along.items()}
    module.jvp(params, directions, *args)
    module.hvp(params, directions, *args)
    state = module.init_optimizer(params)
    with _no_grad():
        module.train_step(params, state, *args)
        module.train_step(params, state, *args)
    if module.PARAMS:
        for suffix in (".npz", ".safetensors"):
            module.save_params(params, tmp_path / f"w{suffix}")
            module.load_params(tmp_path / f"w{suffix}", xp=xp, dtype=dtype)


_WARNING_CASES = ([(n, b) for n in sorted(SPECS) for b in ("numpy", "array_api_strict", "torch")]
                  + [("xor", "jax"), ("functions", "jax")]
                  + [(str(p.relative_to(TESTS)), b) for p in UNSEEN_SAMPLE for b in ("numpy", "array_api_strict")])


@pytest.mark.parametrize("spec, backend", _WARNING_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_no_entry_point_warns_on_ordinary_arguments(spec, backend, dtype, tmp_path):
    """Every entry point, float32 and float64, under warnings-as-errors (probed on 70 specs)."""
    xp, asarray = _lib(backend)
    path = SPECS[spec] if spec in SPECS else TESTS / spec
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _every_entry_point(_module(path, tmp_path), xp, asarray, dtype, tmp_path)


def _raises_without_warning(error, match, call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(error, match=match):
            call()
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("params_lib, inputs_lib", [
    ("numpy", "torch"), ("torch", "numpy"), ("numpy", "array_api_strict"), ("array_api_strict", "numpy"),
    ("array_api_strict", "torch"), ("torch", "jax"), ("jax", "torch")])
def test_parameters_of_another_library_raise_without_a_warning(params_lib, inputs_lib, tmp_path):
    m = _module(SPECS["mlp"], tmp_path)
    params = m.init_params(xp=_lib(params_lib)[0])
    inputs, forward = _args(m, _lib(inputs_lib)[1], "float32")
    for call in (lambda: m.loss(params, *inputs.values()), lambda: m.forward(params, *forward),
                 lambda: m.value_and_grad(params, *inputs.values())):
        _raises_without_warning(TypeError, "pass arrays of one library", call)


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict", "torch"])
def test_wrong_dtypes_and_shapes_raise_without_a_warning(backend, tmp_path):
    xp, asarray = _lib(backend)
    m = _module(SPECS["mlp"], tmp_path)
    params = m.init_params(xp=xp)
    x, y = random_inputs(m, np.random.default_rng(0), size=3, dtype=np.float32)
    cases = [((x.astype(np.int32), y), r"input 'x' .*int32 is not float"),
             ((x, y.astype(np.float32)), r"input 'y' .*class labels must be integers"),
             ((x, y.astype(bool)), r"input 'y' .*bool is not int"),
             ((x.astype(np.complex64), y), r"input 'x' .*complex64 is not float"),
             ((x[:, :10], y), r"input 'x' must be float\[B, 784\].*axis 1 has size 10"),
             ((x, y[:2]), r"input 'y' must be int\[B\]")]
    for (a, b), match in cases:
        _raises_without_warning(ValueError, match, lambda a=a, b=b: m.loss(params, asarray(a), asarray(b)))


def _host(a) -> np.ndarray:
    """A host copy of an array of any of the backends."""
    return np.array(a.detach().numpy() if hasattr(a, "detach") else np.from_dlpack(a))


_STATE_PAIRS = [("numpy", "torch"), ("torch", "numpy"), ("numpy", "array_api_strict"), ("array_api_strict", "numpy"),
                ("torch", "jax"), ("jax", "torch"), ("array_api_strict", "jax"), ("numpy", "jax")]


@pytest.mark.parametrize("optimizer", [None, "adam(lr=0.01)"])
@pytest.mark.parametrize("params_lib, state_lib", _STATE_PAIRS)
def test_state_of_another_library_is_named_before_anything_is_updated(params_lib, state_lib, optimizer, tmp_path):
    """State made by init_optimizer for parameters of another library made the first parameter's
    update fail with the libraries' own message (after NumPy's DeprecationWarning about
    __array_wrap__, for PyTorch state and NumPy parameters) and after changing that parameter's
    state; it is now a TypeError naming the entry, with parameters and state untouched."""
    m = _module(SPECS["xor"], tmp_path, optimizer)
    params = m.init_params(xp=_lib(params_lib)[0])
    state = m.init_optimizer(m.init_params(xp=_lib(state_lib)[0]))
    inputs, _ = _args(m, _lib(params_lib)[1], "float32")
    before = {k: _host(v) for k, v in params.items()}
    buffer = next(k for k in state if k != "step")
    state_before = {k: _host(v) for k, v in state[buffer].items()}
    with _no_grad():
        _raises_without_warning(TypeError, rf"state\['{buffer}'\]\['hidden.W'\] is \w+\.\w+, but its "
                                r"parameter is .*init_optimizer\(params\) makes the state .*nothing was updated",
                                lambda: m.train_step(params, state, *inputs.values()))
    assert state["step"] == 0
    for k, v in params.items():
        assert type(v) is type(m.init_params(xp=_lib(params_lib)[0])[k])
        np.testing.assert_array_equal(_host(v), before[k])
    for k, v in state[buffer].items():
        np.testing.assert_array_equal(_host(v), state_before[k])


def test_numpy_state_of_jax_parameters_trains_as_jax_state_does(tmp_path):
    """jax.numpy takes NumPy arrays, so NumPy state of JAX parameters passes the check, becomes
    JAX arrays in the first step and matches the step with JAX state. (JAX state of NumPy
    parameters is refused above: the update `p -= lr * v` made the parameters JAX arrays.)"""
    jnp, asarray = _lib("jax")
    m = _module(SPECS["xor"], tmp_path)
    inputs, _ = _args(m, asarray, "float32")
    mixed, same = m.init_params(xp=jnp), m.init_params(xp=jnp)
    mixed_state, same_state = m.init_optimizer(m.init_params()), m.init_optimizer(same)
    for _ in range(2):
        np.testing.assert_allclose(float(m.train_step(mixed, mixed_state, *inputs.values())),
                                   float(m.train_step(same, same_state, *inputs.values())), rtol=1e-6)
    for k in same:
        assert type(mixed[k]) is type(same[k]) and type(mixed_state["velocity"][k]) is type(same[k])
        np.testing.assert_allclose(np.asarray(mixed[k]), np.asarray(same[k]), rtol=1e-6, atol=1e-7)


def test_torch_parameters_of_nn_parameter_class_train_with_tensor_state(tmp_path):
    """torch.nn.Parameter parameters get Tensor state (zeros_like): one library, so no error."""
    torch = pytest.importorskip("torch")
    m = _module(SPECS["xor"], tmp_path, "adam(lr=0.01)")
    params = {k: torch.nn.Parameter(v) for k, v in m.init_params(xp=torch).items()}
    state = m.init_optimizer(params)
    assert type(state["exp_avg"]["hidden.W"]) is torch.Tensor
    inputs, _ = _args(m, _lib("torch")[1], "float32")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        m.train_step(params, state, *inputs.values())
    assert state["step"] == 1


def _half(backend: str, name: str):
    """(host array -> half-precision array, host array -> array of the library) of a backend."""
    if backend == "numpy":
        return (lambda a: np.asarray(a, np.float16)), np.asarray
    xp, asarray = _lib(backend)
    if backend == "torch":
        return (lambda a: asarray(a).to(getattr(xp, name))), asarray
    return (lambda a: xp.asarray(a, getattr(xp, name))), asarray


_HALVES = [("numpy", "float16"), ("torch", "float16"), ("torch", "bfloat16"), ("jax", "bfloat16")]


@pytest.mark.parametrize("backend, name", _HALVES)
@pytest.mark.parametrize("optimizer", ["sgd(lr=0.1)", "sgd(lr=0.1, momentum=0.9)", "adam(lr=0.01)"])
def test_init_optimizer_refuses_half_precision_parameters(backend, name, optimizer, tmp_path):
    """float16 and bfloat16 parameters trained silently wrong: adam's eps (1e-8) is 0 in
    float16, so a gradient of 0 made 0/0 and nan parameters (unseen3/loss_input_only,
    unseen8/attention_sdpa); small updates are lost below half a unit in the last place.
    init_optimizer now refuses them, naming the parameter and saying what to pass."""
    half, _ = _half(backend, name)
    m = _module(SPECS["xor"], tmp_path, optimizer)
    params = {k: half(v) for k, v in m.init_params().items()}
    _raises_without_warning(TypeError, rf"parameter 'hidden.W' has dtype \S*{name}: train_step trains float32 "
                            r"or float64 parameters, not half precision .*init_params\(\) makes them",
                            lambda: m.init_optimizer(params))


@pytest.mark.parametrize("spec", sorted(SPECS))
@pytest.mark.parametrize("backend, name", _HALVES)
def test_half_precision_inference_keeps_its_dtype_and_agrees_with_float64(spec, backend, name, tmp_path):
    """forward and loss compute in float16/bfloat16 parameters' dtype, within its rounding."""
    half, asarray = _half(backend, name)
    m = _module(SPECS[spec], tmp_path)
    params64 = m.init_params(seed=1, dtype="float64")
    inputs64, forward64 = _args(m, np.asarray, "float64")
    params = {k: half(v) for k, v in params64.items()}
    inputs = {k: half(v) if m.INPUTS[k]["kind"] == "float" else asarray(v) for k, v in inputs64.items()}
    forward = [inputs[n] for n in inspect.signature(m.forward).parameters if n != "params"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, want = m.loss(params, *inputs.values()), float(m.loss(params64, *inputs64.values()))
        outs, refs = m.forward(params, *forward), m.forward(params64, *forward64)
    tol = 2e-2 if name == "bfloat16" else 4e-3
    assert str(got.dtype).endswith(name)
    assert abs(float(got) - want) <= tol * max(1.0, abs(want))
    outs, refs = (outs, refs) if isinstance(outs, tuple) else ((outs,), (refs,))
    for out, ref in zip(outs, refs):
        assert str(out.dtype).endswith(name)
        host = np.asarray(out.float() if backend == "torch" else out, dtype=np.float64)
        np.testing.assert_allclose(host, ref, rtol=tol, atol=tol * max(1.0, float(np.max(np.abs(ref)))))


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_half_precision_inputs_are_cast_to_float32_parameters(backend, tmp_path):
    half, asarray = _half(backend, "float16")
    m = _module(SPECS["mlp"], tmp_path)
    params = m.init_params(xp=_lib(backend)[0])
    x, y = random_inputs(m, np.random.default_rng(0), size=4, dtype=np.float32)
    loss = m.loss(params, half(x), asarray(y))
    assert str(loss.dtype).endswith("float32")
    want = float(m.loss(m.init_params(), x.astype(np.float16).astype(np.float32), y))
    assert abs(float(loss) - want) <= 1e-5 * abs(want)


def test_numpy_bfloat16_arrays_of_ml_dtypes_are_named(tmp_path):
    """np.asarray of a JAX bfloat16 array is a NumPy array of ml_dtypes' bfloat16, which
    np.isdtype refuses: the checks raised NumPy's "dtype argument must be a NumPy dtype, but it
    is a <class 'ml_dtypes.bfloat16'>"; they now name the input or the parameter, and say what
    the dtype is to NumPy and what to do (sixteenth session: the messages did not name ml_dtypes)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    m = _module(SPECS["mlp"], tmp_path)
    params = m.init_params()
    x, y = random_inputs(m, np.random.default_rng(0), size=3, dtype=np.float32)
    halves = {k: v.astype(ml_dtypes.bfloat16) for k, v in params.items()}
    ml_note = r"an ml_dtypes type, which NumPy stores but does not compute with: cast it with x\.astype\(np\.float32\)"
    _raises_without_warning(ValueError, r"input 'x' must be float\[B, 784\], got bfloat16 .*is not float \(" + ml_note,
                            lambda: m.loss(params, x.astype(ml_dtypes.bfloat16), y))
    _raises_without_warning(TypeError, r"parameter 'h1.W' has dtype bfloat16; parameters are floats.*; bfloat16 is "
                            + ml_note, lambda: m.loss(halves, x, y))
    eighths = {k: v.astype(ml_dtypes.float8_e4m3fn) for k, v in params.items()}
    _raises_without_warning(TypeError, r"parameter 'h1.W' has dtype float8_e4m3fn; parameters are floats.*; "
                            r"float8_e4m3fn is " + ml_note, lambda: m.init_optimizer(eighths))
    _raises_without_warning(ValueError, r"input 'x' .*: complex64 is not float \(convert it with xp\.astype\)$",
                            lambda: m.loss(params, x.astype(np.complex64), y))
    _raises_without_warning(TypeError, r"parameter 'h1.W' has dtype bfloat16: train_step trains float32",
                            lambda: m.init_optimizer(halves))


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict", "torch", "jax"])
def test_labels_of_every_integer_dtype_agree(backend, tmp_path):
    xp, asarray = _lib(backend)
    m = _module(SPECS["svm"], tmp_path)
    params = m.init_params(xp=xp)
    x, y = random_inputs(m, np.random.default_rng(0), size=6, dtype=np.float32)
    want = float(m.loss(params, asarray(x), asarray(y.astype(np.int64))))
    for dtype in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "uint64"):
        assert float(m.loss(params, asarray(x), asarray(y.astype(dtype)))) == pytest.approx(want, rel=1e-6)


def _results(module, xp, asarray, to_numpy, seed: int, dtype: str) -> dict:
    """Everything a module computes for one case (seed, dtype), as host arrays."""
    params = module.init_params(seed=seed, xp=xp, dtype=dtype)
    inputs, forward = _args(module, asarray, dtype, seed=seed, batch=3 + seed % 4)
    args = list(inputs.values())
    out = {"forward": module.forward(params, *forward), "loss": module.loss(params, *args)}
    value, grads = module.value_and_grad(params, *args)
    out.update({"value": value, **{f"grad {k}": g for k, g in grads.items()}})
    along = {**params, **{k: inputs[k] for k in module.WRT}}
    directions = {k: asarray(np.full(tuple(v.shape), 0.25 + 0.01 * seed, dtype=dtype)) for k, v in along.items()}
    out["jvp"] = module.jvp(params, directions, *args)
    out.update({f"hvp {k}": v for k, v in module.hvp(params, directions, *args).items()})
    state = module.init_optimizer(params)
    with _no_grad():
        out.update({f"step {i}": module.train_step(params, state, *args) for i in range(3)})
    out.update({f"param {k}": p for k, p in params.items()})
    flat = {}
    for key, value in out.items():
        for i, v in enumerate(value if isinstance(value, tuple) else (value,)):
            flat[f"{key} {i}"] = np.array(to_numpy(v))
    return flat


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("spec, optimizer", [("mlp", None), ("digits", "adam(lr=0.01)"), ("functions", None)])
def test_threads_sharing_a_fresh_module_get_their_results_alone(spec, optimizer, backend, tmp_path):
    """8 threads at once on one freshly imported module (its caches empty: the first calls race
    to fill _NAMESPACES, _LIBRARIES, _DTYPE_KINDS and the namespace wrappers), each with its own
    inputs, dtype, parameters and state, switching threads every microsecond: each gets exactly
    the arrays it gets alone, in its dtype."""
    xp, asarray = _lib(backend)
    to_numpy = (lambda t: t.detach().numpy()) if backend == "torch" else np.asarray
    cases = [(seed, "float32" if seed % 2 else "float64") for seed in range(8)]
    alone = {c: _results(_module(SPECS[spec], tmp_path, optimizer), xp, asarray, to_numpy, *c) for c in cases}
    shared = _module(SPECS[spec], tmp_path, optimizer)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with ThreadPoolExecutor(8) as pool:
                futures = [(c, pool.submit(_results, shared, xp, asarray, to_numpy, *c)) for c in cases * 2]
                together = [(c, f.result()) for c, f in futures]
    finally:
        sys.setswitchinterval(interval)
    for case, got in together:
        assert got.keys() == alone[case].keys()
        for key, want in alone[case].items():
            assert got[key].dtype == want.dtype, (case, key)
            np.testing.assert_array_equal(got[key], want, err_msg=f"{case} {key}")


def test_float64_parameters_on_jax_without_x64_are_a_clear_error(tmp_path):
    """JAX without x64 made `init_params(xp=jnp, dtype="float64")` (and load_params) float32
    arrays after a UserWarning, so a float64 run trained in float32; it is now a ValueError saying how to enable
    float64. Run in a fresh process: the tests above turn x64 on for the whole session."""
    pytest.importorskip("jax", reason="JAX is not installed")
    import subprocess

    path = tmp_path / "xor_model.py"
    path.write_text(compile_spec(SPECS["xor"].read_text(), "xor.nn"))
    probe = ("import warnings, jax.numpy as jnp, numpy as np, xor_model as m\n"
             "warnings.simplefilter('error')\n"
             "assert m.init_params(xp=jnp).popitem()[1].dtype == jnp.float32\n"
             "m.save_params(m.init_params(dtype='float64'), 'w.npz')\n"
             "for call in (lambda: m.init_params(xp=jnp, dtype='float64'),\n"
             "             lambda: m.init_params(xp=jnp, dtype=np.float64),\n"
             "             lambda: m.load_params('w.npz', xp=jnp, dtype='float64')):\n"
             "    try:\n"
             "        call()\n"
             "    except ValueError as e:\n"
             "        print(e)\n")
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stdout
    for line in lines:
        assert line.startswith("jax.numpy makes float32 arrays where float64 is asked for"), line
        assert "jax.config.update('jax_enable_x64', True)" in line and "dtype='float32'" in line
