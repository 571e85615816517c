"""Weight files keyed by the spec's parameter names: .npz (never pickled) and .safetensors.

The underscored functions are copied verbatim into every generated module (behind its
save_params / load_params), so they use only NumPy and the standard library, imported
inside each function. safetensors is written by hand (an 8-byte little-endian header
length, a JSON header, then the raw little-endian bytes), so it needs no dependency.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import _replace_file


def _to_numpy(x):
    """A host NumPy copy of an array from any namespace (NumPy, CuPy, torch, ...)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()  # CuPy: copy from the device
    if getattr(x, "requires_grad", False):  # PyTorch exports no tensor that requires grad
        x = x.detach()
    try:
        return np.from_dlpack(x)
    except (AttributeError, TypeError, BufferError, RuntimeError, ValueError):
        return np.asarray(x)


def _float_dtype(xp, dtype):
    """`xp`'s float32 or float64, for "float32"/"float64" or a dtype object of any library
    (np.float64, np.dtype("float32"), torch.float64)."""
    if isinstance(dtype, str):
        name = dtype
    else:
        name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or str(dtype).rpartition(".")[2]
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64' (or such a dtype), got {dtype!r}")
    wanted = getattr(xp, name)
    if name == "float64" and xp is not np:
        import warnings  # JAX without x64 warns and makes float32 arrays, which would train as float32

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            made = str(xp.zeros((), dtype=wanted).dtype).rpartition(".")[2]
        if made != "float64":
            library = getattr(xp, "__name__", type(xp).__name__)
            hint = (" (enable it first: jax.config.update('jax_enable_x64', True), or JAX_ENABLE_X64=1)"
                    if library.startswith("jax") else "")
            raise ValueError(f"{library} makes {made} arrays where float64 is asked for: it has no "
                             f"float64{hint}, so use dtype='float32'")
    return wanted


def _check_weights(arrays, shapes, where, one_dtype=True):
    """Raise ValueError naming the first parameter whose name, shape, dtype or values are wrong;
    with `one_dtype`, also when the parameters have two dtypes (a model computes in one)."""
    missing = [name for name in shapes if name not in arrays]
    if missing:
        raise ValueError(f"{where}: parameter '{missing[0]}' is missing (the file has "
                         f"{', '.join(sorted(arrays)) or 'no arrays'})")
    extra = [name for name in arrays if name not in shapes]
    if extra:
        raise ValueError(f"{where}: '{extra[0]}' is not a parameter of this model (it has "
                         f"{', '.join(shapes)})")
    for name, shape in shapes.items():
        a = arrays[name]
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"{where}: parameter '{name}' has shape {list(a.shape)}, "
                             f"but the spec says {list(shape)}")
        if a.dtype.kind != "f":
            raise ValueError(f"{where}: parameter '{name}' has dtype {a.dtype}; parameters are floats")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{where}: parameter '{name}' has non-finite values (nan or inf)")
    first = next(iter(shapes), None)
    other = next((name for name in shapes if arrays[name].dtype != arrays[first].dtype), None)
    if one_dtype and other is not None:
        raise ValueError(f"{where}: parameters of two dtypes, '{first}' {arrays[first].dtype} and '{other}' "
                         f"{arrays[other].dtype}; a model computes in one (cast them to one, or load "
                         "with dtype='float32')")


def _write_weights(arrays, path, metadata=None):
    """Write NumPy arrays keyed by name to `path` (.npz or .safetensors), whole or not at all
    (_replace_file: through symbolic links, keeping the file's permission bits)."""
    import json
    import os
    import struct

    path = os.fspath(path)
    if path.endswith(".npz"):
        def write(f):
            np.savez(f, **arrays)
    elif path.endswith(".safetensors"):
        codes = {"float16": "F16", "float32": "F32", "float64": "F64"}
        header, chunks, offset = {}, [], 0
        for name, a in arrays.items():
            a = np.require(a, dtype=a.dtype.newbyteorder("<"), requirements="C")  # keeps 0-d arrays 0-d
            header[name] = {"dtype": codes[a.dtype.name], "shape": list(a.shape),
                            "data_offsets": [offset, offset + a.nbytes]}
            chunks.append(a.tobytes())
            offset += a.nbytes
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        text = json.dumps(header, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 8)  # pad so that the data starts 8-byte aligned

        def write(f):
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for chunk in chunks:
                f.write(chunk)
    else:
        raise ValueError(f"{path}: weights files end in .npz or .safetensors")

    def write_to(target):
        with open(target, "wb") as f:
            write(f)

    _replace_file(path, write_to)


def _read_weights(path):
    """NumPy arrays keyed by name from a .npz (no pickles) or .safetensors file."""
    import json
    import os
    import struct
    import zipfile

    path = os.fspath(path)
    if path.endswith(".npz"):
        try:
            archive = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a readable .npz archive ({exc})") from None
        if not hasattr(archive, "files"):
            raise ValueError(f"{path}: not an .npz archive (one bare .npy array?)")
        with archive:
            arrays = {}
            for name in archive.files:
                try:
                    arrays[name] = archive[name]
                except (ValueError, EOFError, zipfile.BadZipFile) as exc:
                    raise ValueError(f"{path}: '{name}' cannot be read ({exc})") from None
            return arrays
    if not path.endswith(".safetensors"):
        raise ValueError(f"{path}: weights files end in .npz or .safetensors")
    dtypes = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "I16": "<i2", "I32": "<i4",
              "I64": "<i8", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}
    with open(path, "rb") as f:
        data = f.read()
    (size,) = struct.unpack("<Q", data[:8]) if len(data) >= 8 else (-1,)
    if not 0 < size <= len(data) - 8:
        raise ValueError(f"{path}: not a safetensors file (bad header length)")
    try:
        entries = list(json.loads(data[8:8 + size].decode("utf-8")).items())
    except (ValueError, AttributeError):
        raise ValueError(f"{path}: not a safetensors file (the header is not a JSON object)") from None
    buffer = memoryview(data)[8 + size:]
    arrays = {}
    for name, info in entries:
        if name == "__metadata__":
            continue
        try:
            dtype = np.dtype(dtypes[info["dtype"]])
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            code = info.get("dtype") if isinstance(info, dict) else None
            raise ValueError(f"{path}: '{name}' has an unsupported or malformed entry "
                             f"(dtype {code!r})") from None
        count = 1
        for d in shape:
            count *= d
        consistent = min(shape, default=0) >= 0 and 0 <= begin <= end and end - begin == count * dtype.itemsize
        if consistent and end > len(buffer):
            raise ValueError(f"{path}: the file is cut short: '{name}' ends at byte {end} of the data, which "
                             f"has {len(buffer)} (an interrupted download or copy?)")
        if not consistent:
            raise ValueError(f"{path}: '{name}' has data offsets that do not match its shape and dtype")
        data = np.frombuffer(buffer[begin:end], dtype=dtype).reshape(shape)
        arrays[name] = data.astype(dtype.newbyteorder("="))
    return arrays


def save_weights(params: dict, path: str | Path, shapes: dict[str, tuple], metadata: dict | None = None) -> None:
    """Check `params` against the spec's shapes and write them (host copies) to `path`."""
    arrays = {name: _to_numpy(params[name]) for name in shapes if name in params}
    arrays.update({name: _to_numpy(v) for name, v in params.items() if name not in arrays})
    _check_weights(arrays, shapes, str(path))
    _write_weights(arrays, path, metadata)


def load_weights(path: str | Path, shapes: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Read and check a weights file: names, shapes, float dtypes and finite values."""
    try:
        arrays = _read_weights(path)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    _check_weights(arrays, shapes, str(path), one_dtype=False)  # the caller casts them to its --dtype
    return {name: arrays[name] for name in shapes}
