"""Input validation that generated modules carry inline (copied from here, tested here).

A generated entry point first runs a cheap filter per input (rank, sizes, a cached dtype
kind); only when that filter fails, or meets a dtype for the first time, does it call
`_check_input`, which checks the input in full and raises an error that names the input,
the expected type and shape and what was passed. Each helper takes the namespace `xp`.
"""

import numpy as np

# (array class, dtype) -> "float" | "int" | "other": filled by _check_input, read by the fast
# filter. The class in the key keeps dtypes of different libraries from being compared
# (array_api_strict warns when its dtypes meet NumPy's), and sends an array class seen for
# the first time (numpy.matrix, a subclass) through _check_input once.
_DTYPE_KINDS = {}


def _check_input(xp, name, x, kind, shape, bound):
    """Check input `name` against `kind[shape]`; return quietly if it is fine.

    `shape` holds ints and dimension names; `bound` maps the names already bound by
    earlier inputs to (size, input that bound it).
    """
    expected = kind + "[" + ", ".join(map(str, shape)) + "]"
    _check_arrays((name, x, expected))
    if isinstance(x, np.matrix):  # its * and ** are matrix products: silently wrong results
        raise TypeError(f"input '{name}' must be an array of {expected}, got numpy.matrix "
                        "(pass np.asarray(x))")
    if isinstance(x, np.ma.MaskedArray):  # the computation would ignore its mask, or fail obscurely
        raise TypeError(f"input '{name}' must be an array of {expected}, got numpy.ma.MaskedArray, whose "
                        "mask would be ignored (pass its .filled(value), or only the unmasked examples)")
    dtype = x.dtype
    key = (x.__class__, dtype)
    if key not in _DTYPE_KINDS:
        _DTYPE_KINDS[key] = ("float" if xp.isdtype(dtype, "real floating")
                             else "int" if xp.isdtype(dtype, "integral") else "other")
    actual = tuple(x.shape)
    got = f"got {dtype} of shape {actual}"
    if len(actual) != len(shape):
        axes = "1 axis" if len(actual) == 1 else f"{len(actual)} axes"
        raise ValueError(f"input '{name}' must be {expected}, {got}: {axes} instead of {len(shape)}")
    seen = dict(bound)
    for axis, (want, size) in enumerate(zip(shape, actual)):
        if isinstance(want, int) and size != want:
            raise ValueError(f"input '{name}' must be {expected}, {got}: axis {axis} has size {size}, not {want}")
        if isinstance(want, str) and want in seen and size != seen[want][0]:
            value, source = seen[want]
            where = "an earlier axis of this input" if source == name else f"input '{source}'"
            raise ValueError(f"input '{name}' must be {expected}, {got}: "
                             f"{want} is {size} here but {value} in {where}")
        if isinstance(want, str):
            seen.setdefault(want, (size, name))
    if _DTYPE_KINDS[key] != kind:
        hint = "class labels must be integers" if kind == "int" else _ml_dtypes_note(dtype) or "convert it with xp.astype"
        raise ValueError(f"input '{name}' must be {expected}, {got}: {dtype} is not {kind} ({hint})")


def _ml_dtypes_note(dtype) -> str:
    """What the dtype checks say of NumPy arrays of ml_dtypes' bfloat16 or float8 types
    (np.asarray of a JAX bfloat16 array), which NumPy stores but does not count as floats;
    "" for any other dtype."""
    if getattr(getattr(dtype, "type", None), "__module__", "").partition(".")[0] != "ml_dtypes":
        return ""
    return ("an ml_dtypes type, which NumPy stores but does not compute with: cast it with "
            "x.astype(np.float32); JAX and PyTorch arrays of bfloat16 are computed in bfloat16")


def _check_arrays(*inputs):
    """Raise TypeError naming the first of (name, value, expected) that is not an array.

    Called when the fast filter met an AttributeError (a list, a number, None ...)."""
    for name, x, expected in inputs:
        if not all(hasattr(x, a) for a in ("shape", "dtype", "ndim")):
            raise TypeError(f"input '{name}' must be an array of {expected}, got {type(x).__name__}")


def _check_labels(xp, name, y, classes):
    """Check that the class labels in `y` lie in [0, classes).

    Under a tracing compiler (jax.jit) or torch.func.vmap the values are not known to Python
    (no int() of them): they go unchecked."""
    try:
        low, high = int(xp.min(y)), int(xp.max(y))
    except (NotImplementedError, RuntimeError):  # PyTorch reduces no uint16/32/64 tensors
        y = xp.astype(y, xp.int64)
        try:
            low, high = int(xp.min(y)), int(xp.max(y))
            if low < 0:  # unsigned labels of 2**63 and more, which the cast made negative
                raise ValueError(f"input '{name}' holds class labels in [0, {classes}), got a value of "
                                 "2**63 or more")
        except RuntimeError as exc:  # int() of a batched tensor, which failed the first time too
            if "vmap" in str(exc):  # under torch.func.vmap: PyTorch says so only in the message
                return
            raise
    except TypeError:
        if type(y).__name__.endswith("Tracer"):  # JAX's abstract values: no int() of them
            return
        raise
    if low < 0 or high >= classes:
        raise ValueError(f"input '{name}' holds class labels in [0, {classes}), "
                         f"got values from {low} to {high}")


def _check_params(params, shapes, spec, xp=None):
    """Raise ValueError naming the first parameter whose shape is not the one `spec` (the
    file's name) makes (`shapes`: PARAMS), TypeError for one that is no array or, given the
    namespace `xp`, no float array; called when an entry point's inline test fails (the
    dtype test: when a float input's dtype is not the first parameter's)."""
    for name, shape in shapes.items():
        if name in params and not hasattr(params[name], "shape"):
            raise TypeError(f"parameter '{name}' must be an array, got {type(params[name]).__name__} "
                            "(init_params() and load_params() make this model's parameters)")
        actual = tuple(params[name].shape) if name in params else shape
        if actual != shape:
            raise ValueError(f"parameter '{name}' has shape {actual}, but {spec} makes it {shape} "
                             "(init_params() and load_params() make this model's parameters)")
        if xp is not None and name in params and not xp.isdtype(params[name].dtype, "real floating"):
            note = _ml_dtypes_note(params[name].dtype)
            raise TypeError(f"parameter '{name}' has dtype {params[name].dtype}; parameters are floats "
                            "(float inputs would be cast to it): init_params() and load_params() make "
                            "this model's parameters" + (f"; {params[name].dtype} is {note}" if note else ""))


def _check_tangents(arg, tangents, shapes, like=None, check_library=None):
    """Raise ValueError naming the first entry of `tangents` (jvp's tangents, hvp's vector:
    `arg`) whose shape is not that of its parameter or input (`shapes`), TypeError for one that
    is no array or, given `like` (an array the module's namespace was found from) and the
    module's `check_library`, an array of another library, where the arithmetic mixing them
    would raise something obscure."""
    for name, shape in shapes.items():
        if name not in tangents:
            continue
        t = tangents[name]
        if not hasattr(t, "shape"):
            raise TypeError(f"{arg}['{name}'] must be an array, got {type(t).__name__}")
        if check_library is not None and t.__class__ is not like.__class__:
            check_library(like, t, f"{arg}['{name}']")
        actual = tuple(t.shape)
        if actual != tuple(shape):
            raise ValueError(f"{arg}['{name}'] has shape {actual}, but {name} has shape {tuple(shape)}: "
                             "a direction has the shape of what it moves")


def _check_directions(xp, arg, directions):
    """Raise TypeError naming the first entry of `directions` (jvp's tangents, hvp's vector:
    `arg`) that is complex, whose imaginary part the cast to the parameters' dtype would drop
    (with only NumPy's ComplexWarning). Called when a dtype differs from the parameters'."""
    for name, d in directions.items():
        try:
            complex_ = xp.isdtype(d.dtype, "complex floating")
        except (AttributeError, TypeError, ValueError):  # no array, or a dtype the namespace does not know
            continue
        if complex_:
            raise TypeError(f"{arg}['{name}'] has dtype {d.dtype}: directions are real, and casting it to the "
                            "parameters' dtype would drop its imaginary part (pass its .real)")


def _check_writable(what, a):
    """Raise ValueError when train_step could not update `a` (`what`: "parameter 'h1.W'") in
    place: a read-only NumPy array (np.load(..., mmap_mode="r"), np.broadcast_to, flags.writeable
    set False), a PyTorch inference tensor outside torch.inference_mode(), or a PyTorch view whose
    elements share memory (expand()). Called by init_optimizer, once per parameter, so that the
    first step does not fail half done; JAX's and other immutable arrays are rebound instead."""
    if isinstance(a, np.ndarray):
        if not a.flags.writeable:
            raise ValueError(f"{what} is a read-only array (np.load(..., mmap_mode='r') and np.broadcast_to "
                             "make one): train_step updates parameters and optimizer state in place; "
                             "pass a writable copy (np.array(p))")
        return
    if type(a).__module__.partition(".")[0] != "torch":
        return
    import torch

    if a.is_inference() and not torch.is_inference_mode_enabled():
        raise ValueError(f"{what} is an inference tensor (made under torch.inference_mode()), which PyTorch "
                         "updates in place only in inference mode: train_step updates parameters and "
                         "optimizer state in place; pass p.clone() made outside inference mode")
    if any(step == 0 and size > 1 for step, size in zip(a.stride(), a.shape)):
        raise ValueError(f"{what} is an expanded view (a stride of 0: its elements share memory), which "
                         "cannot be updated in place: train_step updates parameters and optimizer state "
                         "in place; pass p.clone()")


def _check_trainable(what, p, namespace):
    """Raise when train_step could not update parameter `p` (`what`: "parameter 'h1.W'") in
    place: an array it cannot write (_check_writable), or one of integers or bools, which no
    float update fits in (NumPy's casting and PyTorch's refuse it, at the first step, after the
    parameters before it were updated), or of float16 or bfloat16, which train silently wrong
    (adam's eps is 0 in float16: nan where a gradient is 0; small updates are lost).
    `namespace` finds an array's namespace (the module's _namespace). Called by init_optimizer, once per parameter."""
    _check_writable(what, p)
    if not hasattr(p, "dtype"):
        return
    if str(p.dtype).rpartition(".")[2] in ("float16", "bfloat16"):
        raise TypeError(f"{what} has dtype {p.dtype}: train_step trains float32 or float64 parameters, not "
                        "half precision (an update below half a unit in the last place is lost, and adam's "
                        "eps of 1e-8 is 0 in float16); train float32 ones (init_params() makes them) and "
                        "cast them for inference, which forward and loss compute in any float dtype")
    if not namespace(p).isdtype(p.dtype, "real floating"):
        note = _ml_dtypes_note(p.dtype)
        raise TypeError(f"{what} has dtype {p.dtype}; parameters are floats: init_params() and "
                        "load_params() make this model's parameters" + (f"; {p.dtype} is {note}" if note else ""))


def _check_state(state, keys, optimizer, params=None, first=None, check_library=None):
    """Raise an error saying how `state` differs from the one init_optimizer makes for
    `optimizer` (`keys`: its entries); called when train_step finds other keys, so extra
    entries a caller added pass, or, given `params` and the name of the first parameter
    (`first`), when its entry in a state buffer is of another array class than it: state made
    for parameters of another library (PyTorch state, NumPy parameters) is a TypeError before
    anything is updated, where the update of that parameter raised the libraries' own message
    (NumPy's DeprecationWarning first) after changing its state, or turned NumPy parameters
    into JAX arrays (JAX state). `check_library` (the module's _check_library) decides: classes
    of one library (torch.nn.Parameter and Tensor) pass, and so does NumPy state of JAX
    parameters, which the first step makes JAX arrays."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be the dict init_optimizer(params) makes, got {type(state).__name__}")
    missing = [key for key in sorted(keys) if key not in state]
    if missing:
        held = ", ".join(f"'{k}'" for k in state) or "nothing"
        raise ValueError(f"state has no {', '.join(repr(k) for k in missing)} (it holds {held}): it is not "
                         f"the state of {optimizer}(), which init_optimizer(params) makes")
    if params is None or first not in params:
        return  # a missing parameter: the gradient's KeyError names it
    p = params[first]
    for key in sorted(keys - {"step"}):
        buffers = state[key]
        if not isinstance(buffers, dict):
            raise TypeError(f"state['{key}'] must be the dict of arrays init_optimizer(params) makes, "
                            f"got {type(buffers).__name__}")
        if first not in buffers:
            continue  # the update loop names the missing entry (_update_failed)
        check_library(p, buffers[first], f"state['{key}']['{first}']")


def _update_failed(name, params, state, exc):
    """Raise an error naming parameter `name`, whose in-place update in train_step's loop raised
    `exc`: an optimizer state entry of another shape (state made for other parameters), an array
    that cannot be written (_check_writable), or else `exc` itself, with the name. The parameters
    before `name` in PARAM_NAMES have been updated by then. With `name` None (the plain-SGD
    step, which updates every parameter in one block), the first that cannot be written."""
    done = "; the parameters before it were updated, the step count was not"
    kind = next(k for k in (ValueError, TypeError, RuntimeError, KeyError) if isinstance(exc, k))  # as raised
    if name is None:
        try:
            for key, p in params.items():
                _check_writable(f"parameter '{key}'", p)
        except ValueError as error:
            raise ValueError(f"{error}{done}") from exc
        raise kind(f"train_step could not update the parameters in place: {exc}") from exc
    p = params[name]
    entries = [(f"state['{key}']['{name}']", buffers[name]) for key, buffers in state.items()
               if isinstance(buffers, dict) and name in buffers]
    for what, b in entries:
        if tuple(getattr(b, "shape", ())) != tuple(p.shape):
            raise ValueError(f"{what} has shape {tuple(getattr(b, 'shape', ()))}, but parameter '{name}' has "
                             f"shape {tuple(p.shape)}: init_optimizer(params) makes the state of these "
                             f"parameters{done}") from exc
    try:
        for what, a in [(f"parameter '{name}'", p), *entries]:
            _check_writable(what, a)
    except ValueError as error:
        raise ValueError(f"{error}{done}") from exc
    lacking = [key for key, buffers in state.items() if isinstance(buffers, dict) and name not in buffers]
    if lacking and kind is KeyError:  # a state buffer without an entry for this parameter
        raise ValueError(f"state['{lacking[0]}'] has no entry for parameter '{name}': init_optimizer(params) "
                         f"makes one for each parameter{done}") from exc
    hint = ""
    if getattr(p, "requires_grad", False):  # PyTorch refuses in-place updates of leaves that require grad
        hint = " (call train_step under torch.no_grad(), as torch.optim steps)"
    raise kind(f"train_step could not update parameter '{name}' in place: {exc}{hint}{done}") from exc
