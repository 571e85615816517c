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
    whole 784-256-256-10 training step they save under 2%, the matrix products being the rest):
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
    - maximum/minimum against a Python number (relu): against a row of that number, which
      has a vectorized loop where the scalar has none (1024x256: 40 us against 88 us).
    """

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
        if x2.ndim <= 2 and x1.size <= 4096:  # dot(x1, x2) is matmul's result while x2 is no stack
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
    def maximum(x1, x2, /):
        if type(x2) is float and type(x1) is np.ndarray and x1.size >= 4096 and x1.dtype.kind == "f":
            return np.maximum(x1, np.full(x1.shape[-1:], x2, dtype=x1.dtype))
        return np.maximum(x1, x2)

    @staticmethod
    def minimum(x1, x2, /):
        if type(x2) is float and type(x1) is np.ndarray and x1.size >= 4096 and x1.dtype.kind == "f":
            return np.minimum(x1, np.full(x1.shape[-1:], x2, dtype=x1.dtype))
        return np.minimum(x1, x2)
