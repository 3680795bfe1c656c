"""The bounded GGUF header reader, on real files written by gguf and on hostile headers."""
from __future__ import annotations

import struct
import tracemalloc

import gguf
import pytest

from llamaman.models.entries import parse_gguf
from llamaman.models.gguf_header import (
    MAX_KEPT_STRING,
    ArraySummary,
    UnreadableGGUF,
    _Cursor,
    _Window,
    read_header,
)
from tests.modelkit import TEMPLATE, gguf_string, hostile_header, write_gguf

U8, STRING, ARRAY = 0, 8, 9
HUGE = 2**40


def kv(key: bytes, type_id: int, payload: bytes) -> bytes:
    return gguf_string(key) + struct.pack("<I", type_id) + payload


def test_reads_what_gguf_wrote(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", layers=6, context=4096, file_type=15, tensors=3,
                      extra={"general.tags": ["a", "b"], "general.score": 0.5})
    header = read_header(path)
    assert header.version == 3 and header.tensor_count == 3
    assert header.parameter_count == 3 * 32
    meta = header.metadata
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == 6 and meta["llama.context_length"] == 4096
    assert meta["general.file_type"] == 15 and meta["tokenizer.chat_template"] == TEMPLATE
    assert meta["general.tags"] == ["a", "b"] and meta["general.score"] == 0.5


def test_big_endian_file(tmp_path):
    path = write_gguf(tmp_path / "be.gguf", layers=9, endian=gguf.GGUFEndian.BIG)
    assert read_header(path).metadata["llama.block_count"] == 9


def test_large_arrays_are_summarised_not_kept(tmp_path):
    tokens = [f"tok{i}" for i in range(5000)]
    path = write_gguf(tmp_path / "vocab.gguf", extra={"tokenizer.ggml.tokens": tokens,
                                                      "tokenizer.ggml.scores": [0.0] * 5000})
    meta = read_header(path).metadata
    assert meta["tokenizer.ggml.tokens"] == ArraySummary("string", 5000)
    assert meta["tokenizer.ggml.scores"] == ArraySummary("float32", 5000)
    assert meta["llama.block_count"] == 4  # keys after the arrays are still read


def test_oversized_string_value_is_skipped(tmp_path):
    path = write_gguf(tmp_path / "t.gguf", template="x" * (MAX_KEPT_STRING + 1))
    parsed = parse_gguf(str(path))
    assert parsed.error is None and parsed.chat_template is None
    assert "tokenizer.chat_template" in parsed.metadata  # present, so has_chat_template holds


def test_truncated_header(tmp_path):
    data = write_gguf(tmp_path / "m.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:60])
    with pytest.raises(UnreadableGGUF, match="truncated"):
        read_header(cut)


def test_truncated_tensor_data(tmp_path):
    data = write_gguf(tmp_path / "m.gguf", tensors=2).read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:-16])
    with pytest.raises(UnreadableGGUF, match="tensor data"):
        read_header(cut)


HOSTILE = {
    "empty": (b"", "bad magic"),
    "bad magic": (b"GGML" + b"\0" * 60, "bad magic"),
    "version": (hostile_header(version=99), "version"),
    "kv count 2**40": (hostile_header(kv_count=HUGE), "key/value count"),
    "tensor count 2**40": (hostile_header(tensors=HUGE, kv_count=0), "tensor count"),
    "key length 2**40": (hostile_header(body=struct.pack("<Q", HUGE) + b"k" * 64), "key length"),
    "string length 2**40": (hostile_header(body=kv(b"general.name", STRING, struct.pack("<Q", HUGE))),
                            "exceeds the file"),
    "u8 array 2**40": (hostile_header(body=kv(b"a", ARRAY, struct.pack("<IQ", U8, HUGE))),
                       "array length"),
    "string array 2**40": (hostile_header(body=kv(b"a", ARRAY, struct.pack("<IQ", STRING, HUGE))),
                           "array length"),
    "string array, lying lengths": (
        hostile_header(body=kv(b"a", ARRAY, struct.pack("<IQ", STRING, 100) + struct.pack("<Q", HUGE)
                               + b"\0" * 800)), "exceeds the file"),
    "unknown type": (hostile_header(body=kv(b"a", 99, b"\0" * 16)), "unknown value type"),
    "deep arrays": (hostile_header(body=kv(b"a", ARRAY, struct.pack("<IQ", ARRAY, 1) * 5 + b"\0" * 64)),
                    "nested"),
    "tensor dims": (hostile_header(tensors=1, kv_count=0, body=gguf_string(b"t") + struct.pack("<I", 1000)
                                   + b"\0" * 64), "dimensions"),
    "kv count beyond file": (hostile_header(kv_count=1000), "key/value count 1000 exceeds the file"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_headers_are_unreadable_with_bounded_memory(tmp_path, name):
    data, reason = HOSTILE[name]
    path = tmp_path / "hostile.gguf"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(UnreadableGGUF, match=reason):
            read_header(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"peak allocation {peak} bytes"
    parsed = parse_gguf(str(path))
    assert parsed.error and parsed.metadata == {}


def test_missing_file_is_unreadable(tmp_path):
    assert "cannot read" in parse_gguf(str(tmp_path / "gone.gguf")).error


def test_nan_values_become_null(tmp_path):
    path = write_gguf(tmp_path / "nan.gguf", extra={"general.weird": float("nan")})
    assert read_header(path).metadata["general.weird"] is None


def test_file_shrinking_while_read_is_an_error_not_a_crash(tmp_path):
    data = write_gguf(tmp_path / "m.gguf", tensors=2).read_bytes()
    path = tmp_path / "shrunk.gguf"
    path.write_bytes(data[:40])
    with open(path, "rb") as handle:
        handle.read(4)
        cursor = _Cursor(_Window(handle, len(data)))  # the size seen before the file was cut
        with pytest.raises(UnreadableGGUF, match="shrank"):
            cursor.header()
