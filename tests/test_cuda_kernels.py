"""CuPy's fused update kernels, run where no GPU is: the kernel text compiled by g++.

A generated module's train_step runs its update loop on CuPy as one CUDA kernel a parameter
(codegen/cuda.py). Here each kernel's C++ body is compiled for the CPU, in the frame CuPy's
ElementwiseKernel puts it in (inputs as `const T &` references to the element, outputs as
`T &`, scalars as their declared type), with FMA contraction off as the kernel is compiled on
the GPU. train_step then takes its CuPy branch with that compiled body in place of CuPy's
kernel, and must give the portable loop's results bit for bit: the operations the kernels
use (+ - * / sqrt) are correctly rounded on both, and both run them in the same order.
tests/test_portability.py runs the real kernels on a GPU (benchmarks/gpu.sh).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from helpers import compile_and_load
from nnc.codegen.cuda import MAX_INLINE, elementwise_kernel
from nnc.ir.core import Eqn, Lit, Size, Var
from nnc.ir.interpret import evaluate
from nnc.optim import OPTIMIZERS
from nnc.primitives import PRIMITIVES

CXX = shutil.which("g++") or shutil.which("c++")
needs_cxx = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++) to compile the kernels' bodies for the CPU")

SPEC = """\
model fusedtest
input  x : float[B, 3]
input  y : int[B]
h      = tanh(dense(x, 4))
logits = dense(h, 3)
loss   = cross_entropy(logits, y)
optimizer {optimizer}
"""

# Every optimizer with state, and the settings that change its update's arithmetic.
OPTIMIZER_CASES = [
    "sgd(lr=0.1, momentum=0.9)",
    "sgd(lr=0.1, momentum=0.9, nesterov=true, weight_decay=0.01)",
    "sgd(lr=0.1, schedule=exponential, gamma=0.9)",
    "sgd(lr=0.1, clip_norm=0.5)",
    "adam(lr=0.01)",
    "adam(lr=0.01, weight_decay=0.1, schedule=cosine, total_steps=5, clip_norm=1.0)",
    "adamw(lr=0.01)",
    "rmsprop(lr=0.01)",
    "rmsprop(lr=0.01, momentum=0.5, weight_decay=0.01)",
    "adagrad(lr=0.1)",
    "adadelta(lr=1.0, weight_decay=0.01)",
    "sgd(lr=0.05, momentum=0.5, schedule=step, step_size=2, gamma=0.5)",
]
_CTYPES = {"float64": "double", "float32": "float"}


def _params(decls: str) -> list[tuple[str, str]]:
    return [tuple(p.split()) for p in decls.split(",") if p.strip()]


class CpuKernel:
    """An ElementwiseKernel's source compiled for the CPU: called as CuPy calls it, with the
    in-parameters then the arrays written in place (NumPy arrays here, one dtype, one shape)."""

    def __init__(self, source: tuple[str, str, str, str], tmp_path, dtype):
        in_params, out_params, operation, name = source
        self.ins, self.outs = _params(in_params), _params(out_params)
        self.dtype = np.dtype(dtype)
        element = _CTYPES[self.dtype.name]
        lines = []
        arrays = [(t, n) for t, n in self.ins if t == "T"] + self.outs
        for k, (t, n) in enumerate(arrays):
            const = "const " if (t, n) in self.ins else ""
            lines.append(f"{const}T &{n} = arrays[{k}][i];")
        scalars = [(t, n) for t, n in self.ins if t != "T"]
        for k, (t, n) in enumerate(scalars):
            lines.append(f"const {_CTYPES[t]} {n} = ({_CTYPES[t]})scalars[{k}];")
        code = (
            "#include <cmath>\nusing std::sqrt;\n"
            f"typedef {element} T;\n"
            f'extern "C" void {name}(long n, T **arrays, const double *scalars) {{\n'
            "  for (long i = 0; i < n; ++i) {\n" + "".join(f"    {s}\n" for s in lines)
            + operation + "\n  }\n}\n"
        )
        src, lib = tmp_path / f"{name}_{element}.cpp", tmp_path / f"{name}_{element}.so"
        src.write_text(code)
        # -ffp-contract=off: no fused multiply-add, as the kernel is compiled on the GPU (--fmad=false)
        subprocess.run([CXX, "-std=c++17", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(lib), str(src)],
                       check=True, capture_output=True, text=True)
        self.fn = getattr(ctypes.CDLL(str(lib)), name)
        self.calls = 0

    def __call__(self, *args):
        assert len(args) == len(self.ins) + len(self.outs)
        ins, outs = args[:len(self.ins)], args[len(self.ins):]
        arrays = [a for (t, _), a in zip(self.ins, ins) if t == "T"] + list(outs)
        scalars = [float(a) for (t, _), a in zip(self.ins, ins) if t != "T"]
        shape = outs[0].shape
        for a in arrays:  # what ElementwiseKernel checks, and what this frame assumes
            assert a.dtype == self.dtype and a.shape == shape and a.flags.c_contiguous, (a.dtype, a.shape)
        for a in outs:
            assert a.flags.writeable
        pointers = (ctypes.c_void_p * len(arrays))(*(a.ctypes.data for a in arrays))
        self.fn(ctypes.c_long(int(np.prod(shape, dtype=np.int64))), pointers,
                (ctypes.c_double * max(1, len(scalars)))(*scalars))
        self.calls += 1


def _steps(module, dtype, kernel=None, steps=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3)).astype(dtype)
    y = rng.integers(0, 3, size=5)
    params = module.init_params(1, dtype=dtype.__name__)
    state = module.init_optimizer(params)
    module._CUDA_UPDATE.kernels.clear()
    if kernel is not None:
        module._CUDA_UPDATE.kernels[np.ndarray] = kernel  # train_step takes its CuPy branch
    losses = [float(module.train_step(params, state, x, y)) for _ in range(steps)]
    module._CUDA_UPDATE.kernels.clear()
    return losses, params, state


@needs_cxx
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("optimizer", OPTIMIZER_CASES)
def test_fused_update_gives_the_portable_loops_results_bit_for_bit(optimizer, dtype, tmp_path):
    module = compile_and_load(SPEC.format(optimizer=optimizer), tmp_path, "fusedtest")
    assert hasattr(module, "_CUDA_UPDATE"), "this optimizer's update should have a kernel"
    kernel = CpuKernel(module._CUDA_UPDATE.source, tmp_path, dtype)
    ref_losses, ref_params, ref_state = _steps(module, dtype)
    losses, params, state = _steps(module, dtype, kernel)
    assert kernel.calls == 3 * len(module.PARAM_NAMES)
    assert losses == ref_losses
    for name in module.PARAM_NAMES:
        assert params[name].dtype == dtype
        np.testing.assert_array_equal(params[name], ref_params[name], err_msg=name)
        for buf, values in ref_state.items():
            if isinstance(values, dict):
                np.testing.assert_array_equal(state[buf][name], values[name], err_msg=f"{buf}[{name}]")
    assert state["step"] == ref_state["step"] == 3
    assert not np.array_equal(params[module.PARAM_NAMES[0]], module.init_params(1, dtype=dtype.__name__)[
        module.PARAM_NAMES[0]]), "the steps changed nothing: the comparison would prove nothing"


@needs_cxx
def test_a_state_buffer_of_another_dtype_gets_the_portable_loop(tmp_path):
    """train_step hands the kernel check every array the kernel would write: a float64 state
    buffer beside float32 parameters (the loop casts into it) takes the loop, not the kernel."""
    module = compile_and_load(SPEC.format(optimizer="sgd(lr=0.1, momentum=0.9)"), tmp_path, "fusedtest")
    kernel = CpuKernel(module._CUDA_UPDATE.source, tmp_path, np.float32)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)).astype(np.float32), rng.integers(0, 3, size=5)
    params = module.init_params(1)
    state = module.init_optimizer(params)
    last = module.PARAM_NAMES[-1]
    state["velocity"][last] = state["velocity"][last].astype(np.float64)
    module._CUDA_UPDATE.kernels[np.ndarray] = kernel
    try:
        module.train_step(params, state, x, y)
        assert kernel.calls == 0
        state["velocity"][last] = state["velocity"][last].astype(np.float32)
        module.train_step(params, state, x, y)
        assert kernel.calls == len(module.PARAM_NAMES)
    finally:
        module._CUDA_UPDATE.kernels.clear()


@needs_cxx
def test_state_of_other_parameters_is_named_before_any_kernel_runs(tmp_path):
    """A state entry of another shape, or none, for the last parameter: the kernel is not
    called for any parameter, and train_step's error names the entry (from the portable loop,
    as on NumPy), not CuPy's shape error or a bare KeyError."""
    module = compile_and_load(SPEC.format(optimizer="sgd(lr=0.1, momentum=0.9)"), tmp_path, "fusedtest")
    kernel = CpuKernel(module._CUDA_UPDATE.source, tmp_path, np.float32)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)).astype(np.float32), rng.integers(0, 3, size=5)
    last = module.PARAM_NAMES[-1]
    module._CUDA_UPDATE.kernels[np.ndarray] = kernel
    try:
        for odd, message in [(np.zeros(1, np.float32), rf"state\['velocity'\]\['{last}'\] has shape \(1,\)"),
                             (None, rf"state\['velocity'\] has no entry for parameter '{last}'")]:
            params = module.init_params(1)
            state = module.init_optimizer(params)
            if odd is None:
                del state["velocity"][last]
            else:
                state["velocity"][last] = odd
            with pytest.raises(ValueError, match=message):
                module.train_step(params, state, x, y)
            assert kernel.calls == 0
    finally:
        module._CUDA_UPDATE.kernels.clear()


def test_every_stateful_optimizer_is_covered():
    names = {case.split("(")[0] for case in OPTIMIZER_CASES}
    stateful = {name for name, opt in OPTIMIZERS.items() if opt.direction is None and name != "sgd"}
    assert stateful <= names


def test_updates_that_are_one_operation_get_no_kernel(tmp_path):
    # plain SGD is `p -= step` (the step comes pre-scaled): one launch already
    module = compile_and_load(SPEC.format(optimizer="sgd(lr=0.1)"), tmp_path, "fusedtest")
    assert not hasattr(module, "_CUDA_UPDATE")
    assert "kernel" not in module.train_step.__code__.co_varnames


def test_the_portable_loop_runs_for_every_array_that_is_not_cupy(tmp_path):
    module = compile_and_load(SPEC.format(optimizer="adam(lr=0.01)"), tmp_path, "fusedtest")
    params = module.init_params()
    state = module.init_optimizer(params)
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    assert module._CUDA_UPDATE.on(module.PARAM_NAMES, params, grads, state["exp_avg"]) is None
    assert module._CUDA_UPDATE.kernels == {np.ndarray: None}  # decided once per array type


def test_a_cupy_array_gets_an_elementwise_kernel_compiled_without_fma(tmp_path, monkeypatch):
    """The selection and construction of the kernel, with a stand-in for CuPy (which needs a
    GPU): the ElementwiseKernel gets the module's source and --fmad=false; where any
    parameter's gradient or state has another dtype than the parameter, the portable loop
    runs (it casts into the parameter; the kernel would raise), and so it does where an entry
    has another shape or is missing (the loop's errors name them)."""
    module = compile_and_load(SPEC.format(optimizer="adam(lr=0.01)"), tmp_path, "fusedtest")
    made = []
    fake = types.ModuleType("cupy")
    fake.ElementwiseKernel = lambda *source, **options: made.append((source, options)) or "kernel"
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(is_hip=False))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    array_type = type("ndarray", (), {"__module__": "cupy._core.core"})

    def arrays(dtype):
        made = {}
        for name in module.PARAM_NAMES:
            made[name] = array_type()
            made[name].dtype, made[name].shape = np.dtype(dtype), (2,)
        return made

    names = module.PARAM_NAMES
    params, grads, exp_avg, exp_avg_sq = (arrays(np.float32) for _ in range(4))
    assert module._CUDA_UPDATE.on(names, params, grads, exp_avg, exp_avg_sq) == "kernel"
    assert module._CUDA_UPDATE.on(names, params, grads, exp_avg, exp_avg_sq) == "kernel"
    assert made == [(module._CUDA_UPDATE.source, {"options": ("--fmad=false",)})]
    for odd in (grads, exp_avg, exp_avg_sq):
        odd[names[-1]].dtype = np.dtype(np.float64)  # the last parameter's, not the first's
        assert module._CUDA_UPDATE.on(names, params, grads, exp_avg, exp_avg_sq) is None
        odd[names[-1]].dtype = np.dtype(np.float32)
        odd[names[-1]].shape = (1,)  # would broadcast, or fail in CuPy with its own message
        assert module._CUDA_UPDATE.on(names, params, grads, exp_avg, exp_avg_sq) is None
        odd[names[-1]].shape = (2,)
        entry = odd.pop(names[-1])  # state made for other parameters: the loop names it
        assert module._CUDA_UPDATE.on(names, params, grads, exp_avg, exp_avg_sq) is None
        odd[names[-1]] = entry
    for p in params.values():  # all float64 together is fine again
        p.dtype = np.dtype(np.float64)
    for d in (grads, exp_avg, exp_avg_sq):
        for a in d.values():
            a.dtype = np.dtype(np.float64)
    assert module._CUDA_UPDATE.on(names, params, grads, exp_avg, exp_avg_sq) == "kernel"


def _eqn(prim, *inputs, out):
    return Eqn(prim, tuple(inputs), out)


def test_kernel_text_from_equations():
    p, g, v = (Var(n, ("n",), "float") for n in ("p", "g", "velocity"))
    lr = Var("lr", (), "float", host=True)
    t1, t2, t3 = (Var(n, ("n",), "float", temp=True) for n in ("t1", "t2", "t3"))
    eqns = [_eqn("mul", Lit(0.9), v, out=t1), _eqn("add", t1, g, out=t2), _eqn("mul", lr, t2, out=t3),
            _eqn("sub", p, t3, out=Var("new", ("n",), "float"))]
    kernel = elementwise_kernel("m_sgd", eqns, {"p": eqns[-1].out, "velocity": t2})
    assert kernel.in_params == "T g, float64 lr"
    assert kernel.out_params == "T p, T velocity"
    assert kernel.body == (
        "const T new_velocity = (T)0.9 * velocity + g;",
        "const T new_p = p - (T)lr * new_velocity;",
        "p = new_p;",
        "velocity = new_velocity;",
    )
    assert (kernel.name, kernel.arrays, kernel.scalars, kernel.outputs) == (
        "nnc_m_sgd", ("g",), ("lr",), ("p", "velocity"))


def test_kernel_locals_for_values_read_twice_and_long_expressions():
    p, g = Var("p", ("n",), "float"), Var("g", ("n",), "float")
    s = Var("s", ("n",), "float", temp=True)
    long = [Var(f"u{k}", ("n",), "float", temp=True) for k in range(8)]
    eqns = [_eqn("add", g, Lit(1.0), out=s), _eqn("square", s, out=long[0])]  # square reads s twice
    for k in range(1, 8):
        eqns.append(_eqn("add", long[k - 1], Lit(float(k)), out=long[k]))
    eqns.append(_eqn("sub", p, long[-1], out=Var("q", ("n",), "float")))
    kernel = elementwise_kernel("m", eqns, {"p": eqns[-1].out})
    assert kernel.body[0] == "const T s = g + (T)1.0;"
    assert kernel.body[1].startswith("const T ") and " = s * s" in kernel.body[1]
    assert all(len(line) <= MAX_INLINE + 30 for line in kernel.body)
    assert kernel.body[-1] == "p = new_p;"


def test_names_that_c_reserves_are_renamed():
    p = Var("p", ("n",), "float")
    new, double = Var("new", ("n",), "float", temp=True), Var("double", ("n",), "float", temp=True)
    eqns = [_eqn("add", p, p, out=double), _eqn("mul", double, double, out=new),
            _eqn("sub", p, new, out=Var("q", ("n",), "float"))]
    kernel = elementwise_kernel("m", eqns, {"p": eqns[-1].out})
    assert kernel.body[0] == "const T double_ = p + p;"


@pytest.mark.parametrize("atom", [Size(("B",)), Var("k", ("n",), "int"), Lit(float("inf"))],
                         ids=["size", "int array", "inf"])
def test_operands_no_kernel_parameter_carries_give_no_kernel(atom):
    p = Var("p", ("n",), "float")
    eqns = [_eqn("mul", p, atom, out=Var("a", ("n",), "float", temp=True))]
    assert elementwise_kernel("m", eqns, {"p": eqns[0].out}) is None


def test_primitives_without_a_cuda_form_give_no_kernel():
    p = Var("p", ("n",), "float")
    eqns = [_eqn("exp", p, out=Var("a", ("n",), "float", temp=True))]
    assert PRIMITIVES["exp"].cuda is None
    assert elementwise_kernel("m", eqns, {"p": eqns[0].out}) is None


@needs_cxx
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("prim", sorted(name for name, prim in PRIMITIVES.items() if prim.cuda is not None))
def test_each_primitives_cuda_form_computes_its_numpy_emission(prim, dtype, tmp_path):
    """Registry-driven: every primitive with a CUDA form, on random values (of the domains its
    examples declare), against its Python emission on NumPy, bit for bit."""
    primitive = PRIMITIVES[prim]
    example = primitive.examples[0]
    rng = np.random.default_rng(3)
    operands = tuple(Var(f"a{k}", ("n",), "float") for k in range(primitive.arity))
    eqn = Eqn(prim, operands, Var("r", ("n",), "float"), example.params)
    kernel = elementwise_kernel(prim, [eqn], {"out": eqn.out})
    assert kernel is not None and kernel.arrays == tuple(a.name for a in operands)
    values = {}
    for a, (_, domain) in zip(operands, example.inputs):
        v = rng.normal(size=257)
        values[a.name] = (np.abs(v) + 0.1 if domain == "positive" else v).astype(dtype)
    expected = evaluate([eqn], values)["r"]  # the primitive's Python emission, on NumPy
    result = np.zeros(257, dtype=dtype)
    source = (kernel.in_params, kernel.out_params, "\n".join(kernel.body), kernel.name)
    CpuKernel(source, tmp_path, dtype)(*values.values(), result)
    assert expected.dtype == dtype
    np.testing.assert_array_equal(result, expected)


def _cupy_kernel_source(cupy, source: tuple[str, str, str, str], dtype) -> str:
    """The CUDA source CuPy's ElementwiseKernel makes of `source` for contiguous 1-D arrays of
    `dtype`, through CuPy's own code generator (its internals: no device is needed for this)."""
    from cupy._core import _kernel, core

    in_params, out_params, operation, name = source
    ins, outs = _kernel._get_param_info(in_params, True), _kernel._get_param_info(out_params, False)
    params = ins + outs + _kernel._get_param_info("CIndexer _ind", False)
    element = np.dtype(dtype).type
    _, _, type_map = _kernel._decide_params_type(
        ins, outs, tuple(element if p.ctype == "T" else None for p in ins), tuple(element for _ in outs))
    ndarray, scalar, indexer = 1, 3, 2  # cupy._core._kernel._ArgKind
    arginfos = [_kernel._ArgInfo(ndarray, cupy.ndarray, element, 1, True, True) if p.ctype == "T"
                else _kernel._ArgInfo(scalar, cupy._core._scalar.CScalar, p.dtype, 0, True, True) for p in ins + outs]
    arginfos.append(_kernel._ArgInfo(indexer, cupy._core._carray.Indexer, None, 1, True, True))
    code = _kernel._get_elementwise_kernel_code(tuple(arginfos), type_map, params, operation, name, "")
    return "".join(f"#include <{h}>\n" for h in core._cupy_header_list) + code


@pytest.mark.parametrize("optimizer", OPTIMIZER_CASES)
def test_cupy_makes_each_kernel_and_nvrtc_compiles_it(optimizer, tmp_path):
    """Where CuPy and NVRTC are installed but no GPU is (CI installs both): CuPy's own code
    generator makes the kernel's CUDA source from the module's _CUDA_UPDATE, and NVRTC compiles
    it for a Hopper GPU with the options the module passes (--fmad=false) and those CuPy adds;
    the PTX has the kernel and no fused multiply-add."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (CI installs it, with NVRTC)")
    from cupy.cuda import compiler

    try:
        compiler._get_nvrtc_version()
    except Exception as exc:  # noqa: BLE001 - the library is missing or unloadable
        pytest.skip(f"NVRTC cannot be loaded here ({type(exc).__name__}): pip install nvidia-cuda-nvrtc")
    module = compile_and_load(SPEC.format(optimizer=optimizer), tmp_path, "fusedtest")
    options = ("--fmad=false", "-ftz=true", "-arch=compute_90", "--device-as-default-execution-space",
               *cupy._core.core.assemble_cupy_compiler_options(()))
    for dtype in (np.float32, np.float64):
        try:
            code = _cupy_kernel_source(cupy, module._CUDA_UPDATE.source, dtype)
        except (AttributeError, TypeError, ImportError) as exc:
            pytest.skip(f"CuPy {cupy.__version__}'s kernel internals differ from 14.2's ({exc})")
        program = compiler._NVRTCProgram(code, "kern.cu", (), (), name_expressions=None, method="ptx")
        ptx, _ = program.compile(options)  # raises CompileException with NVRTC's log
        ptx = ptx.decode() if isinstance(ptx, bytes) else str(ptx)
        assert f".entry {module._CUDA_UPDATE.source[3]}(" in ptx
        assert "fma.rn" not in ptx, "FMA contraction was not switched off"
