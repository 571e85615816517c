"""A real wheel installs as the `nnc` package only, and works from a fresh virtual environment."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from helpers import ROOT


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
