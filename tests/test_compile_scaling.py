"""Compile work grows linearly with the spec, counted, not timed: the lines of nnc's own code
executed while compiling a chain of N layers, for two N.

benchmarks/bench.py times (C) (500 layers in under 3 s); this catches the usual way that
figure regresses, a pass that scans the whole program once per value (twice so far: a
gradient map rebuilt per parameter, a definitions map rebuilt per returned array), without
depending on how fast the machine is. Line events include every loop iteration, so a
quadratic scan shows even when it is cheap per step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nnc
from nnc.api import compile_spec

NNC_DIR = str(Path(nnc.__file__).resolve().parent)  # the compiler: compiler/ here, nnc/ in an installed wheel
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench import chain_spec  # noqa: E402  (workload C's spec: the figure this test stands behind)


def _lines_executed(text: str) -> int:
    count = 0

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return local

    def call(frame, event, arg):  # trace nnc's frames only: lark and jinja2 are not ours
        return local if frame.f_code.co_filename.startswith(NNC_DIR) else None

    sys.settrace(call)
    try:
        compile_spec(text, "chain.nn")
    finally:
        sys.settrace(None)
    return count


def test_compile_work_grows_linearly_with_the_number_of_layers():
    compile_spec(chain_spec(2), "chain.nn")  # caches (grammar, template, runtime sources) filled once
    small, large = 25, 100
    per_layer = {n: _lines_executed(chain_spec(n)) / n for n in (small, large)}
    growth = per_layer[large] / per_layer[small]
    # linear work gives 1.0 plus a fixed part spread thinner; a scan per value gives ~1 + 4x its share
    assert growth < 1.15, f"lines per layer: {per_layer} (growth {growth:.2f}x from {small} to {large} layers)"


def test_nnc_compile_imports_no_numpy(tmp_path):
    """`nnc compile` runs without NumPy (60 ms of a 0.2 s process): the float32 range check
    of given initial values imported it until it compared Python floats."""
    spec = tmp_path / "big.nn"
    spec.write_text("model big\ninput x : float[B, 2]\nparam w : float[1, 2] = [[1.0, -4e38]]\n"
                    "loss = mean(x * w)\n")
    code = ("import sys\nfrom nnc.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n"
            "    assert not exc.code, exc.code\nprint(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'scipy'}))")
    done = subprocess.run([sys.executable, "-c", code, "compile", str(spec), "-o", str(tmp_path / "big.py")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "[]", done.stdout
    assert "beyond float32's largest value" in (tmp_path / "big.py").read_text()
