#!/usr/bin/env bash
# The GPU suite and benchmark, for a machine with an NVIDIA GPU:
#   bash benchmarks/gpu.sh [bench.py options]
# Runs the CuPy portability tests (they skip, with the reason, anywhere CuPy or a device
# is missing) and the full benchmark, which then adds a "nnc (cupy)" row to workloads (A)
# and (B), and benchmarks/cuda_update.py (train_step's fused update kernel against its portable
# loop). Results: benchmarks/gpu-results.json and benchmarks/gpu-cuda-update.json.
#
# CuPy is installed only when it is missing (as cupy-cuda12x; set CUPY_PACKAGE for another
# CUDA, e.g. cupy-cuda13x), and nnc with its test extras only when `import nnc` fails.
# On a machine that cannot reach a package index, download the wheels elsewhere into .whl/
# in the repository root (lark, array-api-compat, array-api-strict, ... as pure-Python
# wheels); pip then installs from there only. PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pip_args=(--quiet)
if [ -d .whl ]; then
    pip_args+=(--no-index --find-links .whl)
fi
if ! "$PY" -c "import cupy" 2>/dev/null; then
    "$PY" -m pip install "${pip_args[@]}" "${CUPY_PACKAGE:-cupy-cuda12x}"
fi
if ! "$PY" -c "import nnc, lark, hypothesis" 2>/dev/null; then
    "$PY" -m pip install "${pip_args[@]}" -e ".[test]"
fi
"$PY" -c "import cupy; print('cupy', cupy.__version__, '- CUDA devices:', cupy.cuda.runtime.getDeviceCount())"
"$PY" -m pytest tests/test_portability.py tests/test_cuda_kernels.py -k "cupy or cuda or fused or kernel" -rs -q
# The fused update kernel against the portable loop, both on CuPy (writes its own JSON).
"$PY" benchmarks/cuda_update.py --json benchmarks/gpu-cuda-update.json
# Speed figures: OpenBLAS's full kernels for the CPU baselines (unset here only, never in CI).
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
    "$PY" benchmarks/bench.py --json benchmarks/gpu-results.json "$@"
