"""nnc: compile declarative neural-network specs into standalone array-API modules."""

__version__ = "0.1.0"
