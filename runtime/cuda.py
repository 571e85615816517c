"""CuPy's fused kernels in generated modules (copied from here, tested here).

The kernel text comes from the compiler (codegen/cuda.py); this is the part that runs: pick
the kernel for the arrays at hand, build it once, and leave other libraries to the portable
code.
"""


class _CudaKernel:
    """A CUDA kernel for a loop of elementwise array operations, used on CuPy arrays only.

    `on(names, params, *arrays)` is the kernel, a cupy.ElementwiseKernel, when the first
    parameter is a CuPy array and each parameter's gradient and optimizer state (`arrays`:
    dicts keyed like `params`) have its dtype and shape; else None, and the caller runs its
    portable code, which casts a value of another dtype into the parameter where the kernel
    would refuse it, and names a state entry of another shape, or a missing one. The kernel
    is built once per array type and compiled by CuPy at its first call (then cached on
    disk), without contracting `a * b + c` into fused multiply-adds, so that it rounds as
    the portable operations do (--fmad=false is NVRTC's; ROCm's compiler gets no options).
    """

    def __init__(self, in_params, out_params, operation, name):
        self.source = (in_params, out_params, operation, name)
        self.kernels = {}

    def on(self, names, params, *arrays):
        first = type(params[names[0]])
        kernel = self.kernels.get(first, False)
        if kernel is False:
            kernel = self.kernels[first] = self._build(first)
        if kernel is None:
            return None
        try:  # a few dict reads a parameter, next to a kernel launch
            for name in names:
                p = params[name]
                if any(a[name].dtype != p.dtype or a[name].shape != p.shape for a in arrays):
                    return None
        except KeyError:  # state without an entry: the portable loop names it (_update_failed)
            return None
        return kernel

    def _build(self, array_type):
        if array_type.__module__.partition(".")[0] != "cupy":
            return None
        import cupy

        options = () if getattr(cupy.cuda.runtime, "is_hip", False) else ("--fmad=false",)
        return cupy.ElementwiseKernel(*self.source, options=options)
