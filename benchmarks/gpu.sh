#!/usr/bin/env bash
# The GPU suite and benchmark, for a machine with an NVIDIA GPU (CUDA 12 driver):
#   bash benchmarks/gpu.sh [bench.py options]
# Installs CuPy next to the project, runs the CuPy portability tests (they skip, with the
# reason, anywhere CuPy or a device is missing) and the full benchmark, which then adds
# a "nnc (cupy)" row to workloads (A) and (B). Results: benchmarks/gpu-results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -e ".[test]" cupy-cuda12x threadpoolctl
python -c "import cupy; print('CUDA devices:', cupy.cuda.runtime.getDeviceCount())"
python -m pytest tests/test_portability.py -k cupy -rs -q
# Speed figures: OpenBLAS's full kernels for the CPU baselines (unset here only, never in CI).
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
    python benchmarks/bench.py --json benchmarks/gpu-results.json "$@"
