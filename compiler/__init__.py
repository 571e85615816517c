"""nnc: compile declarative neural-network specs into standalone array-API modules."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `nnc.check` loads the checker (and NumPy) only when used, so `import nnc` stays light.
    if name == "check":
        from .api import check

        return check
    raise AttributeError(f"module 'nnc' has no attribute {name!r}")
