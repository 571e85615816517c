"""Training data: built-in data sets, .npz and .csv files, bound to a spec's inputs.

A data set is examples along the first axis. Built-in sets and .csv files give
features and targets; `bind` maps them onto the spec's inputs (the first input gets
the features, the last the targets, converted to what the spec declares: int class
indices, one-hot rows, or 0/1 or -1/+1 columns). An .npz file names its arrays after
the spec's inputs and is used as it is.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

BUILTIN = ("xor", "and", "or", "digits", "spirals", "moons")
_DATA_SEED = 0  # synthetic sets are the same on every run, whatever --seed says


class DataError(ValueError):
    """Data that cannot be used with this spec: the message says why and what to do."""


@dataclass(frozen=True)
class InputSpec:
    """What a spec declares about one input (from its IR or a generated module's INPUTS)."""

    name: str
    kind: str  # "float" | "int"
    shape: tuple  # ints and symbolic names
    classes: int | None = None


@dataclass
class Dataset:
    name: str
    features: np.ndarray | None = None  # [n, ...] float
    targets: np.ndarray | None = None  # [n] int class labels, or [n, k] float values
    classes: int | None = None  # when targets are class labels
    arrays: dict[str, np.ndarray] | None = None  # .npz: already keyed by input name

    def __len__(self) -> int:
        if self.arrays is not None:
            return len(next(iter(self.arrays.values()))) if self.arrays else 0
        return len(self.features)


# ---- built-in data sets ----------------------------------------------------------------------

_GATES = {"xor": [0, 1, 1, 0], "and": [0, 0, 0, 1], "or": [0, 1, 1, 1]}


def _gate(name: str) -> Dataset:
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return Dataset(name, x, np.array(_GATES[name]), 2)


def _digits() -> Dataset:
    """The 8x8 handwritten digits (1,797 images, classes 0-9), pixels scaled to [0, 1]."""
    ref = resources.files("nnc.runtime").joinpath("datasets", "digits.npz")
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as f:
        images, labels = f["images"], f["labels"]
    return Dataset("digits", images.astype(np.float64) / 16.0, labels.astype(np.int64), 10)


def _spirals(n: int = 600, turns: float = 1.0, noise: float = 0.04) -> Dataset:
    """Two interleaved spirals (n points, half per class), radius up to 1: a classic
    problem no linear model solves."""
    rng = np.random.default_rng(_DATA_SEED)
    half = n // 2
    r = np.sqrt(rng.uniform(0.02, 1.0, half))  # uniform along the arm's area
    t = r * turns * 2.0 * math.pi
    arm = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    x = np.concatenate([arm, -arm]) + rng.normal(0.0, noise, (2 * half, 2))
    y = np.concatenate([np.zeros(half, np.int64), np.ones(half, np.int64)])
    return Dataset("spirals", x, y, 2)


def _moons(n: int = 600, noise: float = 0.15) -> Dataset:
    """Two interleaving half circles (as scikit-learn's make_moons), with Gaussian noise."""
    rng = np.random.default_rng(_DATA_SEED)
    half = n // 2
    t = np.linspace(0.0, math.pi, half)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.concatenate([upper, lower]) + rng.normal(0.0, noise, (2 * half, 2))
    y = np.concatenate([np.zeros(half, np.int64), np.ones(half, np.int64)])
    return Dataset("moons", x, y, 2)


def builtin(name: str) -> Dataset:
    if name in _GATES:
        return _gate(name)
    return {"digits": _digits, "spirals": _spirals, "moons": _moons}[name]()


# ---- files -------------------------------------------------------------------------------------

def _load_npz(path: Path) -> Dataset:
    import zipfile

    if not zipfile.is_zipfile(path):  # np.load would take it for a pickle and say so
        raise DataError(f"{path}: not an .npz archive (a zip file of arrays, as numpy.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise DataError(f"{path}: not an .npz archive")
            arrays = {name: f[name] for name in f.files}
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read it as .npz ({exc})") from None
    return Dataset(path.name, arrays=arrays)


def _load_csv(path: Path, target_columns: int) -> Dataset:
    """Numbers separated by commas, one example per row; the last `target_columns` are targets.

    A first row without a number is a header and is skipped; one with some numbers is data, so a
    bad cell in it is an error, not a row silently dropped.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark would make row 1 a "header"
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None
    reader = csv.reader(io.StringIO(text))
    numbered = [(reader.line_num, r) for r in reader]  # line numbers of the file, blank lines included
    numbered = [(n, r) for n, r in numbered if r and any(c.strip() for c in r)]
    if numbered and not any(_is_number(c) for c in numbered[0][1]):
        numbered = numbered[1:]
    if not numbered:
        raise DataError(f"{path}: no rows of numbers")
    width = len(numbered[0][1])
    values = np.empty((len(numbered), width))
    for i, (line, row) in enumerate(numbered):
        if len(row) != width:
            trailing = " (a trailing comma?)" if len(row) > width and not row[-1].strip() else ""
            raise DataError(f"{path}:{line}: {len(row)} columns, but the first row of numbers (line "
                            f"{numbered[0][0]}) has {width}{trailing}")
        try:
            values[i] = [_number(c) for c in row]
        except ValueError:
            bad = next(c for c in row if not _is_number(c))
            # repr: control, invisible and bidirectional characters escaped, as the cause they
            # often are, and never written raw to a terminal (an escape sequence in a cell)
            what = f"{bad.strip(' ')!r}, which is not a number" if bad.strip() else "an empty value"
            if any(sep in bad for sep in ";\t|"):
                what += " (columns are separated by commas)"
            elif line == numbered[0][0] and bad.strip():
                what += " (a header row holds names alone, no numbers)"
            raise DataError(f"{path}:{line}: {what}") from None
    if target_columns >= width:
        raise DataError(f"{path}: {width} column{'s' if width != 1 else ''}, but the spec needs {target_columns} target column(s) "
                        "after at least one feature column")
    split = width - target_columns
    return Dataset(path.name, values[:, :split], values[:, split:] if target_columns else None)


def _dims(shape) -> str:
    """A shape as the spec writes it: [B, 784]."""
    return "[" + ", ".join(map(str, shape)) + "]"


# What a .csv writer writes for a number; Python's float() also takes 1_000 and digits of
# other scripts, which no spreadsheet writes and which are more likely a mistake than data.
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*|\s*[+-]?(nan|inf|infinity)\s*", re.I | re.A)


def _number(text: str) -> float:
    if not _NUMBER.fullmatch(text):
        raise ValueError(text)
    return float(text)


def _axes(n: int) -> str:
    return f"{n} axis" if n == 1 else f"{n} axes"


def _is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None


def load(source: str, inputs: list[InputSpec], features_only: bool = False) -> Dataset:
    """A built-in data set by name, or an .npz / .csv file.

    With `features_only` (prediction) a .csv file's columns beyond the features are ignored.
    """
    if source in BUILTIN:
        return builtin(source)
    path = Path(source)
    suffix = path.suffix.lower()  # Windows tools write D.CSV
    if suffix not in (".npz", ".csv"):
        raise DataError(f"unknown data '{source}': give an .npz or .csv file, or one of {', '.join(BUILTIN)}")
    if not path.is_file():
        raise DataError(f"{source}: {'a directory, not a file' if path.is_dir() else 'no such file'}")
    if suffix == ".npz":
        return _load_npz(path)
    target = inputs[-1] if len(inputs) >= 2 else None
    data = _load_csv(path, _target_columns(target, inputs[0]) if target else 0)
    if features_only and inputs and data.features is not None:
        item = inputs[0].shape[1:] if inputs[0].shape and isinstance(inputs[0].shape[0], str) else inputs[0].shape
        if all(isinstance(d, int) for d in item) and data.features.shape[1] > math.prod(item):
            data.features = data.features[:, :math.prod(item)]  # drop label columns
    return data


def _target_columns(target: InputSpec, first: InputSpec) -> int:
    if target.kind == "int":
        return 1
    batched = bool(first.shape) and isinstance(first.shape[0], str)
    item = tuple(target.shape[1:]) if batched else tuple(target.shape)
    if not all(isinstance(d, int) for d in item):
        raise DataError(f"the target '{target.name}' has a symbolic size {_dims(target.shape)}; "
                        "a .csv file needs a concrete number of target columns")
    return math.prod(item)


# ---- binding a data set to a spec's inputs ----------------------------------------------------

@dataclass
class Bound:
    """Arrays keyed by input name (examples on the first axis), and what accuracy means."""

    arrays: dict[str, np.ndarray]
    mode: str  # "batched", "single" (one example per call, no batch axis) or "fixed" (batch size)
    labels: np.ndarray | None  # the true class of each example, when it is a classifier
    classes: int | None
    unused: tuple[str, ...] = ()  # arrays of an .npz that no input is named after

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def take(self, index: np.ndarray) -> Bound:
        labels = None if self.labels is None else self.labels[index]
        return Bound({k: v[index] for k, v in self.arrays.items()}, self.mode, labels, self.classes)


def _mode(first: InputSpec, example_shape: tuple) -> str:
    """How the spec takes examples: "batched" (a symbolic first axis), "single" (one example
    per call, no batch axis) or "fixed" (a batch axis of a fixed size)."""
    shape = first.shape
    if shape and isinstance(shape[0], str):
        return "batched"
    if shape and all(isinstance(d, int) for d in shape[1:]) and math.prod(shape[1:]) == math.prod(
            example_shape) and math.prod(shape) != math.prod(example_shape):
        return "fixed"
    return "single"


def _check_batch_axes(inputs: list[InputSpec], mode: str) -> None:
    """Examples are fed along the first axis of every input: each needs the batch axis."""
    if mode == "single":
        return
    axis = inputs[0].shape[0]
    for spec in inputs[1:]:
        if not spec.shape or spec.shape[0] != axis:
            declared = spec.kind + (_dims(spec.shape) if spec.shape else "")
            raise DataError(f"input {spec.name} : {declared} has no batch axis {axis}: "
                            f"nnc train, eval and predict take every input example by example, along the "
                            f"batch axis of {inputs[0].name} : {inputs[0].kind}{_dims(inputs[0].shape)}")


def _item_shape(spec: InputSpec, mode: str) -> tuple:
    """The shape of one example of `spec` (without the batch axis, when the spec has one)."""
    return tuple(spec.shape[1:]) if mode != "single" else tuple(spec.shape)


def _fit(name: str, values: np.ndarray, spec: InputSpec, mode: str, source: str) -> np.ndarray:
    """Reshape examples to the spec's item shape (flattening or unflattening when sizes agree)."""
    item = _item_shape(spec, mode)
    got = values.shape[1:]
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = int(np.argmin(np.isfinite(values).reshape(len(values), -1).all(axis=1)))
        raise DataError(f"{source}: '{name}' holds nan or inf values (first in example {bad})")
    concrete = all(isinstance(d, int) for d in item)
    if concrete and tuple(got) != tuple(item):
        if math.prod(got) != math.prod(item):
            raise DataError(f"{source}: each example of '{name}' has shape {_dims(got)}, but the spec "
                            f"declares {name} : {spec.kind}{_dims(spec.shape)}")
        values = values.reshape((len(values), *item))
    elif not concrete and len(got) != len(item):
        single = (f" (its first axis is not a symbolic batch axis, so each example is a whole "
                  f"{_dims(spec.shape)}, and the data holds them along its own first axis)") if mode == "single" else ""
        raise DataError(f"{source}: each example of '{name}' has {_axes(len(got))}, but the spec's "
                        f"{_dims(spec.shape)} has {len(item)} per example{single}")
    return values


def output_encoding(output_kind: str) -> tuple[float, float]:
    """(label of class 0, label of class 1) for a binary target, from what the output produces."""
    return (-1.0, 1.0) if output_kind == "signed" else (0.0, 1.0)


def bind(data: Dataset, inputs: list[InputSpec], output_kind: str = "score") -> Bound:
    """Map a data set onto the spec's inputs; raises DataError saying what does not fit."""
    if not inputs:
        raise DataError("the spec has no inputs to feed data to")
    first = inputs[0]
    if data.arrays is not None:
        return _bind_arrays(data, inputs, output_kind)
    if len(inputs) > 2:
        raise DataError(f"the spec has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                        f"{data.name} gives only features and targets: use an .npz file with one "
                        "array per input")
    if first.kind != "float":
        raise DataError(f"the first input '{first.name}' gets the features and must be float")
    features = np.asarray(data.features, np.float64)
    mode = _mode(first, features.shape[1:])
    _check_batch_axes(inputs, mode)
    arrays = {first.name: _fit(first.name, features, first, mode, data.name)}
    labels, classes = None, data.classes
    if len(inputs) == 2:
        target = inputs[1]
        arrays[target.name], labels, classes = _targets(data, target, first, mode, output_kind)
    return Bound(arrays, mode, labels, classes)


_MAX_LABEL = 2**31 - 1  # the largest size a spec may declare: no model has more classes


def _check_label_size(a: np.ndarray, name: str, source: str) -> None:
    """Refuse class labels too large for any model before they are cast to int64, where
    1e23 or 2**63 + 1 would wrap around to made-up values (and NumPy warn)."""
    if a.size and a.dtype.kind in "fiu" and float(np.max(a)) > _MAX_LABEL:
        raise DataError(f"{source}: '{name}' holds class labels up to {float(np.max(a)):.4g}, more than any "
                        f"model's classes (at most {_MAX_LABEL})")


def _targets(data: Dataset, target: InputSpec, first: InputSpec, mode: str, output_kind: str):
    item = _item_shape(target, mode)
    if data.targets is None:
        raise DataError(f"{data.name} has no targets for '{target.name}'")
    y = data.targets
    if data.classes is None and target.kind == "int":  # a .csv column of class indices
        if y.shape[1:] != (1,) or not np.all(y == np.round(y)) or np.any(y < 0):
            raise DataError(f"{data.name}: the target '{target.name}' is int (class indices), so the "
                            "last column must hold whole numbers 0, 1, 2, ...")
        _check_label_size(y, target.name, data.name)
        y = y[:, 0].astype(np.int64)
        data = Dataset(data.name, data.features, y, int(y.max()) + 1 if len(y) else 0)
    if data.classes is None:  # float targets from a .csv file: used as they are
        values = _fit(target.name, y, target, mode, data.name)
        return values, _binary_labels(values, output_kind), None
    k = data.classes
    if target.classes is not None and k > target.classes:
        raise DataError(f"{data.name} has {k} classes, but the model's output has {target.classes}")
    if target.kind == "int":
        if item:
            raise DataError(f"the int target '{target.name}' must hold one class index per example")
        return y.astype(np.int64), y.astype(np.int64), max(k, target.classes or 0)
    size = math.prod(item) if all(isinstance(d, int) for d in item) else None
    if size == 1 and k == 2:
        low, high = output_encoding(output_kind)
        return np.where(y == 1, high, low).reshape((len(y), *item)), y.astype(np.int64), 2
    if size is not None and size >= k and len(item) == 1:
        return np.eye(size)[y], y.astype(np.int64), size
    raise DataError(f"{data.name} has {k} classes, which do not fit the target "
                    f"{target.name} : float{_dims(target.shape)}; declare it int[{first.shape[0]}] "
                    f"(class indices) or float[{first.shape[0]}, {k}] (one-hot)")


def _binary_labels(values: np.ndarray, output_kind: str) -> np.ndarray | None:
    """Class labels for float targets that only hold the two values of a binary classifier."""
    flat = values.reshape(len(values), -1)
    if flat.shape[1] != 1:
        if flat.shape[1] > 1 and np.all((flat == 0) | (flat == 1)) and np.all(flat.sum(axis=1) == 1):
            return np.argmax(flat, axis=1)  # one-hot rows
        return None
    low, high = output_encoding(output_kind)
    col = flat[:, 0]
    if np.all((col == low) | (col == high)):
        return (col == high).astype(np.int64)
    if np.all((col == 0) | (col == 1)):
        return col.astype(np.int64)
    return None


def _bind_arrays(data: Dataset, inputs: list[InputSpec], output_kind: str) -> Bound:
    arrays = data.arrays
    missing = [i.name for i in inputs if i.name not in arrays]
    if missing:
        raise DataError(f"{data.name} has no array '{missing[0]}' (it has {', '.join(sorted(arrays)) or 'none'}); "
                        f"name the arrays after the spec's inputs: {', '.join(i.name for i in inputs)}")
    first = inputs[0]
    mode = _mode(first, arrays[first.name].shape[1:])
    out, n = {}, None
    _check_batch_axes(inputs, mode)
    for spec in inputs:
        a = arrays[spec.name]
        if a.ndim == 0:
            raise DataError(f"{data.name}: '{spec.name}' is a single number; give one value per example")
        if n is not None and len(a) != n:
            raise DataError(f"{data.name}: '{spec.name}' has {len(a)} examples, '{first.name}' has {n}")
        n = len(a)
        if spec.kind == "int":
            if a.dtype.kind not in "iub" and not (a.dtype.kind == "f" and np.all(a == np.round(a))):
                raise DataError(f"{data.name}: '{spec.name}' must hold class indices (whole numbers)")
            _check_label_size(a, spec.name, data.name)
            a = a.astype(np.int64)
            if spec.classes is not None and a.size and (a.min() < 0 or a.max() >= spec.classes):
                bad = int(np.argmax(((a < 0) | (a >= spec.classes)).reshape(len(a), -1).any(axis=1)))
                raise DataError(f"{data.name}: '{spec.name}' holds class labels from {a.min()} to {a.max()}, "
                                f"but the model has {spec.classes} classes (0 to {spec.classes - 1}); the first "
                                f"out of range is in example {bad}")
        elif a.dtype.kind not in "fiub":
            raise DataError(f"{data.name}: '{spec.name}' has dtype {a.dtype}; expected numbers")
        out[spec.name] = _fit(spec.name, a.astype(np.float64) if spec.kind == "float" else a, spec, mode,
                              data.name)
    labels, classes = None, None
    target = inputs[-1] if len(inputs) >= 2 else None
    if target is not None and target.kind == "int":
        labels = out[target.name]  # [n], or [n, T] for a class per position
        classes = target.classes or (int(labels.max()) + 1 if len(labels) else None)
    elif target is not None:
        labels = _binary_labels(out[target.name], output_kind)
        classes = None if labels is None else max(2, int(labels.max()) + 1)
    unused = tuple(sorted(set(arrays) - {i.name for i in inputs}))
    return Bound(out, mode, labels, classes, unused)


def unused_note(command: str, data: Bound, source: str, inputs: list[InputSpec]) -> str | None:
    """A note naming the arrays of `source` that no input of the spec (`inputs`) reads: a
    misspelled name would otherwise go unnoticed."""
    names = {i.name for i in inputs}
    unused = [name for name in data.unused if name not in names]
    if not unused:
        return None
    return (f"nnc {command}: note: {source}: {', '.join(repr(n) for n in unused)} "
            f"{'is' if len(unused) == 1 else 'are'} not an input of the spec and "
            f"{'is' if len(unused) == 1 else 'are'} ignored (inputs: {', '.join(i.name for i in inputs)})")


# what a first output of each kind can reach (runtime/train.output_kind), for float targets
_REACH = {"probability": (0.0, 1.0), "logit": (0.0, 1.0), "signed": (-1.0, 1.0)}


def target_range_note(command: str, data: Bound, inputs: list[InputSpec], output_kind: str) -> str | None:
    """A note when float targets lie outside what the output can produce (labels 5 and 7 for a
    sigmoid output or bce): training then runs, to a negative bce or an unreachable fit, with
    no word of why (sweep 20). Class labels (`data.labels`) were mapped already."""
    reach = _REACH.get(output_kind)
    if reach is None or data.labels is not None or len(inputs) < 2 or inputs[-1].kind != "float":
        return None
    target = data.arrays.get(inputs[-1].name)
    if target is None or not target.size:
        return None
    low, high = float(np.min(target)), float(np.max(target))
    if reach[0] <= low and high <= reach[1]:
        return None
    what = {"probability": "the first output is a probability", "logit": "bce takes targets",
            "signed": "the first output is a sign"}[output_kind]
    return (f"nnc {command}: note: the targets '{inputs[-1].name}' range from {low:g} to {high:g}, but "
            f"{what} from {reach[0]:g} to {reach[1]:g}: rescale them to that range")


def split(n: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: a seeded shuffle, the last `val_split` share held out."""
    order = np.random.default_rng([seed, 1]).permutation(n)
    n_val = round(n * val_split)
    if val_split > 0 and n_val == 0:
        n_val = 1
    if n_val >= n:
        raise DataError(f"--val-split {val_split} leaves no training examples out of {n}")
    return np.sort(order[: n - n_val]), np.sort(order[n - n_val:])
