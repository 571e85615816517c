"""The timing harness, which lives in the package (nnc.runtime.timing) so that `nnc bench`
and this benchmark share one copy; re-exported here for bench.py and older scripts."""

from nnc.runtime.timing import Impl, calibrate, run_rounds, summary

__all__ = ["Impl", "calibrate", "run_rounds", "summary"]
