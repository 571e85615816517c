"""CuPy's fused kernels in generated modules (copied from here, tested here).

The kernel text comes from the compiler (codegen/cuda.py); this is the part that runs: pick
the kernel for the arrays at hand, build it once, and leave other libraries to the portable
code.
"""


class _CudaKernel:
    """A CUDA kernel for a loop of elementwise array operations, used on CuPy arrays only.

    `on(a, b)` is the kernel, a cupy.ElementwiseKernel, when `a` is a CuPy array and `b` has
    its dtype; else None, and the caller runs its portable code. The kernel is built once per
    array type and compiled by CuPy at its first call (then cached on disk), without
    contracting `a * b + c` into fused multiply-adds, so that it rounds as the portable
    operations do (--fmad=false is NVRTC's; ROCm's compiler gets no options).
    """

    def __init__(self, in_params, out_params, operation, name):
        self.source = (in_params, out_params, operation, name)
        self.kernels = {}

    def on(self, a, b):
        kernel = self.kernels.get(type(a), False)
        if kernel is False:
            kernel = self.kernels[type(a)] = self._build(type(a))
        return kernel if kernel is not None and b.dtype == a.dtype else None

    def _build(self, array_type):
        if array_type.__module__.partition(".")[0] != "cupy":
            return None
        import cupy

        options = () if getattr(cupy.cuda.runtime, "is_hip", False) else ("--fmad=false",)
        return cupy.ElementwiseKernel(*self.source, options=options)
