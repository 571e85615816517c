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


def test_namespaces_that_take_numbers_are_used_as_they_are(strict_2023):
    x = xs.asarray([1.0])
    with xs.ArrayAPIStrictFlags(api_version="2024.12"):  # the standard allows numbers
        assert _ScalarArgs.around(xs, x) is xs
    # an older version string on a library that takes numbers anyway (JAX, CuPy): probed
    lenient = types.SimpleNamespace(__array_api_version__="2023.12", maximum=np.maximum, zeros=np.zeros)
    assert _ScalarArgs.around(lenient, np.zeros(1)) is lenient


def test_a_namespace_older_than_2023_12_is_refused():
    with xs.ArrayAPIStrictFlags(api_version="2022.12"):
        with pytest.raises(TypeError, match="follows the 2022.12 array API standard; generated modules need 2023.12"):
            _ScalarArgs.around(xs, xs.asarray([1.0]))
