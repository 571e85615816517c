"""pytest configuration: the --update-goldens switch and shared fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The tests use small arrays, where BLAS threads only add overhead, and on a loaded machine
# they make a matmul-heavy test 20x slower; set before NumPy is imported anywhere.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true", default=False,
                     help="rewrite golden files from the real CLI instead of comparing")


@pytest.fixture
def update_goldens(request) -> bool:
    return request.config.getoption("--update-goldens")
