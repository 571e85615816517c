#!/usr/bin/env bash
# Fetch, on a machine that can reach a package index, the wheels that benchmarks/gpu.sh needs on a
# GPU machine that cannot: the pure-Python packages nnc and its tests need beyond what a CUDA
# image with CuPy, NumPy, Jinja2, click, pytest and hypothesis already has.
#   bash benchmarks/gpu-wheels.sh      # writes .whl/ in the repository root (git-ignored)
# Copy or carry .whl/ along with the checkout; gpu.sh then installs from it alone.
# EXTRA_WHEELS adds more (e.g. EXTRA_WHEELS="hypothesis==6.155.0 jinja2==3.1.6").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .whl
# shellcheck disable=SC2086
"$PY" -m pip download --quiet --no-deps --only-binary=:all: -d .whl \
    lark==1.3.1 array-api-compat==1.16.0 array-api-strict==2.6.1 ${EXTRA_WHEELS:-}
ls -l .whl
