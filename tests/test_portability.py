"""One generated module, every array-API backend: same results, dtypes kept, devices respected.

NumPy float64 is the reference; each backend runs every spec in specs/ (forward, loss,
value_and_grad, two train_steps) on the same values, and random valid specs from
tests/specgen.py (every other one with a symbolic batch dimension) with random optimizers,
jvp and hvp too (NNC_RANDOM_SPECS=300 for a longer run, =600:900 for seeds no earlier
run saw; of 300 the one that disagreed had a gradient that is exactly zero in exact arithmetic,
rounding noise that RMSprop's normalisation blew up to 1e-10). Optional backends (PyTorch through
array_api_compat, JAX, CuPy) skip with the reason when they cannot run here.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from helpers import SPEC_PATHS, compile_and_load, load_source, random_inputs, random_spec_seeds
from nnc.api import compile_spec

MLP = next(p for p in SPEC_PATHS if p.stem == "mlp")


@dataclass
class Backend:
    name: str
    asarray: Callable[[np.ndarray], Any]  # host array -> backend array (dtype kept)
    to_numpy: Callable[[Any], np.ndarray]
    xp: Any = None  # the namespace generated code should find for this backend's arrays
    context: Callable[[], Any] = contextlib.nullcontext  # entered around every use of the arrays


def _numpy() -> Backend:
    return Backend("numpy", np.array, np.asarray, np)


def _strict() -> Backend:
    xs = pytest.importorskip("array_api_strict")
    return Backend("array_api_strict", xs.asarray, np.from_dlpack, xs)


def _strict_2023() -> Backend:
    """array_api_strict held to the 2023.12 standard: its functions take no Python numbers,
    so generated code reaches it through the _ScalarArgs wrapper."""
    xs = pytest.importorskip("array_api_strict")
    return Backend("array_api_strict 2023.12", xs.asarray, np.from_dlpack, xs,
                   lambda: xs.ArrayAPIStrictFlags(api_version="2023.12"))


def _torch() -> Backend:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    compat = pytest.importorskip("array_api_compat")
    return Backend("torch", lambda a: torch.asarray(np.array(a)), lambda t: t.detach().cpu().numpy(),
                   compat.array_namespace(torch.zeros(1)))


def _jax() -> Backend:
    jax = pytest.importorskip("jax", reason="JAX is not installed")
    jax.config.update("jax_enable_x64", True)  # float64 reference comparisons
    import jax.numpy as jnp

    return Backend("jax", jnp.asarray, np.asarray, jnp)


def _cupy() -> Backend:
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (GPU tests: benchmarks/gpu.sh)")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("CuPy is installed but sees no CUDA device")
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        pytest.skip(f"CuPy is installed but CUDA is unusable: {exc}")
    # CuPy 14's arrays have no __array_namespace__ (checked on cupy-cuda13x 14.2): the module
    # then uses array_api_compat's CuPy namespace, as for PyTorch
    own = getattr(cupy.zeros(1), "__array_namespace__", None)
    xp = own() if own is not None else pytest.importorskip("array_api_compat").array_namespace(cupy.zeros(1))
    return Backend("cupy", cupy.asarray, cupy.asnumpy, xp)


def _dask() -> Backend:
    """Dask arrays, lazy and split in two chunks along the first axis (batches of examples,
    rows of weights), through array_api_compat's namespace for them."""
    da = pytest.importorskip("dask.array", reason="Dask is not installed")
    compat = pytest.importorskip("array_api_compat")

    def asarray(a):
        a = np.array(a)
        return da.from_array(a, chunks=(max(1, (a.shape[0] + 1) // 2), *a.shape[1:]) if a.ndim else ())

    return Backend("dask", asarray, lambda t: np.asarray(t.compute() if hasattr(t, "compute") else t),
                   compat.array_namespace(da.zeros(1)))


LABELS = re.compile(r"^\s*input\s+\w+\s*:\s*int\b", re.MULTILINE)  # specs with class labels
BACKENDS = {"numpy": _numpy, "array_api_strict": _strict, "torch": _torch, "jax": _jax, "cupy": _cupy,
            "dask": _dask}
# Backends whose namespace depends on global flags: only with freshly compiled modules, whose
# namespace cache is empty (the `modules` fixture's modules are shared between tests)
FRESH_BACKENDS = {**BACKENDS, "array_api_strict 2023.12": _strict_2023}


@pytest.fixture(params=list(BACKENDS))
def backend(request) -> Backend:
    return BACKENDS[request.param]()


@pytest.fixture(scope="module")
def modules(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("portability")
    return {p.stem: compile_and_load(p, tmp) for p in SPEC_PATHS}


def _forward_args(module, inputs: dict) -> list:
    names = [n for n in inspect.signature(module.forward).parameters if n != "params"]
    return [inputs[n] for n in names]


def _run_all(module, params: dict, inputs: dict, *, steps: int = 2, asarray=None) -> dict:
    """Everything a module computes: outputs, loss, grads, `steps` train_steps and the state
    after them; with `asarray` (host array -> the backend's), jvp and hvp along a fixed
    direction made with it too, before the steps change the parameters."""
    args = list(inputs.values())
    out = module.forward(params, *_forward_args(module, inputs))
    out = out if isinstance(out, tuple) else () if out is None else (out,)  # None: no outputs
    assert (out == ()) == (module.OUTPUTS == ()), "forward returns None exactly when there are no outputs"
    result = {f"out{k}": o for k, o in enumerate(out)}
    result["loss"] = module.loss(params, *args)
    value, grads = module.value_and_grad(params, *args)
    result["value"] = value
    result.update({f"grad {k}": g for k, g in grads.items()})
    if asarray is not None:
        along = {**params, **{k: inputs[k] for k in module.WRT}}
        direction = {k: asarray(np.full(tuple(v.shape), 0.5 + 0.1 * n, dtype=_dtype_name(v)))
                     for n, (k, v) in enumerate(along.items())}
        result["jvp value"], result["jvp"] = module.jvp(params, direction, *args)
        result.update({f"hvp {k}": v for k, v in module.hvp(params, direction, *args).items()})
    state = module.init_optimizer(params)
    for step in range(steps):
        result[f"step{step} loss"] = module.train_step(params, state, *args)
    result.update({f"param {k}": p for k, p in params.items()})
    for buf, per_param in state.items():
        if isinstance(per_param, dict):
            result.update({f"state {buf} {k}": v for k, v in per_param.items()})
    return result


def _host_case(module, dtype=np.float64, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    values = random_inputs(module, rng, size=3, dtype=dtype)
    inputs = dict(zip(module.INPUTS, values))
    params = {k: np.asarray(v, dtype=dtype) for k, v in module.init_params(seed=seed, dtype="float64").items()}
    return params, inputs


@pytest.mark.parametrize("spec", [p.stem for p in SPEC_PATHS])
def test_same_results_on_every_backend(spec, backend, modules):
    module = modules[spec]
    params, inputs = _host_case(module)
    expected = _run_all(module, {k: v.copy() for k, v in params.items()}, dict(inputs))
    got = _run_all(module, {k: backend.asarray(v) for k, v in params.items()},
                   {k: backend.asarray(v) for k, v in inputs.items()})
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        np.testing.assert_allclose(backend.to_numpy(got[key]), np.asarray(want), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{spec} on {backend.name}: {key}")


@pytest.mark.parametrize("spec", [p.stem for p in SPEC_PATHS])
def test_every_spec_on_a_2023_12_namespace(spec, tmp_path):
    """array_api_strict held to 2023.12 takes no numbers in maximum/where/logaddexp: the module
    wraps it (fresh module, as the namespace cache is per module) and gets NumPy's results,
    float64 and float32 alike."""
    backend = _strict_2023()
    module = compile_and_load(next(p for p in SPEC_PATHS if p.stem == spec), tmp_path)
    for dtype, rtol in ((np.float64, 1e-9), (np.float32, 2e-4)):
        params, inputs = _host_case(module, dtype=dtype)
        params = {k: v.astype(dtype) for k, v in params.items()}
        expected = _run_all(module, {k: v.copy() for k, v in params.items()}, dict(inputs))
        with backend.context():
            got = _run_all(module, {k: backend.asarray(v) for k, v in params.items()},
                           {k: backend.asarray(v) for k, v in inputs.items()})
            assert type(module._namespace(backend.asarray(np.zeros(1)))).__name__ == "_ScalarArgs"
        for key, want in expected.items():
            assert _dtype_name(got[key]) == _dtype_name(want), f"{spec}: {key}"
            np.testing.assert_allclose(backend.to_numpy(got[key]), np.asarray(want), rtol=rtol, atol=1e-6 * rtol,
                                       err_msg=f"{spec} on {backend.name}: {key}")


def _dtype_name(x) -> str:
    return str(x.dtype).rsplit(".", 1)[-1]


@pytest.mark.parametrize("spec", [p.stem for p in SPEC_PATHS])
def test_float32_stays_float32(spec, backend, modules):
    """No silent upcast: float32 params and inputs give float32 everything."""
    if backend.name == "jax" and spec not in ("mlp", "mazur"):
        pytest.skip("JAX compiles every operation per dtype (seconds a spec): two specs suffice")
    module = modules[spec]
    params, inputs = _host_case(module, dtype=np.float32)
    params = {k: backend.asarray(v.astype(np.float32)) for k, v in params.items()}
    got = _run_all(module, params, {k: backend.asarray(v) for k, v in inputs.items()})
    wrong = {k: _dtype_name(v) for k, v in got.items() if _dtype_name(v) != "float32"}
    assert not wrong, f"{spec} on {backend.name} upcast: {wrong}"


@pytest.mark.parametrize("int_dtype", ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"])
@pytest.mark.parametrize("spec", [p.stem for p in SPEC_PATHS if LABELS.search(p.read_text())])
def test_labels_in_any_integer_dtype(spec, int_dtype, backend, modules):
    module = modules[spec]
    params, inputs = _host_case(module)
    expected = _run_all(module, {k: v.copy() for k, v in params.items()}, dict(inputs))
    cast = {k: (v.astype(int_dtype) if module.INPUTS[k]["kind"] == "int" else v) for k, v in inputs.items()}
    got = _run_all(module, {k: backend.asarray(v) for k, v in params.items()},
                   {k: backend.asarray(v) for k, v in cast.items()})
    for key, want in expected.items():
        np.testing.assert_allclose(backend.to_numpy(got[key]), np.asarray(want), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{spec}, {int_dtype} labels on {backend.name}: {key}")


@pytest.mark.parametrize("spec", [p.stem for p in SPEC_PATHS])
def test_arrays_made_inside_stay_on_the_inputs_device(spec, modules):
    """array_api_strict refuses to mix devices, so any array the module creates on the
    default device (a one-hot, a constant) fails here unless it follows the inputs."""
    xs = pytest.importorskip("array_api_strict")
    module = modules[spec]
    device = xs.Device("device1")
    params, inputs = _host_case(module)
    params = {k: xs.asarray(v, device=device) for k, v in params.items()}
    got = _run_all(module, params, {k: xs.asarray(v, device=device) for k, v in inputs.items()})
    assert {k: v.device for k, v in got.items() if v.device != device} == {}


def test_namespace_lookup_uses_the_arrays_own_namespace(modules, backend):
    """NumPy, JAX and array_api_strict arrays name their own namespace (no wrapper);
    PyTorch's comes from array_api_compat, and so does CuPy 14's. Found once per array type, then cached."""
    module = modules["mlp"]
    x = backend.asarray(np.zeros((2, 784)))
    xp = module._namespace(x)
    assert module._namespace(x) is xp and module._NAMESPACES[type(x)] is xp
    if backend.name == "numpy":  # NumPy's own functions, except the few with faster routes
        assert xp.tanh is np.tanh and xp.exp is np.exp
        y = np.arange(12.0).reshape(3, 4)
        for axis, keep in ((None, False), (0, False), (1, True), ((0, 1), True)):
            np.testing.assert_array_equal(xp.sum(y, axis=axis, keepdims=keep), np.sum(y, axis=axis, keepdims=keep))
            np.testing.assert_array_equal(xp.max(y, axis=axis, keepdims=keep), np.max(y, axis=axis, keepdims=keep))
        assert xp.astype(y, np.float32).dtype == np.float32
    else:
        assert xp is backend.xp


@pytest.mark.parametrize("spec", [p.stem for p in SPEC_PATHS])
def test_every_namespace_name_the_module_uses_is_listed(spec, modules):
    """`_namespace` checks an array's own namespace for each name in _XP_NAMES before using
    it; every `xp.NAME` in the module's code (read here with ast, not the regex the
    compiler uses) must be among them."""
    import ast

    module = modules[spec]
    tree = ast.parse(inspect.getsource(module))
    used = {n.attr for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "xp"}
    assert used and used <= set(module._XP_NAMES)
    assert all(hasattr(np, name) for name in module._XP_NAMES)  # all standard: NumPy 2 has each


class _PartialArray(np.ndarray):
    """An array whose own namespace follows the standard only in part (no `isdtype`), as
    the main namespaces of some libraries did before they followed it everywhere."""

    def __array_namespace__(self, api_version=None):
        import types

        return types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if k != "isdtype"})


def test_a_namespace_missing_a_name_is_used_through_array_api_compat(tmp_path):
    array_api_compat = pytest.importorskip("array_api_compat")
    module = compile_and_load(MLP, tmp_path, "partial")
    params, inputs = _host_case(module)
    x = inputs["x"].view(_PartialArray)
    assert module._namespace(x) is array_api_compat.array_namespace(x)
    want = module.value_and_grad(params, inputs["x"], inputs["y"])
    got = module.value_and_grad(params, x, inputs["y"])
    np.testing.assert_allclose(np.asarray(got[0]), want[0], rtol=1e-12)
    for name in want[1]:  # _NumPy may take a product in another order: rounding, 2e-17 here
        np.testing.assert_allclose(np.asarray(got[1][name]), want[1][name], rtol=1e-12, atol=1e-15)


def test_without_array_api_compat_such_a_namespace_gets_a_clear_error(tmp_path, monkeypatch):
    module = compile_and_load(MLP, tmp_path, "partial")
    monkeypatch.setitem(sys.modules, "array_api_compat", None)  # `import array_api_compat` fails
    x = np.zeros((2, 784)).view(_PartialArray)
    with pytest.raises(TypeError, match=r"_PartialArray need array-api-compat .*no isdtype"):
        module._namespace(x)


def test_train_step_updates_numpy_params_in_place(modules):
    module = modules["mlp"]
    params, inputs = _host_case(module)
    before = {k: v.copy() for k, v in params.items()}
    ids = {k: id(v) for k, v in params.items()}
    state = module.init_optimizer(params)
    velocity_ids = {k: id(v) for k, v in state["velocity"].items()}
    module.train_step(params, state, *inputs.values())
    assert {k: id(v) for k, v in params.items()} == ids
    assert {k: id(v) for k, v in state["velocity"].items()} == velocity_ids
    assert all(not np.array_equal(params[k], before[k]) for k in params if k.endswith(".W"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["sgd(lr=0.1, momentum=0.9, nesterov=true)", "adam(lr=0.01, clip_norm=1.0)",
                                       "rmsprop(lr=0.01, momentum=0.5)", "adadelta(lr=1.0, weight_decay=0.01)"])
def test_cupy_runs_the_update_as_one_kernel_with_the_loops_results(optimizer, dtype, tmp_path):
    """On CuPy train_step's update loop is one CUDA kernel a parameter (_CUDA_UPDATE); it
    performs the loop's operations in the loop's order, without FMA contraction, so it agrees
    with the portable loop run on the same device to the last bit or so (the CPU test of the
    kernel text, tests/test_cuda_kernels.py, finds them equal bit for bit)."""
    backend = _cupy()
    import cupy

    source = MLP.read_text().replace("optimizer sgd(lr=0.1, momentum=0.9)", f"optimizer {optimizer}")
    assert optimizer in source
    runs = {}
    for fused in (True, False):
        module = compile_and_load(source, tmp_path, "fused" if fused else "portable")
        if not fused:
            module._CUDA_UPDATE.kernels[cupy.ndarray] = None  # the portable loop, on the GPU
        params, inputs = _host_case(module, dtype=np.dtype(dtype).type)
        params = {k: backend.asarray(v) for k, v in params.items()}
        args = [backend.asarray(v) for v in inputs.values()]
        state = module.init_optimizer(params)
        for _ in range(3):
            module.train_step(params, state, *args)
        if fused:
            assert module._CUDA_UPDATE.kernels.get(cupy.ndarray) is not None, "the kernel did not run"
        runs[fused] = {k: backend.to_numpy(v) for k, v in params.items()}
    rtol = 2e-6 if dtype == "float32" else 1e-14
    for k in runs[True]:
        np.testing.assert_allclose(runs[True][k], runs[False][k], rtol=rtol, atol=rtol * 1e-3, err_msg=k)


def test_train_step_rebinds_immutable_jax_params(modules):
    """JAX arrays cannot be written: train_step must rebind params entries, and agree."""
    _jax()
    import jax.numpy as jnp

    module = modules["mlp"]
    params, inputs = _host_case(module)
    jparams = {k: jnp.asarray(v) for k, v in params.items()}
    originals = dict(jparams)
    state = module.init_optimizer(jparams)
    module.train_step(jparams, state, *(jnp.asarray(v) for v in inputs.values()))
    module.train_step(params, module.init_optimizer(params), *inputs.values())
    for k in params:
        assert jparams[k] is not originals[k]
        np.testing.assert_allclose(np.asarray(jparams[k]), params[k], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("spec", [p.stem for p in SPEC_PATHS])
def test_every_pure_entry_point_runs_under_jax_jit(spec, modules):
    """forward, loss, value_and_grad, jvp and hvp are pure functions of arrays, so jax.jit can
    trace them (train_step updates dicts in place: under jit, write the update as a function
    of value_and_grad's result). Traced labels have no values: the range check skips them."""
    _jax()  # skips without JAX; turns float64 on
    import jax
    import jax.numpy as jnp

    module = modules[spec]
    params, inputs = _host_case(module)
    jparams = {k: jnp.asarray(v) for k, v in params.items()}
    jinputs = {k: jnp.asarray(v) for k, v in inputs.items()}
    args = list(jinputs.values())
    direction = {k: jnp.full(v.shape, 0.5, v.dtype) for k, v in
                 {**jparams, **{k: jinputs[k] for k in module.WRT if k in jinputs}}.items()}
    calls = {"forward": (module.forward, (jparams, *_forward_args(module, jinputs))),
             "loss": (module.loss, (jparams, *args)),
             "value_and_grad": (module.value_and_grad, (jparams, *args)),
             "jvp": (module.jvp, (jparams, direction, *args)),
             "hvp": (module.hvp, (jparams, direction, *args))}
    for name, (fn, fn_args) in calls.items():
        eager, traced = fn(*fn_args), jax.jit(fn)(*fn_args)
        flat_eager, flat_traced = jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(traced)
        assert len(flat_eager) == len(flat_traced), (spec, name)
        for a, b in zip(flat_eager, flat_traced):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-9, atol=1e-12, err_msg=f"{spec}: {name}")


@pytest.mark.parametrize("spec", [p.stem for p in SPEC_PATHS])
def test_forward_and_loss_under_torch_vmap(spec, modules):
    """torch.func.vmap maps forward and loss over a leading axis of examples (a loss per
    example), as a loop over them does. Batched labels have no values for Python, so the range
    check skips them, as under jax.jit; it raised vmap's .item() error before."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    module = modules[spec]
    examples = [_host_case(module, seed=seed) for seed in range(4)]
    params = {k: torch.asarray(v) for k, v in examples[0][0].items()}
    stacked = [torch.asarray(np.stack([inputs[name] for _, inputs in examples])) for name in module.INPUTS]
    fwd = _forward_args(module, dict(zip(module.INPUTS, stacked)))
    for fn, args in ((module.loss, stacked), (module.forward, fwd)):
        mapped = torch.func.vmap(lambda *a, fn=fn: fn(params, *a))(*args)
        looped = [fn(params, *(a[i] for a in args)) for i in range(len(examples))]
        for got, want in zip(_tuple(mapped), zip(*map(_tuple, looped))):
            np.testing.assert_allclose(got.numpy(), torch.stack(list(want)).numpy(), rtol=1e-12, atol=1e-12,
                                       err_msg=f"{spec}: {fn.__name__}")


def _leaves(tree) -> list:
    """The arrays of a result (a loss, a dict of gradients, or tuples of them), in order."""
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in _leaves(item)]
    return [tree]


@pytest.mark.parametrize("spec", [p.stem for p in SPEC_PATHS])
def test_gradients_under_torch_vmap(spec, modules):
    """torch.func.vmap maps value_and_grad, jvp and hvp over a leading axis of batches, of
    parameter sets (an ensemble, with a direction each) and of directions (Hessian columns),
    equal to a loop. vmap refuses `a += b` where `b` varies along the mapped axis and `a` does
    not; the emitter only updates in place an operand computed from every argument group the
    other one reads (inputs, parameters, tangents), so that never happens."""
    _check_under_torch_vmap(modules[spec], spec)


def _check_under_torch_vmap(module, spec: str) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    cases = [_host_case(module, seed=seed) for seed in range(3)]
    params = [{k: torch.asarray(v) for k, v in case[0].items()} for case in cases]
    inputs = [[torch.asarray(v) for v in case[1].values()] for case in cases]
    directions = [{**{k: torch.full_like(v, 0.5 + i) for k, v in params[0].items()},
                   **{k: torch.full_like(a, 0.5 - i) for k, a in zip(module.INPUTS, inputs[0]) if k in module.WRT}}
                  for i in range(3)]

    def stack(items):
        if isinstance(items[0], dict):
            return {k: torch.stack([d[k] for d in items]) for k in items[0]}
        return [torch.stack(list(a)) for a in zip(*items)]

    vmap, one = torch.func.vmap, inputs[0]
    mapped = {
        "value_and_grad over batches": (vmap(lambda *a: module.value_and_grad(params[0], *a))(*stack(inputs)),
                                        [module.value_and_grad(params[0], *a) for a in inputs]),
        "value_and_grad over parameter sets": (vmap(lambda p: module.value_and_grad(p, *one))(stack(params)),
                                               [module.value_and_grad(p, *one) for p in params]),
    }
    for name, fn in (("jvp", module.jvp), ("hvp", module.hvp)):
        mapped[f"{name} over batches"] = (vmap(lambda *a, fn=fn: fn(params[0], directions[0], *a))(*stack(inputs)),
                                          [fn(params[0], directions[0], *a) for a in inputs])
        mapped[f"{name} over parameter sets"] = (
            vmap(lambda p, v, fn=fn: fn(p, v, *one))(stack(params), stack(directions)),
            [fn(p, v, *one) for p, v in zip(params, directions)])
        mapped[f"{name} over directions"] = (vmap(lambda v, fn=fn: fn(params[0], v, *one))(stack(directions)),
                                             [fn(params[0], v, *one) for v in directions])
    for name, (got, looped) in mapped.items():
        got = _leaves(got)
        want = [torch.stack(list(leaves)) for leaves in zip(*map(_leaves, looped))]
        assert len(got) == len(want), (spec, name)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12, err_msg=f"{spec}: {name}")


@pytest.mark.parametrize("spec", [p.stem for p in SPEC_PATHS])
def test_value_and_grad_and_hvp_under_jax_vmap(spec, modules):
    """JAX arrays are immutable, so the backward's accumulations rebind names and jax.vmap maps
    value_and_grad and hvp whole, as torch.func.vmap does (above): over a
    leading axis of batches (per-example gradients are batches of one) and over a leading axis
    of parameter sets (an ensemble), equal to a loop over them."""
    _jax()  # skips without JAX; turns float64 on
    import jax
    import jax.numpy as jnp

    module = modules[spec]
    cases = [_host_case(module, seed=seed) for seed in range(3)]
    params = [{k: jnp.asarray(v) for k, v in case[0].items()} for case in cases]
    inputs = [[jnp.asarray(v) for v in case[1].values()] for case in cases]

    def stack(trees):
        return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)

    direction = {k: jnp.full(v.shape, 0.5, v.dtype) for k, v in params[0].items()}
    direction.update({k: jnp.full(a.shape, 0.5, a.dtype) for k, a in zip(module.INPUTS, inputs[0]) if k in module.WRT})
    mapped = {
        "batches": (jax.vmap(lambda *a: module.value_and_grad(params[0], *a))(*stack(inputs)),
                    [module.value_and_grad(params[0], *a) for a in inputs]),
        "parameter sets": (jax.vmap(lambda p: module.value_and_grad(p, *inputs[0]))(stack(params)),
                           [module.value_and_grad(p, *inputs[0]) for p in params]),
        "hvp over batches": (jax.vmap(lambda *a: module.hvp(params[0], direction, *a))(*stack(inputs)),
                             [module.hvp(params[0], direction, *a) for a in inputs]),
    }
    for name, (got, looped) in mapped.items():
        want = jax.tree_util.tree_leaves(stack(looped))
        got = jax.tree_util.tree_leaves(got)
        assert len(got) == len(want), (spec, name)
        for a, b in zip(got, want):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12, err_msg=f"{spec}: {name}")


def _tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("optimizer", ["sgd(lr=0.1, momentum=0.9, nesterov=true)", "adam(lr=0.01)",
                                       "rmsprop(lr=0.01, momentum=0.5)", "adagrad(lr=0.1)",
                                       "sgd(lr=0.1, clip_norm=0.01)", "adam(lr=0.01, clip_norm=0.01)",
                                       "sgd(lr=0.1, schedule=exponential, gamma=0.9)",
                                       "sgd(lr=0.1, schedule=step, step_size=2, gamma=0.5)",
                                       "sgd(lr=0.1, schedule=cosine, total_steps=2)",
                                       "adam(lr=0.01, schedule=cosine, total_steps=5, min_lr=0.001, clip_norm=0.01)"])
def test_train_step_under_jax_jit_through_a_copying_wrapper(optimizer, tmp_path):
    """train_step writes into the dicts it is given; jitted behind a wrapper that passes it
    copies and returns them (README), it gives eager train_step's parameters and state.
    Gradient clipping traces too (its norm stays an array), and so does the cosine schedule
    (its rate is computed with xp.cos and xp.minimum when the step count is traced; math.cos
    of it raised)."""
    _jax()
    import jax
    import jax.numpy as jnp

    text = MLP.read_text().replace("optimizer sgd(lr=0.1, momentum=0.9)", f"optimizer {optimizer}")
    module = compile_and_load(text, tmp_path)
    params, inputs = _host_case(module)
    args = [jnp.asarray(v) for v in inputs.values()]

    def copied(state):
        return {k: dict(v) if isinstance(v, dict) else v for k, v in state.items()}

    @jax.jit
    def step(params, state, *args):
        params, state = dict(params), copied(state)
        loss = module.train_step(params, state, *args)
        return params, state, loss

    eager = {k: jnp.asarray(v) for k, v in params.items()}
    eager_state = module.init_optimizer(eager)
    traced, traced_state = dict(eager), copied(eager_state)
    for _ in range(3):
        eager_loss = module.train_step(eager, eager_state, *args)
        traced, traced_state, traced_loss = step(traced, traced_state, *args)
    np.testing.assert_allclose(float(traced_loss), float(eager_loss), rtol=1e-9)
    assert int(traced_state["step"]) == eager_state["step"] == 3
    for k in eager:
        np.testing.assert_allclose(np.asarray(traced[k]), np.asarray(eager[k]), rtol=1e-9, atol=1e-12, err_msg=k)


def test_a_cosine_schedule_with_a_numpy_step_count_keeps_float32(tmp_path):
    """A step count read back from a file is a NumPy integer: the rate is still a Python
    float (the array branch, for a traced count, would make it float64 and the update too)."""
    text = MLP.read_text().replace("optimizer sgd(lr=0.1, momentum=0.9)",
                                   "optimizer sgd(lr=0.1, schedule=cosine, total_steps=4)")
    module = compile_and_load(text, tmp_path)
    params, inputs = _host_case(module)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    inputs = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in inputs.items()}
    plain = {k: v.copy() for k, v in params.items()}
    state, plain_state = module.init_optimizer(params), module.init_optimizer(plain)
    state["step"] = np.int64(0)
    for _ in range(3):
        module.train_step(params, state, *inputs.values())
        module.train_step(plain, plain_state, *inputs.values())
    for k in params:
        assert params[k].dtype == np.float32, k
        np.testing.assert_array_equal(params[k], plain[k], err_msg=k)


@pytest.mark.parametrize("spec", [p.stem for p in SPEC_PATHS])
def test_inputs_are_never_written(spec, modules):
    """In-place updates touch only arrays the module allocated (and params in train_step)."""
    module = modules[spec]
    params, inputs = _host_case(module)
    kept = {k: v.copy() for k, v in inputs.items()}
    _run_all(module, params, inputs)
    for k in inputs:
        np.testing.assert_array_equal(inputs[k], kept[k])


def test_value_and_grad_leaves_params_alone(modules):
    module = modules["mlp"]
    params, inputs = _host_case(module)
    kept = {k: v.copy() for k, v in params.items()}
    module.value_and_grad(params, *inputs.values())
    module.forward(params, inputs["x"])
    for k in params:
        np.testing.assert_array_equal(params[k], kept[k])


@pytest.mark.parametrize("lr", [1.0, 0.1, 0.5])
def test_gradient_that_is_another_parameter_is_not_overwritten(tmp_path, lr):
    """d(sum(a*b))/da is b itself: updating b in place before a would corrupt a's step."""
    text = "model alias\nparam a : float[3] = 1.5\nparam b : float[3] = -2.0\nloss = sum(a * b)\n" \
           f"optimizer sgd(lr={lr}, momentum={0.9 if lr == 0.5 else 0.0})\n"
    module = load_source(compile_spec(text, "alias.nn"), tmp_path, "alias")
    params = module.init_params(dtype="float64")
    module.train_step(params, module.init_optimizer(params))
    np.testing.assert_allclose(params["a"], 1.5 - lr * -2.0)
    np.testing.assert_allclose(params["b"], -2.0 - lr * 1.5)


def test_init_params_on_each_backend(backend, modules):
    module = modules["mlp"]
    ref = module.init_params(seed=3, dtype="float32")
    got = module.init_params(seed=3, xp=backend.xp, dtype="float32")
    for k in ref:
        np.testing.assert_array_equal(backend.to_numpy(got[k]), ref[k])


# ---- specs nobody has seen: random valid specs (tests/specgen.py) on every backend -----------

_OPTIMIZERS = ["", "optimizer sgd(lr=0.1)", "optimizer sgd(lr=0.05, momentum=0.9, nesterov=true)",
               "optimizer adam(lr=0.01)", "optimizer adamw(lr=0.01, weight_decay=0.1)",
               "optimizer rmsprop(lr=0.01, momentum=0.5)", "optimizer adagrad(lr=0.1)", "optimizer adadelta()",
               "optimizer sgd(lr=0.1, schedule=cosine, total_steps=10, clip_norm=1.0)"]


def _random_module(seed: int, tmp_path):
    import random

    from specgen import generate

    rng = random.Random(seed)
    # odd seeds: a symbolic batch dimension B on the inputs, as most real specs have
    text = generate(rng.choice, rng.choice([2, 3, 4, 6]), batch=seed % 2 == 1) + rng.choice(_OPTIMIZERS) + "\n"
    return text, load_source(compile_spec(text, f"random{seed}.nn"), tmp_path, f"random{seed}")


def _run_forward_mode(module, params: dict, inputs: dict, backend: Backend) -> dict:
    """jvp and hvp along a fixed direction: a constant per parameter and `wrt` input."""
    args = list(inputs.values())
    along = {**params, **{k: inputs[k] for k in module.WRT if k in inputs}}
    direction = {k: backend.asarray(np.full(np.shape(backend.to_numpy(v)), 0.5 + 0.1 * n,
                                            dtype=backend.to_numpy(v).dtype))
                 for n, (k, v) in enumerate(along.items())}
    value, dot = module.jvp(params, direction, *args)
    hv = module.hvp(params, direction, *args)
    return {"jvp value": value, "jvp": dot, **{f"hvp {k}": v for k, v in hv.items()}}


_SEEDS = random_spec_seeds()


# JAX compiles every operation per shape and dtype (seconds a spec): it runs every 8th spec
@pytest.mark.parametrize("backend_name, seed",
                         [(b, s) for b in FRESH_BACKENDS for s in _SEEDS if b != "jax" or s % 8 == 0])
def test_random_specs_agree_on_every_backend(backend_name, seed, tmp_path):
    """What a reviewer does with specs we have not seen: run them under array_api_strict and
    PyTorch (and JAX, CuPy where present) against NumPy float64."""
    backend = FRESH_BACKENDS[backend_name]()
    text, module = _random_module(seed, tmp_path)
    params, inputs = _host_case(module, seed=seed)
    # fresh copies each time: a backend array may share the host buffer, and train_step writes
    on = {"params": lambda: {k: backend.asarray(v.copy()) for k, v in params.items()},
          "inputs": lambda: {k: backend.asarray(v.copy()) for k, v in inputs.items()}}
    expected = _run_all(module, {k: v.copy() for k, v in params.items()}, dict(inputs))
    expected |= _run_forward_mode(module, {k: v.copy() for k, v in params.items()}, dict(inputs), _numpy())
    with backend.context():
        got = _run_all(module, on["params"](), on["inputs"]())
        got |= _run_forward_mode(module, on["params"](), on["inputs"](), backend)
    assert got.keys() == expected.keys(), text
    # A first gradient that is rounding noise (random spec 227: the loss is mean(softmax(p1)),
    # 1/4 for any p1) differs per backend, and rmsprop, adam and adagrad divide it by
    # sqrt(v) + eps: their state, and the parameters after the steps (moved by noise / eps, 1e-9
    # there, and by what that moves), are then compared to 1e-6. The noise may be on either
    # side: exactly 0 on NumPy and 1e-17 on Dask (random spec 757, where mean(softmax(p2)) is 1/4).
    def largest(g) -> float:
        return float(np.max(np.abs(np.asarray(g)), initial=0))

    noise = {k for k, g in expected.items() if k.startswith("grad ")
             and 0 < max(largest(g), largest(backend.to_numpy(got[k]))) < 1e-15}
    for key, want in expected.items():
        close = 1e-6 if noise and key.startswith(("state ", "param ", "step")) else None
        np.testing.assert_allclose(backend.to_numpy(got[key]), np.asarray(want), rtol=close or 1e-9,
                                   atol=close or 1e-12, err_msg=f"random spec {seed} on {backend.name}: {key}\n{text}")


@pytest.mark.parametrize("seed", _SEEDS)
def test_random_specs_under_torch_vmap(seed, tmp_path):
    """The in-place rule on graphs nobody wrote by hand (test_gradients_under_torch_vmap)."""
    text, module = _random_module(seed, tmp_path)
    _check_under_torch_vmap(module, f"random spec {seed}\n{text}")


# JAX: float32 is covered by the bundled specs (it compiles every operation per dtype)
@pytest.mark.parametrize("backend_name, seed",
                         [(b, s) for b in FRESH_BACKENDS if b != "jax" for s in range(0, 24, 3)])
def test_random_specs_stay_float32(backend_name, seed, tmp_path):
    backend = FRESH_BACKENDS[backend_name]()
    text, module = _random_module(seed, tmp_path)
    params, inputs = _host_case(module, dtype=np.float32, seed=seed)
    with backend.context():
        got = _run_all(module, {k: backend.asarray(v.astype(np.float32)) for k, v in params.items()},
                       {k: backend.asarray(v) for k, v in inputs.items()})
    wrong = {k: _dtype_name(v) for k, v in got.items() if _dtype_name(v) != "float32"}
    assert not wrong, f"random spec {seed} on {backend.name} upcast: {wrong}\n{text}"
