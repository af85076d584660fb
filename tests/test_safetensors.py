"""The safetensors reader and writer: round trips, the reference package's files, and broken files."""

import doctest
import json
import struct

import numpy as np
import pytest

from minitransformer.interop import safetensors as st


def raw_file(path, header, data: bytes = b"", length=None) -> str:
    """Write a file by hand: 8-byte length, the JSON header, then ``data``."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(text) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + text + data)
    return str(path)


def test_docstring_examples():
    result = doctest.testmod(st)
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------- round trips
def test_round_trip_every_dtype_and_shape(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "f64": rng.normal(size=(3, 2)),
        "f32": rng.normal(size=(2, 3, 4)).astype(np.float32),
        "f16": rng.normal(size=(5,)).astype(np.float16),
        "i64": np.arange(-3, 3, dtype=np.int64),
        "i32": np.array([[1, -2]], np.int32), "i16": np.array([7], np.int16), "i8": np.array([-8], np.int8),
        "u64": np.array([2**63], np.uint64), "u32": np.array([1], np.uint32),
        "u16": np.array([65535], np.uint16), "u8": np.arange(5, dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(3.5, np.float32),  # shape ()
        "empty": np.zeros((0, 4), np.float32),  # no bytes at all
        "transposed": np.arange(6, dtype=np.float32).reshape(2, 3).T,  # not C-contiguous
    }
    path = st.save_file(tensors, tmp_path / "t.safetensors", metadata={"format": "pt", "note": "é"})
    loaded = st.load_file(path)
    assert set(loaded) == set(tensors)
    for name, array in tensors.items():
        assert loaded[name].dtype == array.dtype, name
        assert loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name], array)
    assert st.read_metadata(path) == {"format": "pt", "note": "é"}
    assert loaded["f32"].flags.writeable  # usable as parameters without a copy


def test_layout_follows_the_reference_writer(tmp_path):
    data = st.to_bytes({"b": np.zeros(3, np.float32), "a": np.zeros(1, np.float64), "c": np.zeros(2, np.uint8)})
    n = struct.unpack("<Q", data[:8])[0]
    assert (8 + n) % 8 == 0  # the data part starts aligned
    header = json.loads(data[8:8 + n])
    assert "__metadata__" not in header  # none given, none written
    assert [k for k in header] == ["a", "b", "c"]  # widest dtypes first, then by name
    assert header["a"]["data_offsets"] == [0, 8] and header["b"]["data_offsets"] == [8, 20]
    assert len(data) == 8 + n + 22


def test_bfloat16_is_read_as_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 0.0], np.float32)  # exactly representable in bfloat16
    bits = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    path = raw_file(tmp_path / "bf16.safetensors",
                    {"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, bits)
    w = st.load_file(path)["w"]
    assert w.dtype == np.float32 and w.shape == (2, 2)
    np.testing.assert_array_equal(w.ravel(), values)


def test_writes_are_atomic_and_leave_nothing_behind(tmp_path):
    path = tmp_path / "w.safetensors"
    st.save_file({"a": np.ones(2, np.float32)}, path)
    with pytest.raises(ValueError, match="complex"):
        st.save_file({"a": np.ones(2, np.complex64)}, path)
    np.testing.assert_array_equal(st.load_file(path)["a"], np.ones(2))  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


# --------------------------------------------------------------------------- the reference package
def test_files_agree_with_the_safetensors_package(tmp_path):
    sn = pytest.importorskip("safetensors.numpy")
    tensors = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "i": np.arange(3, dtype=np.int64),
               "h": np.ones((2, 2), np.float16), "m": np.array([True, False])}
    ours = st.save_file(tensors, tmp_path / "ours.safetensors", metadata={"format": "np"})
    for name, array in sn.load_file(str(ours)).items():
        np.testing.assert_array_equal(array, tensors[name])
    theirs = tmp_path / "theirs.safetensors"
    sn.save_file(tensors, str(theirs), metadata={"format": "np"})
    for name, array in st.load_file(theirs).items():
        np.testing.assert_array_equal(array, tensors[name])
        assert array.dtype == tensors[name].dtype
    assert st.read_metadata(theirs) == {"format": "np"}
    assert st.to_bytes(tensors, {"format": "np"}) == theirs.read_bytes()  # byte for byte the same file


# --------------------------------------------------------------------------- broken files
GOOD = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize("header, data, length, message", [
    (b"", b"", 0, "not valid JSON"),
    (b"\xff\xfe", b"", None, "not UTF-8"),
    (b"{not json", b"", None, "not valid JSON"),
    (b"[1, 2]", b"", None, "must be a JSON object"),
    (b'{"w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, '
     b'"w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}', b"", None, "names 'w' twice"),
    ({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2, None, "'F8_E4M3'.*not supported"),
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, None, "non-negative ints"),
    ({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, b"\0" * 8, None, "non-negative ints"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8, None, "begin <= end"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, None, "needs 8 bytes"),
    ({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, None, "exactly the keys"),
    ({"w": [1, 2]}, b"", None, "exactly the keys"),
    ({"__metadata__": {"format": 1}, **GOOD}, b"\0" * 8, None, "strings to strings"),
    (GOOD, b"\0" * 6, None, "truncated"),  # the data stops short
    (GOOD, b"\0" * 9, None, "1 bytes after the last tensor"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, None, "gap of 4 bytes"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, None, "overlaps"),
    (GOOD, b"", 10**9, "more than the .* allowed"),
    (GOOD, b"", 5000, "truncated"),  # the header itself is cut
])
def test_malformed_files_are_named_errors(tmp_path, header, data, length, message):
    path = raw_file(tmp_path / "bad.safetensors", header, data, length)
    with pytest.raises(ValueError, match=message) as info:
        st.load_file(path)
    assert "bad.safetensors" in str(info.value)


def test_truncated_files(tmp_path):
    whole = st.to_bytes({"w": np.arange(100, dtype=np.float32)})
    for cut in (0, 5, 8, 20, len(whole) - 1):
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(whole[:cut])
        with pytest.raises(ValueError, match="truncated|not valid JSON"):
            st.load_file(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ValueError, match="no safetensors file"):
        st.load_file(tmp_path / "absent.safetensors")
    with pytest.raises(ValueError, match="is a directory"):
        st.load_file(tmp_path)


def test_a_pickle_is_not_a_safetensors_file(tmp_path):
    import pickle

    path = tmp_path / "model.bin"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        st.load_file(path)


@pytest.mark.parametrize("tensors, metadata, message", [
    ({"a": np.array(["x"])}, None, "cannot be stored"),
    ({"a": np.array([object()])}, None, "cannot be stored"),
    ({"a": [1.0, 2.0]}, None, "must be a numpy array"),
    ({"": np.zeros(1)}, None, "non-empty strings"),
    ({"__metadata__": np.zeros(1)}, None, "other than '__metadata__'"),
    ({"a": np.zeros(1)}, {"format": 1}, "dict of str -> str"),
    ([np.zeros(1)], None, "must be a dict"),
])
def test_writer_rejects_what_it_cannot_store(tmp_path, tensors, metadata, message):
    with pytest.raises(ValueError, match=message):
        st.save_file(tensors, tmp_path / "w.safetensors", metadata=metadata)
    assert not list(tmp_path.iterdir())
