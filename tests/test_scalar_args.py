"""The wrapper generated modules put around array-API namespaces older than 2024.12
(`runtime/scalar_args.py`), whose functions take no Python numbers.

array_api_strict with api_version="2023.12" is such a namespace: it rejects
`maximum(x, 0.0)`. Through the wrapper the number becomes a 0-d array of the operand's
dtype, so float32 stays float32, and results equal the 2024.12 namespace's.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from nnc.runtime.scalar_args import _ScalarArgs

xs = pytest.importorskip("array_api_strict")


@pytest.fixture
def strict_2023():
    with xs.ArrayAPIStrictFlags(api_version="2023.12"):
        yield xs


def test_a_2023_12_namespace_rejects_numbers_and_the_wrapper_takes_them(strict_2023):
    x = xs.asarray([-1.5, 0.0, 2.0], dtype=xs.float32)
    with pytest.raises(AttributeError):  # what the wrapper is for (2.6: a float has no .device)
        xs.maximum(x, 0.0)
    xp = _ScalarArgs.around(xs, x)
    assert isinstance(xp, _ScalarArgs)
    for got, want in ((xp.maximum(x, 0.0), [0.0, 0.0, 2.0]), (xp.minimum(1.0, x), [-1.5, 0.0, 1.0]),
                      (xp.where(x > 0.0, x, 0.5), [0.5, 0.5, 2.0]), (xp.where(x > 0.0, 0.5, x), [-1.5, 0.0, 0.5]),
                      (xp.logaddexp(0.0, x), np.logaddexp(0.0, np.array([-1.5, 0.0, 2.0], np.float32)))):
        assert got.dtype == xs.float32
        np.testing.assert_allclose(np.from_dlpack(got), want, rtol=1e-6)


def test_where_takes_its_dtype_from_the_values_not_the_condition(strict_2023):
    g = xs.asarray([1.0, 2.0], dtype=xs.float64)
    xp = _ScalarArgs.around(xs, g)
    assert xp.where(g > 1.5, 0.0, g).dtype == xs.float64


def test_functions_that_always_took_numbers_are_not_wrapped(strict_2023):
    x = xs.asarray([1.0, 2.0], dtype=xs.float32)
    xp = _ScalarArgs.around(xs, x)
    assert xp.full_like is xs.full_like and xp.asarray is xs.asarray and xp.float32 is xs.float32
    np.testing.assert_array_equal(np.from_dlpack(xp.full_like(x, 0.25)), [0.25, 0.25])
    assert xp.maximum(x, x) is not None and xp.maximum.__name__ == "maximum"


def _like_numpy(version: str, **overrides) -> types.SimpleNamespace:
    """NumPy's functions under an older declared version (old array_api_compat, CuPy, JAX)."""
    names = {"maximum": np.maximum, "zeros": np.zeros, "sum": np.sum, "float32": np.float32}
    return types.SimpleNamespace(__array_api_version__=version, **{**names, **overrides})


def test_namespaces_that_take_numbers_are_used_as_they_are(strict_2023):
    x = xs.asarray([1.0])
    with xs.ArrayAPIStrictFlags(api_version="2024.12"):  # the standard allows numbers
        assert _ScalarArgs.around(xs, x) is xs
    # an older declared version on a library that behaves well anyway: probed, not wrapped
    for version in ("2023.12", "2022.12"):
        lenient = _like_numpy(version)
        assert _ScalarArgs.around(lenient, np.zeros(1)) is lenient
    # a namespace the trial itself fails on (no device keyword, say) is used as it is

    def zeros_without_device(shape, dtype=None):
        return np.zeros(shape, dtype)

    untried = _like_numpy("2023.12", zeros=zeros_without_device, maximum=None)
    assert _ScalarArgs.around(untried, np.zeros(1)) is untried


def test_a_namespace_that_sums_float32_to_float64_is_refused():
    with xs.ArrayAPIStrictFlags(api_version="2022.12"):
        with pytest.raises(TypeError, match="array_api_strict sums float32 arrays to float64 .the 2022.12 array "
                                            "API standard.; generated modules need the 2023.12 standard or later"):
            _ScalarArgs.around(xs, xs.asarray([1.0]))
    upcasting = _like_numpy("2022.12", sum=lambda a: np.sum(a, dtype=np.float64))
    with pytest.raises(TypeError, match="SimpleNamespace sums float32 arrays to float64"):
        _ScalarArgs.around(upcasting, np.zeros(1))
