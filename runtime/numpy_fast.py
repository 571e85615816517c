"""The namespace generated modules use for NumPy arrays: NumPy itself, with faster
routes for the few calls where NumPy's own path is measurably slow.

Generated modules carry a copy of `_NumPy` (read from this file's text) and use it
whenever the inputs are NumPy arrays; other namespaces are used as they are. Every
route gives NumPy's result up to floating-point rounding order, and
`tests/test_numpy_fast.py` compares each with plain NumPy. The figures below are from
`benchmarks/` runs on this project's machine (OpenBLAS, one thread, float32).
"""

import numpy as np


class _NumPy:
    """NumPy, except where its own route is slow (figures for float32, one thread; in a
    batch-1024 step of the 784-256-256-10 MLP they save under 2%, the matrix products being
    the rest, at batch 8-32 the transposed-product route below saves 4-7%):
    - sum/max/min/astype: NumPy wraps them in Python code; the ufunc methods are 1-2 us
      cheaper a call, much of a small network's step;
    - sum over either axis of a matrix: a matrix-vector product with ones (1024x256
      rows summed: 15 us against 31 us);
    - max along a short last axis (softmax over 10 classes): reduced along the long
      axis of a transposed copy (1024x10: 8 us against 47 us);
    - matmul of small vectors and matrices: ndarray.dot, which skips the generalized-ufunc
      machinery that `@` goes through (2x2 @ 2: 0.27 us against 0.73 us; 64x64 @ 64x64:
      2.7 us against 3.1 us). Large operands keep `@`, which is as fast and for a short
      inner axis faster ((1024, 10) @ (10, 256): 39 us against 45 us);
    - float32 matmul of 6-32 rows by a transposed matrix at least 256 wide, `g @ W.T` in the
      backward of a dense layer at a small batch: OpenBLAS's kernel for that layout is slow
      there, so the product is taken the other way round, `(W @ g.T).T`, and copied back to
      rows (32x256 @ (256x256).T: 27 us against 43 us, 8 rows: 14 against 29 us; the MLP's
      step at batch 32 takes 0.96 of its time, at batch 8 and 16 0.93; that is OpenBLAS's
      SkylakeX kernel, and on an AMD EPYC's Haswell kernel 58 against 60 us, 8 rows 21 against
      27 us). Outside those
      bounds (up to 4 rows, 64 and more, float64, narrow W) the route gains nothing or loses;
    - maximum/minimum against a Python number (relu): against a row of that number, which
      has a vectorized loop where the scalar has none (1024x256: 40 us against 88 us), made
      once per number, length and dtype;
    - where over floats (leaky_relu, elu, prelu, the derivatives of abs, maximum and
      minimum): NumPy's where branches per element, slow on a mask of mixed values, so the
      values are selected as bits instead, `(x1 ^ x2) & mask ^ x2` with the mask all ones where
      the condition holds (1024x256 float32 of random signs: 0.13 ms against 1.1 ms; 128x256:
      16 us against 52), the same bits as NumPy's where, nan payloads and signed zeros
      included. Below 16384 elements NumPy's where is as fast (32x256: 8 us either way);
    - logaddexp of an array and a number (softplus is `logaddexp(0.0, x)`, sigmoid
      `exp(-logaddexp(0.0, -x))`): NumPy's loop is scalar, so it is taken as
      `maximum(x, c) + log1p(exp(-|x - c|))` (1024x256 float32: 0.36 ms against 4.2 ms;
      float64 0.65 against 4.1; 1024 elements: 3.4 us against 9.5), within 2.5 eps of NumPy's
      values and with its infinities and nans. Below 256 elements NumPy's loop is as fast
      (128: 1.6 us against 2.1).

    When a module makes it (once per array type), it also allocates and frees one block just
    under 32 MB, touching none of it. glibc raises its mmap threshold to the size of a freed
    mmap'd block (up to 32 MB) and then keeps up to twice that free before returning memory
    to the system. At its start values (128 and 256 KB) it returns a training step's
    temporaries to the system after every step and page-faults them in again in the next:
    in a fresh process a batch-1024 step of that MLP faults about 1,400 times and takes
    1.36x as long as one after the nudge, which is level with a hand-written step that
    keeps `out=` buffers (benchmarks/fresh_process.py). Thresholds set explicitly (mallopt, MALLOC_MMAP_THRESHOLD_)
    switch glibc's adjustment off and stay as set; other allocators see one allocation.
    The process may then keep up to 64 MB of freed memory for reuse.
    """

    def __init__(self):
        np.empty((32 << 20) - (1 << 16), dtype=np.uint8)  # the allocator nudge (docstring)
        self._rows = {}  # (value, length, dtype) -> the row maximum and minimum compare with

    def __getattr__(self, name):
        value = getattr(np, name)
        setattr(self, name, value)  # looked up once; after that, as fast as a module's
        return value

    @staticmethod
    def sum(x, /, *, axis=None, keepdims=False):
        if axis is None and not keepdims:  # passing no keywords saves 0.08 us of a 0.8 us call
            return np.add.reduce(x, None)
        if x.size >= 4096 and type(axis) is int and x.ndim == 2 and x.dtype.kind == "f" and x.dtype.itemsize >= 4:
            ones = np.ones(x.shape[axis], dtype=x.dtype)
            total = ones @ x if axis in (0, -2) else x @ ones
            return np.expand_dims(total, axis) if keepdims else total
        return np.add.reduce(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def matmul(x1, x2, /):
        if x2.ndim <= 2 and x1.size <= 4096 and x2.size <= 4096:  # dot is matmul while x2 is no stack
            return x1.dot(x2)
        if (x1.ndim == 2 and x2.ndim == 2 and 6 <= x1.shape[0] <= 32 and x1.shape[1] >= 64
                and x2.shape[1] >= 256 and x2.flags.f_contiguous and not x2.flags.c_contiguous
                and x1.dtype == np.float32 and x2.dtype == np.float32):
            return np.ascontiguousarray((x2.T @ x1.T).T)  # g @ W.T for a few rows: OpenBLAS's slow case
        if x2.ndim <= 2 and x1.size <= 4096:
            return x1.dot(x2)
        return x1 @ x2

    @staticmethod
    def max(x, /, *, axis=None, keepdims=False):
        if x.ndim == 2 and x.shape[0] >= 128 and x.shape[1] <= 32 and axis in (1, -1):
            top = np.maximum.reduce(np.ascontiguousarray(x.T), axis=0)
            return top[:, None] if keepdims else top
        return np.maximum.reduce(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def min(x, /, *, axis=None, keepdims=False):  # the label range check: 0.8 us a step
        return np.minimum.reduce(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def astype(x, dtype, /, *, copy=True):
        return x.astype(dtype, copy=copy)

    @staticmethod
    def isdtype(dtype, kind):  # called by the checks only
        try:
            return np.isdtype(dtype, kind)
        except TypeError:  # a dtype of no NumPy kind (ml_dtypes' bfloat16: np.asarray of a JAX array)
            return False

    def maximum(self, x1, x2, /):
        if type(x2) is float and type(x1) is np.ndarray and x1.size >= 4096 and x1.dtype.kind == "f":
            return np.maximum(x1, self._row(x2, x1))
        return np.maximum(x1, x2)

    def minimum(self, x1, x2, /):
        if type(x2) is float and type(x1) is np.ndarray and x1.size >= 4096 and x1.dtype.kind == "f":
            return np.minimum(x1, self._row(x2, x1))
        return np.minimum(x1, x2)

    def _row(self, value, like):
        """A read-only row of `value` as long as `like`'s last axis, made once (np.full costs
        1.3 us, a quarter of a 32x256 relu); float.hex tells 0.0 from -0.0."""
        key = (value.hex(), like.shape[-1], like.dtype)
        row = self._rows.get(key)
        if row is None:
            if len(self._rows) >= 64:  # shapes of many sizes: keep memory bounded
                self._rows.clear()
            row = self._rows[key] = np.full(like.shape[-1:], value, dtype=like.dtype)
            row.flags.writeable = False
        return row

    @staticmethod
    def where(condition, x1, x2, /):
        x = x1 if type(x1) is np.ndarray else x2
        if (type(x) is not np.ndarray or type(condition) is not np.ndarray or condition.size < 16384
                or condition.dtype != np.bool_ or x.dtype.kind != "f" or x.dtype.itemsize not in (4, 8)):
            return np.where(condition, x1, x2)
        other = x2 if x is x1 else x1
        if not (type(other) is float or type(other) is np.ndarray and other.dtype == x.dtype):
            return np.where(condition, x1, x2)  # a NumPy scalar, an int, another dtype: NumPy's promotion
        bits = np.uint32 if x.dtype.itemsize == 4 else np.uint64
        v1 = np.asarray(x1, x.dtype).view(bits)  # an array of that dtype is itself
        v2 = np.asarray(x2, x.dtype).view(bits)
        mask = condition.astype(bits)
        np.negative(mask, out=mask)  # 1 -> all ones
        out = np.bitwise_and(np.bitwise_xor(v1, v2), mask)
        out ^= v2
        return out.view(x.dtype)

    def logaddexp(self, x1, x2, /):
        x, c = (x2, x1) if type(x1) is float else (x1, x2)
        if (type(c) is not float or type(x) is not np.ndarray or x.size < 256 or x.dtype.kind != "f"
                or x.dtype.itemsize < 4 or not -3e38 < c < 3e38):  # c finite in float32 too
            return np.logaddexp(x1, x2)
        top = self.maximum(x, c)
        gap = np.abs(x - c) if c else np.abs(x)
        np.negative(gap, out=gap)
        np.exp(gap, out=gap)
        np.log1p(gap, out=gap)
        gap += top
        return gap
