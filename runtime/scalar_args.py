"""The namespace generated modules use for array-API namespaces older than the 2024.12
standard, whose functions take no Python numbers.

Generated code writes numbers as numbers: `xp.maximum(h, 0.0)`, `xp.where(m, 0.0, g)`,
`xp.logaddexp(0.0, z)`. The standard allows that from 2024.12; before it only operators
(`0.5 * x`) took numbers, and a namespace that follows 2023.12 to the letter
(array_api_strict with `api_version="2023.12"`) rejects the calls. Generated modules carry a
copy of `_ScalarArgs` (read from this file's text) and put it in front of such a namespace;
NumPy, CuPy, JAX and PyTorch accept numbers and are used as they are.
`tests/test_portability.py` runs every spec through it.
"""


class _ScalarArgs:
    """An array-API namespace whose functions take no Python numbers: a number passed to a
    binary elementwise function or `where` becomes a 0-d array of the dtype, and on the
    device, of the call's first array operand (for `where`, its first array value, not the
    condition). Other functions (asarray, full_like, clip, ...) took numbers before 2024.12."""

    _TAKE_NUMBERS = frozenset((
        "add", "atan2", "bitwise_and", "bitwise_left_shift", "bitwise_or", "bitwise_right_shift",
        "bitwise_xor", "copysign", "divide", "equal", "floor_divide", "greater", "greater_equal",
        "hypot", "less", "less_equal", "logaddexp", "logical_and", "logical_or", "logical_xor",
        "maximum", "minimum", "multiply", "nextafter", "not_equal", "pow", "remainder",
        "subtract", "where"))

    def __init__(self, xp):
        self._xp = xp

    @classmethod
    def around(cls, namespace, x):
        """`namespace` (that of `x`) as generated code calls it: as it is when its functions
        take Python numbers, else wrapped. The standard allows numbers from 2024.12 and most
        libraries did before, so a namespace declaring an older version is probed once, by
        behaviour rather than by its declared version (array_api_compat declared 2022.12 for
        PyTorch long after it behaved like 2023.12). One whose sum turns float32 into
        float64, as the 2022.12 standard had it, is refused."""
        if getattr(namespace, "__array_api_version__", "2024.12") >= "2024.12":
            return namespace
        try:
            probe = namespace.zeros((1,), dtype=namespace.float32, device=x.device)
            upcasts = namespace.sum(probe).dtype != namespace.float32
        except (AttributeError, TypeError, ValueError, RuntimeError):  # no trial possible: as before
            return namespace
        if upcasts:
            name = getattr(namespace, "__name__", type(namespace).__name__)
            raise TypeError(f"{name} sums float32 arrays to float64 (the 2022.12 array API standard); "
                            "generated modules need the 2023.12 standard or later")
        try:
            namespace.maximum(probe, 0.5)
        except (AttributeError, TypeError, ValueError, RuntimeError):  # how libraries refuse an argument
            return cls(namespace)
        return namespace

    def __getattr__(self, name):
        value = getattr(self._xp, name)
        if name in self._TAKE_NUMBERS:
            value = self._with_arrays(value, 1 if name == "where" else 0)
        setattr(self, name, value)  # looked up and wrapped once
        return value

    def _with_arrays(self, fn, first_value):
        asarray = self._xp.asarray
        number = (bool, int, float, complex)

        def call(*args, **kwargs):
            if not any(type(a) in number for a in args):
                return fn(*args, **kwargs)
            like = next((a for a in args[first_value:] if type(a) not in number), None)
            if like is None:
                return fn(*args, **kwargs)
            return fn(*(asarray(a, dtype=like.dtype, device=like.device) if type(a) in number else a
                        for a in args), **kwargs)

        call.__name__ = getattr(fn, "__name__", "call")
        return call
