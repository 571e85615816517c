"""Shared test utilities: compile specs, load generated modules, draw inputs, finite differences."""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from nnc.api import compile_spec

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SPEC_PATHS = sorted(SPECS.glob("*.nn"))
_counter = itertools.count()


def random_spec_seeds(default: int = 24) -> range:
    """The seeds of the random-spec tests: NNC_RANDOM_SPECS=N runs seeds 0..N-1, and
    NNC_RANDOM_SPECS=A:B seeds A..B-1 (specs no earlier long run has seen)."""
    text = os.environ.get("NNC_RANDOM_SPECS", str(default))
    low, _, high = text.rpartition(":")
    return range(int(low or 0), int(high))


def load_source(source: str, tmp_dir: Path, name: str = "model") -> ModuleType:
    """Import generated module text as a fresh module (written to `tmp_dir`)."""
    mod_name = f"_nnc_test_{name}_{next(_counter)}"
    path = Path(tmp_dir) / f"{mod_name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module


def compile_and_load(spec: str | Path, tmp_dir: Path, name: str = "model") -> ModuleType:
    """Compile a spec (a path, or spec text) and import the result."""
    if isinstance(spec, Path):
        return load_source(compile_spec(spec.read_text(), str(spec)), tmp_dir, spec.stem)
    return load_source(compile_spec(spec, f"{name}.nn"), tmp_dir, name)


def random_inputs(module: ModuleType, rng: np.random.Generator, size: int = 3, dtype=np.float64) -> list:
    """Inputs matching the module's INPUTS metadata; symbolic dimensions become `size`."""
    out = []
    for meta in module.INPUTS.values():
        shape = tuple(size if isinstance(d, str) else d for d in meta["shape"])
        if meta["kind"] == "int":
            out.append(rng.integers(0, meta.get("classes") or 2, size=shape))
        else:
            out.append(rng.normal(size=shape).astype(dtype))
    return out


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function f at x (x is perturbed in place, then restored)."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for j in range(flat.size):
        old = flat[j]
        h = eps * max(1.0, abs(old))
        flat[j] = old + h
        up = float(f())
        flat[j] = old - h
        down = float(f())
        flat[j] = old
        gflat[j] = (up - down) / (2 * h)
    return grad


def assert_gradients_match(module: ModuleType, params: dict, inputs: list, rng: np.random.Generator,
                           max_entries: int = 40) -> None:
    """value_and_grad against central differences of loss(), on a sample of entries of each gradient."""
    _, grads = module.value_and_grad(params, *inputs)
    named = dict(params)
    for name in module.WRT:
        named[name] = inputs[list(module.INPUTS).index(name)]
    assert set(grads) == set(named)
    for name, value in named.items():
        g = grads[name]
        assert g.shape == value.shape and g.dtype == value.dtype, name
        flat = value.reshape(-1)
        assert np.shares_memory(flat, value), "the value must be perturbed in place"
        for j in rng.choice(flat.size, size=min(flat.size, max_entries), replace=False):
            old = flat[j]
            h = 1e-6 * max(1.0, abs(old))
            flat[j] = old + h
            up = float(module.loss(params, *inputs))
            flat[j] = old - h
            down = float(module.loss(params, *inputs))
            flat[j] = old
            numeric = (up - down) / (2 * h)
            analytic = g.reshape(-1)[j]
            assert abs(analytic - numeric) <= 1e-6 + 1e-5 * abs(numeric), (name, int(j), analytic, numeric)
