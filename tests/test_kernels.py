"""The array-API helpers generated modules carry (runtime/kernels.py), on NumPy and array_api_strict."""

from __future__ import annotations

import numpy as np
import pytest

from nnc.runtime.kernels import _log_softmax, _onehot, _softmax

xps = pytest.importorskip("array_api_strict")


@pytest.mark.parametrize("xp", [np, xps], ids=["numpy", "array_api_strict"])
@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "int64", "uint64"])
def test_onehot_has_one_hit_per_label_whatever_the_label_dtype(xp, dtype):
    classes = 257  # more than int8 and uint8 can count to
    top = min(classes - 1, np.iinfo(dtype).max)
    labels = np.array([0, 1, top, 5], dtype=dtype)
    got = np.from_dlpack(_onehot(xp, xp.asarray(labels), classes, xp.asarray(np.zeros(3))))
    want = np.zeros((4, classes))
    want[np.arange(4), labels.astype(np.int64)] = 1.0
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("xp", [np, xps], ids=["numpy", "array_api_strict"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_over_an_empty_axis_is_empty(xp, axis):
    x = xp.asarray(np.zeros((0, 4) if axis == 0 else (3, 0)))
    for fn in (_softmax, _log_softmax):
        out = fn(xp, x, axis)
        assert out.shape == x.shape
    y = xp.asarray(np.zeros((0, 4)))  # empty, but not along a non-empty reduced axis
    assert _softmax(xp, y, 1).shape == (0, 4) and _log_softmax(xp, y, -1).shape == (0, 4)


def test_softmax_matches_its_definition():
    x = np.random.default_rng(0).normal(size=(3, 5)) * 30
    for axis in (0, 1):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        np.testing.assert_allclose(_softmax(np, x, axis), e / e.sum(axis=axis, keepdims=True), rtol=1e-13)
        np.testing.assert_allclose(_log_softmax(np, x, axis), np.log(e / e.sum(axis=axis, keepdims=True)),
                                   rtol=1e-12, atol=1e-12)
