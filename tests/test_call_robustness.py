"""How users call generated modules: their arguments stay theirs, odd layouts and kinds work
or fail clearly, and repeated, interleaved calls agree with fresh modules.

The fourth sweep (tests/unseen4/*.nn: definitions that are an input or a view of one,
gradients that are views, scalar inputs, square inputs a caller may pass as a parameter)
probes the caller's side on NumPy, array_api_strict and PyTorch; the mutation and memory
tests also run every spec of specs/ and tests/unseen*/. NumPy float64 on fresh copies is
the reference. Bugs it found, fixed and kept here as regression tests: results that are a
view of an input, a parameter or another result (`output transpose(W)`, `flatten(x)`, a
gradient `transpose(x)`) handed out uncopied; softmax and log_softmax over an empty batch
returning their argument, the caller's input, itself; `numpy.matrix` inputs giving wrong
results without an error (its `*` is a matrix product); `save_params` failing on PyTorch
tensors that require grad.
"""

from __future__ import annotations

import inspect
import itertools
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_portability import _forward_args, _numpy, _strict, _torch

from helpers import load_source, random_inputs
from nnc.api import compile_spec

TESTS = Path(__file__).resolve().parent
UNSEEN4 = {p.stem: p for p in sorted((TESTS / "unseen4").glob("*.nn"))}
EVERY_SPEC = {p.stem: p for folder in (TESTS.parent / "specs", TESTS / "unseen", TESTS / "unseen2",
                                       TESTS / "unseen3", TESTS / "unseen4", TESTS / "unseen5",
                                       TESTS / "unseen6", TESTS / "unseen7", TESTS / "unseen8")
               for p in sorted(folder.glob("*.nn"))}
BACKENDS = {"numpy": _numpy, "array_api_strict": _strict, "torch": _torch}
pytestmark = pytest.mark.filterwarnings("ignore:(divide by zero|invalid value) encountered:RuntimeWarning")

_SOURCES: dict[str, str] = {}


def _module(spec: str, tmp_path: Path, text: str | None = None):
    """A freshly imported module of `spec` (compiled once per spec text)."""
    text = EVERY_SPEC[spec].read_text() if text is None else text
    if text not in _SOURCES:
        _SOURCES[text] = compile_spec(text, f"{spec}.nn")
    return load_source(_SOURCES[text], tmp_path, spec)


def _host_case(module, batch: int = 3, seed: int = 0) -> tuple[dict, dict]:
    """float64 parameters and inputs on the host; labels cover their classes."""
    inputs = dict(zip(module.INPUTS, random_inputs(module, np.random.default_rng(seed), size=batch)))
    return module.init_params(seed=seed, dtype="float64"), inputs


def _host(a) -> np.ndarray:
    """A NumPy view of `a`'s memory (no copy: from_dlpack on array_api_strict and PyTorch)."""
    if isinstance(a, (np.ndarray, np.generic)):
        return np.asarray(a)
    return np.from_dlpack(a.detach() if hasattr(a, "detach") else a)


def _snapshot(arrays: dict) -> dict:
    return {k: np.array(_host(v), copy=True) for k, v in arrays.items()}


def _changed(before: dict, arrays: dict) -> list[str]:
    return [k for k, v in arrays.items() if not np.array_equal(before[k], _host(v), equal_nan=True)]


def _leaves(result, prefix: str):
    """(name, array) for every array in a result: an array, a tuple, a dict or (loss, dict)."""
    if isinstance(result, dict):
        for k, v in result.items():
            yield from _leaves(v, f"{prefix}[{k}]")
    elif isinstance(result, tuple):
        for i, v in enumerate(result):
            yield from _leaves(v, f"{prefix}[{i}]")
    elif result is not None:
        yield prefix, result


def _calls(module, params: dict, inputs: dict, vector: dict) -> dict:
    """Every pure entry point, ready to call."""
    args = list(inputs.values())
    return {"forward": lambda: module.forward(params, *_forward_args(module, inputs)),
            "loss": lambda: module.loss(params, *args),
            "value_and_grad": lambda: module.value_and_grad(params, *args),
            "jvp": lambda: module.jvp(params, vector, *args),
            "hvp": lambda: module.hvp(params, vector, *args)}


def _case(module, asarray, batch: int = 3, seed: int = 0):
    """Parameters, inputs and a direction (for jvp's tangents and hvp's vector) on a backend."""
    hp, hi = _host_case(module, batch, seed)
    params = {k: asarray(v) for k, v in hp.items()}
    inputs = {k: asarray(v) for k, v in hi.items()}
    along = {**hp, **{k: hi[k] for k in module.WRT}}
    vector = {k: asarray(np.full(np.shape(v), 0.5 + 0.1 * n)) for n, (k, v) in enumerate(along.items())}
    return params, inputs, vector


# ---- 1. no entry point changes what it is not meant to -------------------------------------

@pytest.mark.parametrize("backend_name", list(BACKENDS))
@pytest.mark.parametrize("spec", list(EVERY_SPEC))
def test_entry_points_leave_their_arguments_alone(spec, backend_name, tmp_path):
    """forward, loss, value_and_grad, jvp and hvp change no parameter, input or tangent;
    train_step changes params and state only (never an input), and the loss it returned is
    not changed by the next step."""
    backend = BACKENDS[backend_name]()
    module = _module(spec, tmp_path)
    params, inputs, vector = _case(module, backend.asarray)
    for name, call in _calls(module, params, inputs, vector).items():
        before = [_snapshot(d) for d in (params, inputs, vector)]
        call()
        changed = [(what, k) for what, b, d in zip(("param", "input", "vector"), before, (params, inputs, vector))
                   for k in _changed(b, d)]
        assert not changed, f"{spec} on {backend_name}: {name} changed {changed}"
    state = module.init_optimizer(params)
    before = _snapshot(inputs)
    first = module.train_step(params, state, *inputs.values())
    value = np.array(_host(first), copy=True)
    module.train_step(params, state, *inputs.values())
    assert not _changed(before, inputs), f"{spec} on {backend_name}: train_step changed inputs"
    assert np.array_equal(_host(first), value, equal_nan=True), f"{spec}: the next step changed the loss returned"


# ---- 2. results are arrays of their own ----------------------------------------------------------

@pytest.mark.parametrize("backend_name", list(BACKENDS))
@pytest.mark.parametrize("spec", list(EVERY_SPEC))
def test_results_share_no_memory(spec, backend_name, tmp_path):
    """No two arrays of one result share memory, none shares memory with a parameter, an input
    or a tangent, and train_step's loss shares none with the params, state or inputs. (Views
    count: the sweep found `output transpose(W)`, `flatten(x)` and gradients `transpose(x)`
    handed out as views of the caller's arrays.)"""
    backend = BACKENDS[backend_name]()
    module = _module(spec, tmp_path)
    params, inputs, vector = _case(module, backend.asarray)
    caller = {**{f"param {k}": v for k, v in params.items()}, **{f"input {k}": v for k, v in inputs.items()},
              **{f"vector {k}": v for k, v in vector.items()}}
    caller = {k: _host(v) for k, v in caller.items()}
    for name, call in _calls(module, params, inputs, vector).items():
        results = [(k, _host(v)) for k, v in _leaves(call(), name)]
        shared = [(a, b) for i, (a, va) in enumerate(results) for b, vb in results[i + 1:] if np.shares_memory(va, vb)]
        shared += [(a, b) for a, va in results for b, vb in caller.items() if np.shares_memory(va, vb)]
        assert not shared, f"{spec} on {backend_name}: {name} results share memory: {shared}"
    state = module.init_optimizer(params)
    loss = _host(module.train_step(params, state, *inputs.values()))
    held = {**caller, **{f"state {b} {k}": _host(v) for b, d in state.items() if isinstance(d, dict)
                         for k, v in d.items()}}
    shared = [b for b, v in held.items() if np.shares_memory(loss, v)]
    assert not shared, f"{spec} on {backend_name}: train_step's loss shares memory with {shared}"


def test_view_results_are_copied_and_plain_ones_are_not():
    """The fix for view results copies exactly the views of what the caller holds or of an
    earlier result, and nothing else (a copy costs a pass over memory)."""
    text = compile_spec(UNSEEN4["grad_views"].read_text(), "grad_views.nn")
    vg = text[text.index("def value_and_grad"):text.index("def jvp")]
    for copied in ('"B": _copy(xp, t2)', '"C": _copy(xp, t5)', '"D": _copy(xp, t12)', '"u": _copy(xp, d_u)'):
        assert copied in vg
    assert '"A": e,' in vg and '"x": d_x,' in vg


def test_outputs_on_an_empty_batch_are_new_arrays(tmp_path):
    """forward on an empty batch (B = 0) returns no input, parameter or other output object:
    softmax and log_softmax over an empty axis returned their argument itself, so
    `forward(params, x)` of empty_softmax gave `x` twice (shares_memory is False for empty
    arrays, so the memory tests above do not see it)."""
    for spec in EVERY_SPEC:
        module = _module(spec, tmp_path)
        if not any(isinstance(d, str) for meta in module.INPUTS.values() for d in meta["shape"]):
            continue
        params, inputs = _host_case(module, batch=0)
        out = module.forward(params, *_forward_args(module, inputs))
        outputs = [o for _, o in _leaves(out, "forward")]
        held = [*params.values(), *inputs.values()]
        assert not [o for o in outputs if any(o is h for h in held)], f"{spec}: an output is an argument"
        assert len({id(o) for o in outputs}) == len(outputs), f"{spec}: one output object twice"


# ---- 3. one array in two places -------------------------------------------------------------

@pytest.mark.parametrize("backend_name", list(BACKENDS))
def test_one_array_passed_as_two_inputs(backend_name, tmp_path):
    """x and t given the same array: the results of passing two copies, and d_x, d_t two arrays."""
    backend = BACKENDS[backend_name]()
    module = _module("same_input_twice", tmp_path)
    hp, hi = _host_case(module)
    params = {k: backend.asarray(v) for k, v in hp.items()}
    x = backend.asarray(hi["x"])
    want_loss, want = module.value_and_grad(hp, hi["x"], hi["x"].copy())
    loss, grads = module.value_and_grad(params, x, x)
    assert np.allclose(_host(loss), want_loss, rtol=1e-12)
    for k in want:
        np.testing.assert_allclose(_host(grads[k]), want[k], rtol=1e-12, err_msg=k)
    assert not np.shares_memory(_host(grads["x"]), _host(grads["t"]))
    assert np.array_equal(_host(x), hi["x"])
    vector = {k: backend.asarray(np.full(np.shape(v), 0.5)) for k, v in {**hp, "x": 0 * hi["x"], "t": hi["t"]}.items()}
    want_hvp = module.hvp(hp, {k: np.full(np.shape(v), 0.5) for k, v in vector.items()}, hi["x"], hi["x"].copy())
    got_hvp = module.hvp(params, vector, x, x)
    for k in want_hvp:
        np.testing.assert_allclose(_host(got_hvp[k]), want_hvp[k], rtol=1e-12, err_msg=k)


OPTIMIZERS = ["sgd(lr=0.1)", "sgd(lr=0.1, momentum=0.9)", "adam(lr=0.1, clip_norm=0.5)"]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("backend_name", list(BACKENDS))
def test_a_parameter_passed_as_an_input(backend_name, optimizer, tmp_path):
    """train_step(params, state, params["A"]) takes the step a copy of A would give (the step
    reads x before it updates A), then x, being A, holds the new A; the same for C."""
    backend = BACKENDS[backend_name]()
    text = UNSEEN4["input_is_param"].read_text().replace("sgd(lr=0.1)", optimizer)
    module = _module("input_is_param", tmp_path, text)
    for which in ("A", "C"):
        copied = {k: backend.asarray(v) for k, v in module.init_params(dtype="float64").items()}
        shared = {k: backend.asarray(v) for k, v in module.init_params(dtype="float64").items()}
        states = module.init_optimizer(copied), module.init_optimizer(shared)
        for _ in range(2):
            want = _host(module.train_step(copied, states[0], backend.asarray(_host(copied[which]).copy())))
            got = _host(module.train_step(shared, states[1], shared[which]))
            assert float(got) == float(want), (which, optimizer)
        for k in copied:
            np.testing.assert_allclose(_host(shared[k]), _host(copied[k]), rtol=1e-13, err_msg=f"{which}: {k}")


@pytest.mark.parametrize("backend_name", list(BACKENDS))
def test_params_as_their_own_tangents_and_two_states_of_one_params(backend_name, tmp_path):
    """jvp and hvp along the parameters themselves (tangents=params, vector=params) leave them
    unchanged and agree with copies; two optimizer states made from one params dict are
    independent: a step with one leaves the other's buffers as they were; gradients from an
    earlier call are not changed by later calls."""
    backend = BACKENDS[backend_name]()
    module = _module("alias_param", tmp_path)
    hp, hi = _host_case(module)
    params = {k: backend.asarray(v) for k, v in hp.items()}
    args = [backend.asarray(v) for v in hi.values()]
    along = {**params, "x": args[0]}
    copies = {k: backend.asarray(_host(v).copy()) for k, v in along.items()}
    before = _snapshot(along)
    for entry in (module.jvp, module.hvp):
        got, want = entry(params, along, *args), entry(params, copies, *args)
        for (name, g), (_, w) in zip(_leaves(got, entry.__name__), _leaves(want, entry.__name__)):
            np.testing.assert_allclose(_host(g), _host(w), rtol=1e-13, err_msg=name)
        assert not _changed(before, along), entry.__name__
    loss0, grads0 = module.value_and_grad(params, *args)
    kept = _snapshot({"loss": loss0, **grads0})
    first, second = module.init_optimizer(params), module.init_optimizer(params)
    module.train_step(params, first, *args)
    buffers = {f"{b} {k}": v for b, d in first.items() if isinstance(d, dict) for k, v in d.items()}
    held = _snapshot(buffers)
    module.train_step(params, second, *args)
    module.value_and_grad(params, *args)
    assert not _changed(held, buffers), "a step with the second state changed the first state"
    assert first["step"] == 1 and second["step"] == 1
    assert not _changed(kept, {"loss": loss0, **grads0}), "later calls changed earlier results"


# ---- 4. layouts -----------------------------------------------------------------------------

def _numpy_layouts(a: np.ndarray) -> dict:
    """`a` in other NumPy layouts, every kind of view a user's slicing may give (broadcast_to
    repeats a's first entry along axis 0: a stride of 0, read-only)."""
    readonly = a.copy()
    readonly.flags.writeable = False
    out = {"read-only": readonly}
    if a.ndim:  # (np.asfortranarray gives a 0-d array an axis)
        out["Fortran order"] = np.asfortranarray(a)
        out["reversed"] = a[::-1]
        out["strided slice"] = np.repeat(a, 2, axis=-1)[..., ::2]
        out["broadcast_to (stride 0, read-only)"] = np.broadcast_to(a[:1], a.shape)
        out["transposed copy, transposed back"] = np.swapaxes(np.swapaxes(a, 0, -1).copy(), 0, -1)
    return out


def _torch_layouts(a: np.ndarray) -> dict:
    torch = pytest.importorskip("torch")
    out = {"requires_grad": torch.asarray(a.copy()).requires_grad_(True)}
    if a.ndim:
        out["expand (stride 0)"] = torch.asarray(a[:1].copy()).expand(*a.shape)
        out["strided slice"] = torch.repeat_interleave(torch.asarray(a.copy()), 2, dim=-1)[..., ::2]
        out["flipped"] = torch.asarray(a[::-1].copy()).flip(0)
    if a.ndim >= 2:
        out["transposed back (non-contiguous)"] = torch.asarray(np.swapaxes(a, -1, -2).copy()).mT
    return out


def _all_results(module, params: dict, inputs: dict) -> dict:
    vector = {k: np.full(np.shape(v), 0.5) for k, v in {**params, **{k: inputs[k] for k in module.WRT}}.items()}
    if not isinstance(next(iter(params.values())), np.ndarray):
        torch = pytest.importorskip("torch")
        vector = {k: torch.asarray(v) for k, v in vector.items()}
    out = {name: list(_leaves(call(), name)) for name, call in _calls(module, params, inputs, vector).items()}
    state = module.init_optimizer(params)
    out["train_step"] = [("loss", module.train_step(params, state, *inputs.values()))]
    out["train_step"] += list(_leaves(params, "params"))
    return {k: _host(v) for pairs in out.values() for k, v in pairs}


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("spec", ["alias_views", "scalar_inputs", "grad_views"])
def test_every_layout_gives_the_results_of_a_contiguous_copy(spec, library, tmp_path):
    """Non-contiguous, Fortran-order, reversed, read-only, broadcast and (PyTorch) expanded or
    requires_grad inputs give the results of contiguous copies of the same values, in every
    entry point and in train_step, and are not written to."""
    module = _module(spec, tmp_path)
    hp, hi = _host_case(module)
    layouts = _numpy_layouts if library == "numpy" else _torch_layouts
    convert = (lambda a: a) if library == "numpy" else _torch().asarray
    for name in [n for n, meta in module.INPUTS.items() if meta["kind"] == "float"]:
        for layout, value in layouts(hi[name]).items():
            values = np.array(_host(value), copy=True)
            want = _all_results(module, {k: v.copy() for k, v in hp.items()}, {**hi, name: values})
            inputs = {k: convert(v.copy()) for k, v in hi.items()} | {name: value}
            got = _all_results(module, {k: convert(v.copy()) for k, v in hp.items()}, inputs)
            for key in want:
                np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-15,
                                           err_msg=f"{spec}: input {name} as {layout}: {key}")
            assert np.array_equal(_host(value), values), f"{name} as {layout} was written to"


# ---- 5. kinds of arguments -------------------------------------------------------------------

@pytest.mark.parametrize("backend_name", list(BACKENDS))
def test_scalar_inputs_as_0d_arrays_and_numpy_scalars(backend_name, tmp_path):
    """A scalar input takes a 0-d array of any backend, and on NumPy a NumPy scalar
    (np.float64(0.5)), with the results of a 0-d array; a Python float is refused by name."""
    backend = BACKENDS[backend_name]()
    module = _module("scalar_inputs", tmp_path)
    hp, hi = _host_case(module)
    want = module.value_and_grad(hp, *hi.values())
    params = {k: backend.asarray(v) for k, v in hp.items()}
    x, y = backend.asarray(hi["x"]), backend.asarray(hi["y"])
    scalars = [backend.asarray(np.asarray(hi["s"]))]
    if backend_name == "numpy":
        scalars.append(np.float64(hi["s"]))
    for s in scalars:
        loss, grads = module.value_and_grad(params, s, x, y)
        assert np.allclose(_host(loss), want[0], rtol=1e-13)
        for k in want[1]:
            np.testing.assert_allclose(_host(grads[k]), want[1][k], rtol=1e-13, err_msg=f"{type(s).__name__}: {k}")
    for bad in (float(hi["s"]), 2, [float(hi["s"])]):
        with pytest.raises(TypeError, match=rf"^input 's' must be an array of float\[\], got {type(bad).__name__}$"):
            module.value_and_grad(params, bad, x, y)


def test_numpy_float32_scalar_with_float32_params_stays_float32(tmp_path):
    module = _module("scalar_inputs", tmp_path)
    hp, hi = _host_case(module)
    params = {k: v.astype(np.float32) for k, v in hp.items()}
    loss, grads = module.value_and_grad(params, np.float32(hi["s"]), hi["x"].astype(np.float32), hi["y"])
    assert loss.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("spec", ["same_input_twice", "mlp"])
def test_numpy_matrix_inputs_are_refused_by_name(spec, tmp_path):
    """np.matrix (what `.todense()` of a SciPy sparse matrix gives) multiplies with `*` as a
    matrix product: accepted, it gave wrong results without an error (same_input_twice) or a
    deep shape error (mlp). Refused by name, for any input, at every entry point."""
    module = _module(spec, tmp_path)
    hp, hi = _host_case(module)
    want = float(module.loss(hp, *hi.values()))  # first: the same dtypes are in the check's cache
    for name in [n for n, meta in module.INPUTS.items() if len(meta["shape"]) == 2]:
        inputs = {**hi, name: np.asmatrix(hi[name])}
        for entry in (module.loss, module.value_and_grad):
            with pytest.raises(TypeError, match=rf"^input '{name}' must be an array of .*, got numpy.matrix"):
                entry(hp, *inputs.values())
    assert float(module.loss(hp, *hi.values())) == want  # plain arrays still work after it


@pytest.mark.parametrize("backend_name", list(BACKENDS))
@pytest.mark.parametrize("labels, message", [
    (lambda y: y.astype(np.float64), r"must be int\[B\], got .*float64 of shape \(3,\): .*class labels must be integers"),
    (lambda y: y > 0, r"must be int\[B\], got .*bool of shape \(3,\): .*class labels must be integers"),
    (lambda y: y + 3, r"holds class labels in \[0, 3\), got values from 3 to 5"),
    (lambda y: y - 3, r"holds class labels in \[0, 3\), got values from -3 to -1"),
])
def test_bad_labels_are_refused_by_name_on_every_backend(backend_name, labels, message, tmp_path):
    backend = BACKENDS[backend_name]()
    module = _module("scalar_inputs", tmp_path)
    hp, hi = _host_case(module)
    hi["y"] = np.array([0, 1, 2])
    params = {k: backend.asarray(v) for k, v in hp.items()}
    before = _snapshot(params)
    args = [backend.asarray(hi["s"]), backend.asarray(hi["x"]), backend.asarray(labels(hi["y"]))]
    for entry, lead in ((module.loss, ()), (module.value_and_grad, ()), (module.train_step, (None,))):
        call_args = (params, module.init_optimizer(params)) if lead else (params,)
        with pytest.raises(ValueError, match=rf"^input 'y' {message}"):
            entry(*call_args, *args)
    assert not _changed(before, params)


def _misshapen(shape: tuple) -> tuple:
    """A shape that broadcasts where `shape` does (a leading axis of 1), so that only a shape
    check can tell; a scalar becomes (1,)."""
    return (1, *shape)


# every spec on NumPy; the specs of specs/ on array_api_strict and PyTorch too
_SHIPPED = sorted(p.stem for p in (TESTS.parent / "specs").glob("*.nn"))


@pytest.mark.parametrize("spec, backend_name", [(s, "numpy") for s in EVERY_SPEC]
                         + [(s, b) for b in ("array_api_strict", "torch") for s in _SHIPPED])
def test_parameters_of_another_shape_are_refused_by_name(spec, backend_name, tmp_path):
    """Every entry point that reads a parameter refuses it with another shape, naming it,
    before computing anything (a bias of shape (1, 256) would broadcast: a loss and gradients
    of the wrong shape, or a train_step that fails deep inside NumPy); params stay as they were."""
    backend = BACKENDS[backend_name]()
    module = _module(spec, tmp_path)
    params, inputs, vector = _case(module, backend.asarray)
    for name, shape in module.PARAMS.items():
        bad = {**params, name: backend.asarray(np.zeros(_misshapen(shape)))}
        calls = _calls(module, bad, inputs, vector)
        calls["train_step"] = lambda bad=bad: module.train_step(bad, module.init_optimizer(params),
                                                                *inputs.values())
        read = f'params["{name}"]'
        checked = 0
        for entry, call in calls.items():
            source = inspect.getsource(getattr(module, entry))
            if entry == "train_step" and "value_and_grad(" in source:
                source = inspect.getsource(module.value_and_grad)
            if read not in source:
                continue  # this entry point does not read it (a parameter only the loss uses)
            before = _snapshot(bad)
            with pytest.raises(ValueError, match=rf"^parameter '{re.escape(name)}' has shape "
                                                 rf"\({', '.join(map(str, _misshapen(shape)))},?\), "
                                                 rf"but {spec}\.nn makes it"):
                call()
            assert not _changed(before, bad), f"{entry} changed params before refusing {name}"
            checked += 1
        assert checked or spec in {"unused_param"}, f"no entry point reads {name}"


@pytest.mark.parametrize("spec, backend_name", [(s, "numpy") for s in EVERY_SPEC]
                         + [(s, b) for b in ("array_api_strict", "torch") for s in _SHIPPED])
def test_directions_of_another_shape_are_refused_by_name(spec, backend_name, tmp_path):
    """jvp's tangents and hvp's vector: an entry of another shape than its parameter's or its
    `wrt` input's (a leading axis of 1, which would broadcast) is refused, naming it; so is one
    that is no array (a list, a float), a TypeError rather than the shape test's AttributeError."""
    backend = BACKENDS[backend_name]()
    module = _module(spec, tmp_path)
    params, inputs, vector = _case(module, backend.asarray)
    for name in vector:
        wider = {**vector, name: backend.asarray(np.zeros((1, *_host(vector[name]).shape)))}
        listed = {**vector, name: _host(vector[name]).tolist()}
        for entry, arg in ((module.jvp, "tangents"), (module.hvp, "vector")):
            if f'{arg}["{name}"]' not in inspect.getsource(entry):
                continue  # a direction this entry point never reads (a parameter the loss does not use)
            with pytest.raises(ValueError, match=rf"^{arg}\['{re.escape(name)}'\] has shape \(1,"):
                entry(params, wider, *inputs.values())
            with pytest.raises(TypeError, match=rf"^{arg}\['{re.escape(name)}'\] must be an array, got "
                                                rf"{type(listed[name]).__name__}"):
                entry(params, listed, *inputs.values())


def test_shape_checks_work_where_inputs_and_definitions_are_named_params_and_spec(tmp_path):
    """The checks' error paths name PARAMS and SPEC as _PARAMS and _SPEC: here an input is
    called PARAMS and a definition SPEC, which would shadow the module's constants."""
    text = ("model coll\ninput PARAMS : float[B, 3]\ninput y : int[B]\nSPEC = dense(PARAMS, 4)\n"
            "logits = dense(tanh(SPEC), 3)\nloss = cross_entropy(logits, y)\nwrt PARAMS\noptimizer sgd(lr=0.1)\n")
    module = _module("coll", tmp_path, text)
    params, inputs, vector = _case(module, np.asarray)
    bad = {**params, "SPEC.b": np.zeros((1, 4))}
    for call in _calls(module, bad, inputs, vector).values():
        with pytest.raises(ValueError, match=r"^parameter 'SPEC.b' has shape \(1, 4\), but coll.nn makes it \(4,\)"):
            call()
    bad_direction = {**vector, "PARAMS": np.zeros((1, 3, 3))}
    with pytest.raises(ValueError, match=r"^tangents\['PARAMS'\] has shape \(1, 3, 3\), but PARAMS has shape \(3, 3\)"):
        module.jvp(params, bad_direction, *inputs.values())


# ---- 6. repeated and interleaved calls --------------------------------------------------------

def test_interleaved_backends_dtypes_and_batches_match_fresh_modules(tmp_path):
    """Modules cache per array type (namespace, dtype kinds). Two modules of different specs
    called alternately with NumPy, array_api_strict and PyTorch arrays, float64 and float32,
    batches of 3, 1 and 5 give, call for call, the results of a module imported afresh."""
    names = ("scalar_inputs", "alias_views")
    long_lived = {n: _module(n, tmp_path) for n in names}
    combos = list(itertools.product(BACKENDS, ("float64", "float32"), (3, 1, 5)))
    order = np.random.default_rng(0).permutation(len(combos))
    for seed, index in enumerate(order):
        backend_name, dtype, batch = combos[index]
        backend = BACKENDS[backend_name]()

        def convert(v, backend=backend, dtype=dtype):
            return backend.asarray(v.astype(dtype) if v.dtype.kind == "f" else v)

        for n in names:
            results = []
            for module in (long_lived[n], _module(n, tmp_path)):
                hp, hi = _host_case(module, batch, seed)
                params, inputs = {k: convert(v) for k, v in hp.items()}, {k: convert(v) for k, v in hi.items()}
                loss, grads = module.value_and_grad(params, *inputs.values())
                step = module.train_step(params, module.init_optimizer(params), *inputs.values())
                results.append([("loss", loss), *grads.items(), ("step", step), *params.items()])
            for (key, got), (_, want) in zip(*results):
                assert str(got.dtype) == str(want.dtype), (n, backend_name, dtype, batch, key)
                assert str(got.dtype).endswith(dtype), (n, backend_name, dtype, batch, key)
                np.testing.assert_array_equal(_host(got), _host(want), err_msg=f"{n} {backend_name} {dtype} B={batch} {key}")


# ---- 7. PyTorch specifics ---------------------------------------------------------------------

def test_torch_parameters_that_require_grad(tmp_path):
    """Parameters with requires_grad=True (a PyTorch user's habit): value_and_grad works; train_step
    under torch.no_grad() takes the plain step (without it, PyTorch refuses the in-place update
    of a leaf that requires grad, as docs/language.md says); save_params saves them."""
    torch = pytest.importorskip("torch")
    module = _module("alias_param", tmp_path)
    hp, hi = _host_case(module)
    args = [torch.asarray(v) for v in hi.values()]
    plain = {k: torch.asarray(v.copy()) for k, v in hp.items()}
    leaves = {k: torch.asarray(v.copy()).requires_grad_(True) for k, v in hp.items()}
    want = module.value_and_grad(plain, *args)
    got = module.value_and_grad(leaves, *args)
    for (key, g), (_, w) in zip(_leaves(got, "vg"), _leaves(want, "vg")):
        np.testing.assert_allclose(_host(g), _host(w), rtol=1e-14, err_msg=key)
    with pytest.raises(RuntimeError, match="in-place"):
        module.train_step(leaves, module.init_optimizer(leaves), *args)
    state, plain_state = module.init_optimizer(leaves), module.init_optimizer(plain)
    with torch.no_grad():
        for _ in range(2):
            module.train_step(leaves, state, *args)
    for _ in range(2):
        module.train_step(plain, plain_state, *args)
    for k in plain:
        np.testing.assert_allclose(_host(leaves[k]), _host(plain[k]), rtol=1e-14, err_msg=k)
    path = tmp_path / "w.safetensors"
    module.save_params(leaves, path)
    for k, v in module.load_params(path).items():
        np.testing.assert_array_equal(v, _host(plain[k]), err_msg=k)


def test_torch_inputs_that_require_grad_in_train_step(tmp_path):
    """Inputs that require grad (features of another model, not detached): under
    torch.no_grad() train_step takes the step of detached inputs and the parameters stay plain
    tensors; without it they would join the inputs' graph (docs/language.md), which this
    records."""
    torch = pytest.importorskip("torch")
    module = _module("alias_views", tmp_path)
    hp, hi = _host_case(module)
    plain = {k: torch.asarray(v.copy()) for k, v in hp.items()}
    guarded = {k: torch.asarray(v.copy()) for k, v in hp.items()}
    attached = {k: torch.asarray(v.copy()) for k, v in hp.items()}
    inputs = [torch.asarray(v).requires_grad_(True) for v in hi.values()]
    states = [module.init_optimizer(p) for p in (plain, guarded, attached)]
    for _ in range(2):
        want = module.train_step(plain, states[0], *(x.detach() for x in inputs))
        with torch.no_grad():
            got = module.train_step(guarded, states[1], *inputs)
        module.train_step(attached, states[2], *inputs)
        assert float(got) == float(want) and not got.requires_grad
    for k in plain:
        assert not guarded[k].requires_grad and guarded[k].is_leaf, k
        np.testing.assert_array_equal(_host(guarded[k]), _host(plain[k]), err_msg=k)
    assert all(p.requires_grad for p in attached.values())  # the documented trap


def _float32_case(spec: str, backend_name: str, tmp_path: Path):
    """The backend, the module, float64 host inputs and float32 parameters on the backend."""
    backend = BACKENDS[backend_name]()
    module = _module(spec, tmp_path)
    if not module.PARAMS:
        pytest.skip("no parameters: a spec without them computes in its inputs' dtype")
    hp, hi = _host_case(module)
    return backend, module, hi, {k: backend.asarray(v.astype(np.float32)) for k, v in hp.items()}


@pytest.mark.parametrize("spec, backend_name", [(s, "numpy") for s in EVERY_SPEC]
                         + [(s, b) for b in ("array_api_strict", "torch") for s in _SHIPPED])
def test_float_inputs_take_the_parameters_dtype(spec, backend_name, tmp_path):
    """float64 inputs with float32 parameters give, from every entry point, what float32
    inputs give: the same bits, float32 throughout (array_api_strict used to refuse the first
    in-place update that promoted; NumPy and PyTorch computed in float64). jvp's and hvp's
    directions along inputs are cast as the inputs are."""
    backend, module, hi, params = _float32_case(spec, backend_name, tmp_path)
    wide = {k: backend.asarray(v) for k, v in hi.items()}
    narrow = {k: backend.asarray(v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in hi.items()}
    _, _, vector = _case(module, lambda v: backend.asarray(np.asarray(v, dtype=np.float32)))
    # a direction along an input, made from the float64 data, is float64 too
    wide_vector = {k: backend.asarray(np.asarray(_host(v), dtype=np.float64)) if k in module.WRT else v
                   for k, v in vector.items()}
    results = [{entry: call() for entry, call in _calls(module, params, inputs, along).items()}
               for inputs, along in ((wide, wide_vector), (narrow, vector))]
    for inputs in (wide, narrow):
        p = {k: backend.asarray(_host(v).copy()) for k, v in params.items()}
        results.append(module.train_step(p, module.init_optimizer(p), *inputs.values()))
        results.append(p)
    got, want = dict(_leaves((results[0], results[2], results[3]), "wide")), \
        dict(_leaves((results[1], results[4], results[5]), "wide"))
    assert got.keys() == want.keys()
    for name, value in got.items():
        host = _host(value)
        if host.dtype.kind == "f":
            assert host.dtype == np.float32, (name, host.dtype)
        assert np.array_equal(host, _host(want[name]), equal_nan=True), name


@pytest.mark.parametrize("spec, backend_name", [(s, "numpy") for s in EVERY_SPEC]
                         + [(s, b) for b in ("array_api_strict", "torch") for s in _SHIPPED])
def test_directions_take_the_parameters_dtype(spec, backend_name, tmp_path):
    """jvp's tangents and hvp's vector in float64 (np.ones' default) with float32 parameters give
    what float32 ones give: the same bits, float32 throughout, along parameters as along inputs
    (found by the sweep of tests/unseen7: array_api_strict refused the first in-place update
    that promoted, `Cannot perform __iadd__ with dtypes float32 and float64`, and NumPy and
    PyTorch returned float64 hvp entries where a parameter's direction alone made them)."""
    backend, module, hi, params = _float32_case(spec, backend_name, tmp_path)
    inputs = [backend.asarray(v.astype(np.float32) if v.dtype.kind == "f" else v) for v in hi.values()]
    _, _, narrow = _case(module, lambda v: backend.asarray(np.asarray(v, dtype=np.float32)))
    wide = {k: backend.asarray(np.asarray(_host(v), dtype=np.float64)) for k, v in narrow.items()}
    got = dict(_leaves((module.jvp(params, wide, *inputs), module.hvp(params, wide, *inputs)), "wide"))
    want = dict(_leaves((module.jvp(params, narrow, *inputs), module.hvp(params, narrow, *inputs)), "wide"))
    assert got.keys() == want.keys()
    for name, value in got.items():
        host = _host(value)
        assert host.dtype == np.float32, (name, host.dtype)
        assert np.array_equal(host, _host(want[name]), equal_nan=True), name


@pytest.mark.parametrize("spec, backend_name", [(s, "numpy") for s in EVERY_SPEC]
                         + [(s, "torch") for s in _SHIPPED] + [(s, "array_api_strict") for s in _SHIPPED])
def test_directions_of_another_library_or_no_arrays_are_refused_by_name(spec, backend_name, tmp_path):
    """A jvp tangent or hvp vector entry that is a list, or an array of another library than the
    parameters (np.ones(shape) with PyTorch parameters), is a TypeError naming the entry (found by
    the sweep of tests/unseen7: an AttributeError of no help, "'list' object has no attribute
    'shape'", "'numpy.ndarray' object has no attribute 'to'"), and the only word: NumPy directions
    with array_api_strict parameters also had array_api_strict warn that its dtypes were compared
    with NumPy's, before the error (the classes are now tested before the dtypes)."""
    torch = pytest.importorskip("torch")
    backend = BACKENDS[backend_name]()
    module = _module(spec, tmp_path)
    params, inputs, vector = _case(module, backend.asarray)
    if not vector:
        pytest.skip("no parameters and no wrt inputs: jvp and hvp take no directions")
    other = torch.asarray if backend_name == "numpy" else np.asarray
    for entry, kind in ((lambda v: _host(v).tolist(), "must be an array, got "),  # a list, or a float
                        (lambda v: other(_host(v).copy()), "of another library than the arrays it moves")):
        for name, arg in (("jvp", "tangents"), ("hvp", "vector")):
            # the last entry the function reads (one it never reads, along a parameter the loss
            # ignores, is never looked at)
            source = inspect.getsource(getattr(module, name))
            read = [k for k in vector if f'{arg}["{k}"]' in source]
            if not read:
                continue
            last = read[-1]
            bad = {**vector, last: entry(vector[last])}
            with pytest.raises(TypeError) as info, warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)
                getattr(module, name)(params, bad, *inputs.values())
            assert f"{arg}['{last}']" in str(info.value) and kind in str(info.value), (name, str(info.value))


@pytest.mark.parametrize("backend_name", list(BACKENDS))
def test_without_parameters_the_first_float_input_sets_the_dtype(backend_name, tmp_path):
    """A spec without parameters computes in its first float input's dtype (language.md): with that
    input float32 and the other float inputs, and the jvp/hvp directions, float64, every entry point
    gives what all-float32 arguments give, float32 throughout (found by the sweep of
    tests/unseen7: the results were float64 on NumPy and PyTorch, and array_api_strict's hvp
    refused an in-place update of float32 by float64)."""
    backend = BACKENDS[backend_name]()
    module = _module("no_params_inputs_only", tmp_path)
    _, hi = _host_case(module)
    first = next(iter(hi))
    narrow = {k: backend.asarray(v.astype(np.float32)) for k, v in hi.items()}
    wide = {k: backend.asarray(v.astype(np.float32) if k == first else v) for k, v in hi.items()}
    along = {k: np.full(np.shape(hi[k]), 0.5 + 0.1 * n) for n, k in enumerate(module.WRT)}
    results = []
    for inputs, dtype in ((wide, np.float64), (narrow, np.float32)):
        vector = {k: backend.asarray(v.astype(dtype)) for k, v in along.items()}
        results.append({entry: call() for entry, call in _calls(module, {}, inputs, vector).items()})
        results.append(module.train_step({}, module.init_optimizer({}), *inputs.values()))
    got, want = dict(_leaves(tuple(results[:2]), "wide")), dict(_leaves(tuple(results[2:]), "wide"))
    assert got.keys() == want.keys()
    for name, value in got.items():
        host = _host(value)
        assert host.dtype == np.float32, (name, host.dtype)
        assert np.array_equal(host, _host(want[name])), name


@pytest.mark.parametrize("spec", list(EVERY_SPEC))
def test_parameters_that_are_no_arrays_are_refused_by_name(spec, tmp_path):
    """A parameter given as a list or a float (not the first one read, which the library check
    sees) is a TypeError naming it, not an AttributeError from the shape test (also where a
    definition is called AttributeError: tests/unseen6/python_builtin_names)."""
    module = _module(spec, tmp_path)
    params, inputs, _ = _case(module, np.asarray)
    for name in list(module.PARAMS)[1:]:
        if f'params["{name}"]' not in inspect.getsource(module.value_and_grad):
            continue  # value_and_grad does not read it
        for value in (_host(params[name]).tolist(), 1.5):
            bad = {**params, name: value}
            with pytest.raises(TypeError, match=rf"^parameter '{re.escape(name)}' must be an array, got "
                                                rf"{type(value).__name__} \(init_params\(\)"):
                module.value_and_grad(bad, *inputs.values())


def test_copied_results_of_tensors_that_require_grad_give_no_warning(tmp_path):
    """A result that is an input requiring grad (`output h` with `h = x`) is copied by cloning:
    no warning, still in PyTorch's graph (found by the tests/unseen6 sweep: torch.asarray(copy=True)
    through array_api_compat warned that 'unspecified requires_grad now defaults to
    obj.requires_grad', PyTorch 2.13)."""
    import warnings

    torch = pytest.importorskip("torch")
    module = _module("aliasrg", tmp_path, "model aliasrg\ninput x : float[B, 3]\nparam W : float[3, 2]\nh = x\n"
                     "loss = mean((x @ W) ^ 2)\noutput h, W\nwrt x\n")
    params = {k: torch.asarray(v).requires_grad_() for k, v in module.init_params(dtype="float64").items()}
    x = torch.ones(2, 3, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h, w = module.forward(params, x)
        module.value_and_grad(params, x)
    assert h.requires_grad and w.requires_grad and h.data_ptr() != x.data_ptr()
    (h.sum() + 2 * w.sum()).backward()
    assert torch.equal(x.grad, torch.ones_like(x)) and torch.equal(params["W"].grad, torch.full((3, 2), 2.0,
                                                                                                 dtype=torch.float64))
