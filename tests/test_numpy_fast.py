"""The NumPy namespace generated modules use (`runtime/numpy_fast.py`) against plain NumPy.

Each faster route must give NumPy's shape and dtype, NumPy's values up to summation
order, and NumPy's NaN and infinity behaviour; shapes are drawn on both sides of the
size thresholds so the fast route and the fallback are both exercised.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnc.runtime.numpy_fast import _NumPy

ROOT = Path(__file__).resolve().parent.parent
xp = _NumPy()
rows = st.sampled_from([1, 3, 64, 127, 128, 300, 1024])
cols = st.sampled_from([1, 2, 10, 32, 33, 256])
float_dtypes = st.sampled_from([np.float32, np.float64])


def _array(seed: int, shape, dtype) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@settings(max_examples=80, deadline=None)
@given(rows, cols, float_dtypes, st.sampled_from([None, 0, 1, -1, -2]), st.booleans(), st.integers(0, 2**16))
def test_sum_matches_numpy(n, m, dtype, axis, keepdims, seed):
    x = _array(seed, (n, m), dtype)
    fast, plain = xp.sum(x, axis=axis, keepdims=keepdims), np.sum(x, axis=axis, keepdims=keepdims)
    assert fast.dtype == plain.dtype and fast.shape == plain.shape
    # the summation order differs: bound the difference by the classic (terms - 1) * eps * sum|x|
    terms = x.size if axis is None else x.shape[axis]
    bound = max(terms - 1, 1) * np.finfo(dtype).eps * np.sum(np.abs(x), axis=axis, keepdims=keepdims)
    assert (np.abs(fast.astype(np.float64) - plain) <= bound).all()


@settings(max_examples=60, deadline=None)
@given(rows, cols, st.sampled_from([np.float32, np.float64, np.int32]), st.sampled_from([None, 0, 1, -1]),
       st.booleans(), st.integers(0, 2**16))
def test_max_and_min_match_numpy_exactly(n, m, dtype, axis, keepdims, seed):
    x = (_array(seed, (n, m), np.float64) * 100).astype(dtype)
    for fast_fn, plain_fn in ((xp.max, np.max), (xp.min, np.min)):
        fast, plain = fast_fn(x, axis=axis, keepdims=keepdims), plain_fn(x, axis=axis, keepdims=keepdims)
        assert fast.dtype == plain.dtype and fast.shape == plain.shape
        np.testing.assert_array_equal(fast, plain)


@pytest.mark.parametrize("reduce", ["max", "min"])
def test_max_and_min_keep_numpys_nan_and_empty_behaviour(reduce):
    x = np.array([[1.0, np.nan], [3.0, 2.0]])
    np.testing.assert_array_equal(getattr(xp, reduce)(x, axis=1), getattr(np, reduce)(x, axis=1))
    assert np.isnan(getattr(xp, reduce)(x))
    with pytest.raises(ValueError, match="zero-size array"):
        getattr(xp, reduce)(np.zeros((0,), np.int64))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([(7,), (5000,), (3, 4), (64, 64), (1024, 256), (2, 64, 64)]), float_dtypes,
       st.sampled_from([0.0, -1.5, 2.0]), st.integers(0, 2**16))
def test_maximum_and_minimum_against_a_number_match_numpy_exactly(shape, dtype, c, seed):
    x = _array(seed, shape, dtype)
    for fast, plain in ((xp.maximum, np.maximum), (xp.minimum, np.minimum)):
        got, want = fast(x, c), plain(x, c)
        assert got.dtype == want.dtype == dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


matmul_shapes = st.sampled_from([
    ((2,), (2,)), ((2, 2), (2,)), ((2,), (2, 3)), ((5, 7), (7, 3)), ((64, 64), (64, 64)),  # ndarray.dot
    ((65, 64), (64, 10)), ((1024, 10), (10, 256)), ((5000,), (5000,)),  # past the size threshold
    ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (4,)),  # stacks: matmul's own semantics
    ((32, 256), (256, 256)), ((8, 64), (64, 784)), ((6, 64), (64, 256)),  # g @ W.T taken the other way
    ((33, 64), (64, 256)), ((5, 64), (64, 256)), ((32, 63), (63, 256)), ((32, 64), (64, 255)),  # just outside
])


@settings(max_examples=80, deadline=None)
@given(matmul_shapes, float_dtypes, float_dtypes, st.booleans(), st.booleans(), st.integers(0, 2**16))
def test_matmul_matches_numpy(shapes, dtype_a, dtype_b, transposed_a, transposed_b, seed):
    (sa, sb) = shapes
    a, b = _array(seed, sa, dtype_a), _array(seed + 1, sb, dtype_b)
    if transposed_a and a.ndim == 2:  # a transposed view, as `x.T` in a backward pass
        a = np.ascontiguousarray(a.T).T
    if transposed_b and b.ndim == 2:  # as `W.T`
        b = np.ascontiguousarray(b.T).T
    fast, plain = xp.matmul(a, b), np.matmul(a, b)
    assert fast.dtype == plain.dtype and np.shape(fast) == np.shape(plain)
    assert fast.ndim < 2 or fast.flags.c_contiguous  # rows, as matmul gives them
    # dot and matmul may add in another order: bound the difference by k * eps * (|a| @ |b|)
    bound = sa[-1] * np.finfo(plain.dtype).eps * np.matmul(np.abs(a), np.abs(b)).astype(np.float64)
    assert (np.abs(np.asarray(fast, np.float64) - plain) <= bound).all()


def test_matmul_keeps_numpy_s_errors_and_nan():
    with pytest.raises(ValueError):
        xp.matmul(np.ones((2, 3)), np.ones((2, 3)))
    a = np.ones((2, 2))
    a[0, 1] = np.nan
    r = xp.matmul(a, np.ones(2))
    assert np.isnan(r[0]) and r[1] == 2.0


def test_the_row_of_a_number_is_made_once_and_tells_signed_zeros_apart():
    """maximum/minimum against a number compare with a cached read-only row; 0.0 and -0.0
    (equal, and equal as dict keys) get rows of their own, so signed zeros come out as NumPy's."""
    fast = type(xp)()
    x = np.zeros((64, 128), np.float32)
    x[::2] = -0.0
    for c in (0.0, -0.0, 0.0, -0.0):
        for mine, numpy_s in ((fast.maximum, np.maximum), (fast.minimum, np.minimum)):
            got, want = mine(x, c), numpy_s(x, c)
            assert np.array_equal(np.signbit(got), np.signbit(want)), (c, mine)
    assert len(fast._rows) == 2 and not any(r.flags.writeable for r in fast._rows.values())
    fast.maximum(np.ones((64, 100), np.float32), 0.0)
    fast.maximum(np.ones((64, 128), np.float64), 0.0)
    assert len(fast._rows) == 4  # one per number, length and dtype


def test_fast_routes_are_taken_and_keep_nan_and_inf():
    x = np.ones((1024, 10), np.float32)
    x[3, 4], x[7, 1], x[9, 2] = np.nan, np.inf, -np.inf
    assert np.isnan(xp.max(x, axis=-1)[3]) and xp.max(x, axis=-1)[7] == np.inf
    col = xp.sum(x, axis=0)
    assert np.isnan(col[4]) and col[1] == np.inf and col[2] == -np.inf
    h = np.full((1024, 256), -1.0, np.float32)
    h[0, 0] = np.nan
    r = xp.maximum(h, 0.0)
    assert np.isnan(r[0, 0]) and (r.ravel()[1:] == 0).all()


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.float16])
def test_other_dtypes_take_numpy_s_own_route(dtype):
    x = (np.arange(128 * 64).reshape(128, 64) % 3).astype(dtype)
    assert xp.sum(x, axis=0).dtype == np.sum(x, axis=0).dtype
    np.testing.assert_array_equal(xp.sum(x, axis=0), np.sum(x, axis=0))


def test_module_copy_is_this_source():
    from nnc.codegen.inline import function_source, module_source

    source = function_source("numpy_fast", "_NumPy")
    assert source.startswith("class _NumPy:") and source in module_source("numpy_fast")


_FAULTS_PER_STEP = """
import resource, sys
import numpy as np

def faults_per_step(step, n=10):
    for _ in range(3):
        step()
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / n

def temporaries():  # what a batch-1024 step of a 256-wide MLP makes and drops: 8 MB in 1 MB arrays
    arrays = [np.ones((1024, 256), np.float32) for _ in range(8)]
    return arrays[-1][0, 0]

print(faults_per_step(temporaries))  # before any generated module has seen a NumPy array
sys.path.insert(0, sys.argv[1])
import mlp_sgd
rng = np.random.default_rng(0)
x, y = rng.random((1024, 784), dtype=np.float32), rng.integers(0, 10, 1024)
params = mlp_sgd.init_params()
state = mlp_sgd.init_optimizer(params)
print(faults_per_step(lambda: mlp_sgd.train_step(params, state, x, y)))
print(faults_per_step(temporaries))
"""


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
                    reason="the allocator nudge in _NumPy is for glibc's malloc")
def test_training_steps_do_not_page_fault_their_temporaries_in_again(tmp_path):
    """In a fresh process glibc returns a step's freed temporaries to the system and faults
    them in again in the next step; the module's NumPy namespace keeps them for reuse."""
    from nnc.api import compile_spec

    spec = ROOT / "benchmarks" / "mlp_sgd.nn"
    (tmp_path / "mlp_sgd.py").write_text(compile_spec(spec.read_text(), str(spec)), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env["OPENBLAS_NUM_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-c", _FAULTS_PER_STEP, str(tmp_path)], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    before, step, after = map(float, out)
    if before < 100:
        pytest.skip(f"this allocator keeps freed temporaries by itself ({before:.0f} faults a step)")
    # 8 MB of 4 KB pages is 2,048 faults; a step that reuses its memory faults almost never
    assert step < 50 and after < 50, (before, step, after)


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


@settings(max_examples=80, deadline=None)
@given(st.sampled_from([(7,), (16383,), (16384,), (128, 128), (1024, 256), (2, 96, 96)]), float_dtypes,
       st.sampled_from(["array", "float", "row", "transposed"]), st.sampled_from(["array", "float", "row"]),
       st.integers(0, 2**16))
def test_where_matches_numpy_bit_for_bit(shape, dtype, kind1, kind2, seed):
    """The bit-select route (floats of one dtype, 16384 elements and more) against np.where:
    the same dtype, shape and bits, with nan payloads, infinities and signed zeros in both
    operands and a condition of random values."""
    rng = np.random.default_rng(seed)
    x = _array(seed, shape, dtype)
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, 8)] = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-40, -1e-310],
                                                   dtype)
    condition = rng.random(shape) < 0.5

    def operand(kind, k):
        if kind == "float":
            return [0.01, -2.5, 0.0][k]
        if kind == "row":
            return np.ascontiguousarray(x[(0,) * (x.ndim - 1)][None] if x.ndim > 1 else x[:1]) * (k + 1)
        if kind == "transposed" and x.ndim == 2:
            return np.ascontiguousarray(x.T).T * -1.0
        return x * (0.5 + k)

    x1, x2 = operand(kind1, 0), operand(kind2, 1)
    got, want = xp.where(condition, x1, x2), np.where(condition, x1, x2)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert _bits(got) == _bits(want)


@pytest.mark.parametrize("x1, x2", [
    (np.arange(20000.0, dtype=np.float32), np.ones(20000, np.float64)),  # two dtypes: NumPy promotes
    (np.arange(20000, dtype=np.int64), 0.5),
    (np.arange(20000.0, dtype=np.float16), 0.5),
    (np.arange(20000.0, dtype=np.float32), np.float64(0.5)),  # a NumPy scalar is no weak Python number
    (np.arange(20000.0, dtype=np.float32), 2),
    (1.0, 2.0),
])
def test_where_leaves_other_operands_to_numpy(x1, x2):
    condition = np.arange(20000) % 3 == 0
    got, want = xp.where(condition, x1, x2), np.where(condition, x1, x2)
    assert got.dtype == want.dtype and _bits(got) == _bits(want)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([(7,), (255,), (256,), (32, 256), (1024, 256), (2, 64, 64)]), float_dtypes,
       st.sampled_from([0.0, -0.0, 1.5, -30.0]), st.booleans(), st.integers(0, 2**16))
def test_logaddexp_with_a_number_matches_numpy(shape, dtype, c, number_first, seed):
    """softplus's logaddexp(0.0, x), taken as maximum + log1p(exp(-|x - c|)): NumPy's values to
    3 eps (relative, or of the smallest normal near 0), its infinities and nans, its dtype."""
    rng = np.random.default_rng(seed)
    x = (_array(seed, shape, dtype) * 30).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, 6)] = np.array([np.nan, np.inf, -np.inf, -0.0, 1e30, -1e30], dtype)
    args = (c, x) if number_first else (x, c)
    with np.errstate(invalid="ignore"):  # NumPy's loop warns of the nan
        got, want = xp.logaddexp(*args), np.logaddexp(*args)
    assert got.dtype == want.dtype and got.shape == want.shape
    info = np.finfo(dtype)
    finite = np.isfinite(want)
    assert np.array_equal(got[~finite], want[~finite], equal_nan=True)
    np.testing.assert_allclose(got[finite], want[finite], rtol=3 * info.eps, atol=info.smallest_normal)


@pytest.mark.parametrize("x1, x2", [
    (0.0, np.arange(5000, dtype=np.int64)),  # an int array: NumPy's float64 result
    (0.0, np.arange(5000.0, dtype=np.float16)),
    (np.float32(0.0), np.arange(5000.0, dtype=np.float32)),  # a NumPy scalar
    (np.arange(5000.0), np.arange(5000.0)),  # two arrays
    (float("inf"), np.arange(5000.0)),  # an infinite number: NumPy's own special cases
    (1e300, np.arange(5000.0, dtype=np.float32)),
])
def test_logaddexp_leaves_other_operands_to_numpy(x1, x2):
    with np.errstate(all="ignore"):
        got, want = xp.logaddexp(x1, x2), np.logaddexp(x1, x2)
    assert got.dtype == want.dtype and _bits(got) == _bits(want)
