"""Weight files: .npz and hand-written .safetensors, checked against the spec; module save/load."""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from helpers import SPECS, compile_and_load
from nnc.runtime.weights import _read_weights, _write_weights, load_weights, save_weights


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return compile_and_load(SPECS / "xor.nn", tmp_path_factory.mktemp("weights"))


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact(mlp, tmp_path, suffix, dtype):
    params = mlp.init_params(seed=3, dtype=dtype)
    path = tmp_path / f"w{suffix}"
    mlp.save_params(params, path)
    back = mlp.load_params(path)
    assert list(back) == list(params)
    for name in params:
        assert back[name].dtype == params[name].dtype
        np.testing.assert_array_equal(back[name], params[name])


def test_load_converts_dtype_and_namespace(mlp, tmp_path):
    xps = pytest.importorskip("array_api_strict", reason="array_api_strict checks the xp= path")
    mlp.save_params(mlp.init_params(seed=1, dtype="float64"), tmp_path / "w.safetensors")
    back = mlp.load_params(tmp_path / "w.safetensors", xp=xps, dtype="float32")
    assert all(v.dtype == xps.float32 for v in back.values())
    x = xps.asarray(np.array([[0.0, 1.0]]), dtype=xps.float32)
    assert mlp.forward(back, x).shape == (1, 1)


def test_safetensors_layout_by_hand(mlp, tmp_path):
    params = mlp.init_params(seed=0, dtype="float32")
    path = tmp_path / "w.safetensors"
    mlp.save_params(params, path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(data[8:8 + n])
    assert header["__metadata__"]["model"] == "xor"
    info = header["hidden.W"]
    assert info["dtype"] == "F32" and info["shape"] == [2, 2]
    begin, end = info["data_offsets"]
    raw = np.frombuffer(data[8 + n + begin:8 + n + end], dtype="<f4").reshape(2, 2)
    np.testing.assert_array_equal(raw, params["hidden.W"])
    spans = sorted(tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__")
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert spans[-1][1] == len(data) - 8 - n  # no holes, nothing after the last tensor


def test_safetensors_interoperates_with_the_reference_library(mlp, tmp_path):
    st = pytest.importorskip("safetensors.numpy", reason="the safetensors package is an optional cross-check")
    params = mlp.init_params(seed=2, dtype="float64")
    mlp.save_params(params, tmp_path / "ours.safetensors")
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    for name in params:
        np.testing.assert_array_equal(theirs[name], params[name])
    st.save_file({k: np.asarray(v, np.float32) for k, v in params.items()}, str(tmp_path / "theirs.safetensors"))
    back = mlp.load_params(tmp_path / "theirs.safetensors")
    for name in params:
        np.testing.assert_array_equal(back[name], params[name].astype(np.float32))


SHAPES = {"a.W": (2, 3), "a.b": (3,)}


def _good():
    return {"a.W": np.ones((2, 3)), "a.b": np.zeros(3)}


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("change, message", [
    (lambda w: w.pop("a.b"), "parameter 'a.b' is missing"),
    (lambda w: w.update({"c.W": np.ones(2)}), "'c.W' is not a parameter"),
    (lambda w: w.update({"a.W": np.ones((3, 2))}), "parameter 'a.W' has shape [3, 2], but the spec says [2, 3]"),
    (lambda w: w.update({"a.b": np.array([1.0, np.nan, 0.0])}), "parameter 'a.b' has non-finite values"),
    (lambda w: w.update({"a.b": np.array([1.0, np.inf, 0.0])}), "parameter 'a.b' has non-finite values"),
])
def test_loading_names_the_offending_parameter(tmp_path, suffix, change, message):
    arrays = _good()
    change(arrays)
    path = tmp_path / f"w{suffix}"
    _write_weights(arrays, path)
    with pytest.raises(ValueError) as info:
        load_weights(path, SHAPES)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_integer_dtype_is_rejected_by_name(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, **{"a.W": np.ones((2, 3), np.int64), "a.b": np.zeros(3)})
    with pytest.raises(ValueError, match=r"parameter 'a.W' has dtype int64"):
        load_weights(path, SHAPES)


def test_pickled_npz_is_never_loaded(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, **{"a.W": np.array([object(), 1], dtype=object), "a.b": np.zeros(3)})
    with pytest.raises(ValueError, match="'a.W' cannot be read"):
        _read_weights(path)


@pytest.mark.parametrize("blob, message", [
    (b"", "bad header length"),
    (struct.pack("<Q", 10**9) + b"{}", "bad header length"),
    (struct.pack("<Q", 4) + b"nope", "not a JSON object"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    (struct.pack("<Q", 2) + b"{}", None),  # an empty file is readable; the spec check then fails
])
def test_malformed_safetensors(tmp_path, blob, message):
    path = tmp_path / "w.safetensors"
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=message or "parameter 'a.W' is missing"):
        load_weights(path, SHAPES)


def test_safetensors_offsets_are_checked(tmp_path):
    header = json.dumps({"a.W": {"dtype": "F64", "shape": [2, 3], "data_offsets": [0, 4800]}}).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 48)
    with pytest.raises(ValueError, match="'a.W' has data offsets"):
        _read_weights(path)
    header = json.dumps({"a.W": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 2)
    with pytest.raises(ValueError, match="'a.W' has an unsupported or malformed entry"):
        _read_weights(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"\.npz or \.safetensors"):
        save_weights(_good(), tmp_path / "w.pt", SHAPES)
    with pytest.raises(ValueError, match="cannot read"):
        load_weights(tmp_path / "absent.npz", SHAPES)


def test_save_refuses_bad_params_and_leaves_no_file(tmp_path):
    bad = _good()
    bad["a.W"] = np.full((2, 3), np.nan)
    with pytest.raises(ValueError, match="non-finite"):
        save_weights(bad, tmp_path / "w.npz", SHAPES)
    assert list(tmp_path.iterdir()) == []


def test_generated_module_needs_no_nnc(mlp):
    source = Path(mlp.__file__).read_text(encoding="utf-8")
    imports = [line.strip() for line in source.splitlines() if line.strip().startswith(("import ", "from "))]
    assert imports and all("nnc" not in line for line in imports), imports
    assert "def save_params(params, path):" in source and "def load_params(path, *, xp=None" in source


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_through_a_symlink_writes_the_target_and_keeps_the_link(mlp, tmp_path, suffix):
    params = mlp.init_params(seed=2)
    target = tmp_path / "store" / f"real{suffix}"
    target.parent.mkdir()
    target.write_bytes(b"old")
    target.chmod(0o640)
    link = tmp_path / f"w{suffix}"
    link.symlink_to(target)
    mlp.save_params(params, link)
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert target.stat().st_mode & 0o777 == 0o640
    back = mlp.load_params(target)
    for name in params:
        np.testing.assert_array_equal(back[name], params[name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", f"w{suffix}"]
    assert sorted(p.name for p in target.parent.iterdir()) == [f"real{suffix}"]


def test_save_to_a_new_file_is_readable_by_others(mlp, tmp_path):
    mlp.save_params(mlp.init_params(seed=2), tmp_path / "w.npz")
    assert (tmp_path / "w.npz").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_a_failed_save_names_the_path_given(mlp, tmp_path, suffix):
    """A save into a missing folder named the temporary file beside it (sweep 17:
    '/nonexistent/.w.npz.9ia0r_11.tmp'); the error names the path the caller passed."""
    path = tmp_path / "missing" / f"w{suffix}"
    with pytest.raises(FileNotFoundError) as info:
        mlp.save_params(mlp.init_params(seed=2), path)
    assert info.value.filename == str(path) and ".tmp" not in str(info.value)
    assert not path.parent.exists()


def test_save_through_a_link_to_a_device_writes_the_device(mlp, tmp_path):
    link = tmp_path / "w.npz"
    link.symlink_to("/dev/null")
    mlp.save_params(mlp.init_params(seed=2), link)
    assert link.is_symlink() and list(tmp_path.iterdir()) == [link]


def test_parameters_of_two_dtypes_are_refused_unless_converted(mlp, tmp_path):
    """A model computes in one dtype (docs/language.md); save_params wrote a float32/float64
    mix without a word, and load_params handed it back mixed (sweep 17)."""
    params = mlp.init_params(seed=2)
    mixed = {**params, "hidden.b": params["hidden.b"].astype(np.float64)}
    for suffix in (".npz", ".safetensors"):
        path = tmp_path / f"mixed{suffix}"
        with pytest.raises(ValueError, match=r"parameters of two dtypes, 'hidden.W' float32 and 'hidden.b' float64"):
            mlp.save_params(mixed, path)
        assert not path.exists()
    path = tmp_path / "mixed.npz"
    np.savez(path, **mixed)  # made elsewhere
    with pytest.raises(ValueError, match="two dtypes"):
        mlp.load_params(path)
    loaded = mlp.load_params(path, dtype="float32")
    assert {v.dtype for v in loaded.values()} == {np.dtype(np.float32)}
    np.testing.assert_array_equal(loaded["hidden.b"], params["hidden.b"])


def test_a_float16_file_loads_as_float16_unless_converted(mlp, tmp_path):
    """What the docs say: without dtype= the stored dtype is kept (for inference)."""
    halves = {k: v.astype(np.float16) for k, v in mlp.init_params(seed=2).items()}
    mlp.save_params(halves, tmp_path / "h.safetensors")
    assert {v.dtype for v in mlp.load_params(tmp_path / "h.safetensors").values()} == {np.dtype(np.float16)}
    loaded = mlp.load_params(tmp_path / "h.safetensors", dtype="float32")
    assert {v.dtype for v in loaded.values()} == {np.dtype(np.float32)}
