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
# On a machine that cannot reach a package index (a CUDA image with CuPy, NumPy, Jinja2, click,
# pytest and hypothesis), first run `bash benchmarks/gpu-wheels.sh` on one that can and bring
# the .whl/ it writes: nnc (copied as its wheel lays it out, no build needed) and those wheels
# then go into a folder on PYTHONPATH (NNC_SITE, default /tmp/nnc-site), so nothing is
# written outside it. PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import cupy" 2>/dev/null; then
    "$PY" -m pip install --quiet "${CUPY_PACKAGE:-cupy-cuda12x}"
fi
if ! "$PY" -c "import nnc, lark, array_api_compat, array_api_strict, hypothesis, pytest" 2>/dev/null; then
    if [ -d .whl ]; then
        site=${NNC_SITE:-/tmp/nnc-site}
        "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" .whl/*.whl
        "$PY" benchmarks/site_copy.py "$site" >/dev/null  # nnc as its wheel lays it out
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    else
        "$PY" -m pip install --quiet -e ".[test]"
    fi
fi
"$PY" -c "import nnc; print('nnc from', nnc.__file__)"
"$PY" -c "import cupy; print('cupy', cupy.__version__, '- CUDA devices:', cupy.cuda.runtime.getDeviceCount())"
"$PY" -m pytest tests/test_portability.py tests/test_cuda_kernels.py -k "cupy or cuda or fused or kernel" -rs -q
# The fused update kernel against the portable loop, both on CuPy (writes its own JSON).
"$PY" benchmarks/cuda_update.py --json benchmarks/gpu-cuda-update.json
# Speed figures: OpenBLAS's full kernels for the CPU baselines (unset here only, never in CI).
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
    "$PY" benchmarks/bench.py --json benchmarks/gpu-results.json "$@"
