"""`python -m nnc`."""

from .cli import main

main(prog_name="nnc")
