"""Lay nnc out in a folder as its wheel would, without building it: `python benchmarks/site_copy.py DIR`.

For benchmarks/gpu.sh on a machine that has no package index and perhaps no setuptools new
enough to build the project: pyproject.toml's package-dir maps the repository's folders
into the package `nnc`, and this copies them so; DIR then goes on PYTHONPATH.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def copy_package(site: Path) -> Path:
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(dirs.items()):  # "nnc" first, then its subpackages inside it
        shutil.copytree(ROOT / folder, site.joinpath(*package.split(".")), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return site / "nnc"


if __name__ == "__main__":
    print(copy_package(Path(sys.argv[1])))
