"""A real wheel installs as the `nnc` package only, and works from a fresh virtual environment."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from helpers import ROOT
from nnc.api import compile_spec


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(done.stdout + done.stderr)
    (path,) = out.glob("nnc-*.whl")
    return path


def test_wheel_contains_only_the_nnc_package_and_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"nnc"}
    assert "nnc/grammar/nn.lark" in names
    assert "nnc/templates/module.py.jinja" in names
    assert "nnc/runtime/kernels.py" in names


def test_wheel_installs_and_compiles_in_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    where = subprocess.run([str(py), "-c", "import nnc; print(nnc.__file__)"], capture_output=True, text=True,
                           cwd=tmp_path, check=True).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's copy, not the checkout
    done = subprocess.run([str(venv / "bin" / "nnc"), "compile", str(ROOT / "specs" / "mlp.nn")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "def value_and_grad" in done.stdout


@pytest.mark.skipif(sys.version_info < (3, 11), reason="benchmarks/site_copy.py reads pyproject.toml with tomllib (3.11)")
def test_site_copy_lays_out_the_wheels_files_and_compiles_the_same_bytes(wheel, tmp_path):
    """benchmarks/gpu.sh's route on a machine with no package index: nnc copied into a folder
    on PYTHONPATH as pyproject.toml maps it, with no build. The copy holds the wheel's files
    and compiles what the checkout compiles."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "site_copy.py"), str(site)], check=True,
                   capture_output=True)
    copied = {str(p.relative_to(site)) for p in site.rglob("*") if p.is_file()}
    in_wheel = {n for n in zipfile.ZipFile(wheel).namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert copied == in_wheel
    env = {**os.environ, "PYTHONPATH": str(site)}
    spec = ROOT / "specs" / "mlp.nn"
    done = subprocess.run([sys.executable, "-c", "import nnc, sys; print(nnc.__file__, file=sys.stderr)",
                           ], capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
    assert done.stderr.strip().startswith(str(site)), done.stderr  # the copy, not the checkout
    done = subprocess.run([sys.executable, "-m", "nnc", "compile", str(spec)], capture_output=True, text=True,
                          cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == compile_spec(spec.read_text(), spec.name)
