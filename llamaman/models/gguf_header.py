"""A bounded reader for the GGUF header: key/value metadata and tensor infos, never tensor data.

The `gguf` package's GGUFReader maps the whole file and builds numpy views of every field,
which allocates in proportion to what a (possibly hostile) header claims. This reader walks
the header over a read-only memory map with explicit bounds: every length is checked against
the bytes actually present, big arrays are skipped rather than read, and walking work is capped.
Reads go through a small sliding buffer rather than mmap: a file truncated while it is being
read (a download rewriting it) then gives an error instead of SIGBUS killing the worker.
Constants (value types, quantisation block sizes) come from the `gguf` package (its constants
module alone: see gguf_constants).
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from llamaman.errors import Invalid
from llamaman.models.gguf_constants import (
    GGML_QUANT_SIZES,
    GGMLQuantizationType,
    GGUFValueType,
)

MAGIC = b"GGUF"
MAX_KV = 1 << 16  # real models carry ~30-100 keys
MAX_TENSORS = 1 << 20
MAX_KEY_BYTES = 1 << 16  # the spec's key limit
MAX_KEPT_STRING = 1 << 20  # a chat template fits; longer values are skipped, not decoded
MAX_KEPT_ARRAY = 64  # small arrays (tags, languages) are kept; vocabularies are summarised
MAX_ITEM_STRING = 4096  # per string inside a kept array
MAX_KEPT_TOTAL = 8 << 20  # decoded string bytes per file; beyond it values are skipped
MAX_WALKED_ITEMS = 1 << 23  # total string-array items walked per file (vocab + merges ~1M)
MAX_DIMS = 8
MAX_DEPTH = 3  # nested arrays

_SCALAR_FORMATS = {
    GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h", GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "?", GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d",
}


class UnreadableGGUF(Invalid):
    """The file is not a well-formed GGUF header; the message says why."""


@dataclass
class ArraySummary:
    """A large array that was skipped: its element type and length only."""

    item_type: str
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"array": self.item_type, "count": self.count}


@dataclass
class GGUFHeader:
    """What the header says: metadata, tensor count and total parameter count."""

    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tensor_count: int = 0
    parameter_count: int = 0
    tensor_bytes: int = 0  # the tensor data (the weights), as llama-server maps it


def read_header(path: Path | str) -> GGUFHeader:
    """Parse the GGUF header of path; raise UnreadableGGUF with a reason on any defect."""
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != MAGIC:
                raise UnreadableGGUF("bad magic (not a GGUF file)")
            return _Cursor(_Window(handle, os.fstat(handle.fileno()).st_size)).header()
    except OSError as exc:
        raise UnreadableGGUF(f"cannot read file: {exc.strerror or exc}") from exc


class _Window:
    """A sliding read buffer over an open file."""

    CHUNK = 1 << 18

    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle = handle
        self.size = size
        self.base = 0
        self.buf = b""

    def at(self, pos: int, count: int) -> tuple[bytes, int]:
        """(buffer, offset) such that buffer[offset:offset + count] are the file's bytes at pos."""
        if pos < self.base or pos + count > self.base + len(self.buf):
            self.handle.seek(pos)
            self.buf = self.handle.read(max(count, self.CHUNK))
            self.base = pos
            if len(self.buf) < count:
                raise UnreadableGGUF("file shrank while being read")
        return self.buf, pos - self.base


class _Cursor:
    """Sequential, bounds-checked reads over the mapped file."""

    def __init__(self, window: _Window) -> None:
        self.window = window
        self.size = window.size
        self.pos = 4
        self.order = "<"
        self.walked = 0
        self.kept = 0

    def header(self) -> GGUFHeader:
        version = self._version()
        wide = "Q" if version >= 2 else "I"  # v1 used 32-bit counts
        tensors, kv_count = self.read(wide), self.read(wide)
        self._check_count(kv_count, MAX_KV, 13, "key/value count")
        self._check_count(tensors, MAX_TENSORS, 24, "tensor count")
        header = GGUFHeader(version, tensor_count=tensors)
        for _ in range(kv_count):
            key = self.string(MAX_KEY_BYTES, "key")
            header.metadata[key] = self.value(self.read("I"), 0)
        header.parameter_count, header.tensor_bytes = self._tensors(tensors, header.metadata)
        return header

    def _version(self) -> int:
        raw = self.take(4)
        for order in ("<", ">"):
            version = struct.unpack(order + "I", raw)[0]
            if 1 <= version <= 3:
                self.order = order
                return version
        raise UnreadableGGUF(f"unsupported GGUF version {struct.unpack('<I', raw)[0]}")

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > self.size:
            raise UnreadableGGUF(f"truncated header at byte {self.pos} (needs {count} more bytes)")
        buf, offset = self.window.at(self.pos, count)
        self.pos += count
        return buf[offset:offset + count]

    def skip(self, count: int) -> None:
        if count < 0 or self.pos + count > self.size:
            raise UnreadableGGUF(f"truncated header at byte {self.pos} (skips {count} bytes)")
        self.pos += count

    def read(self, fmt: str) -> Any:
        width = struct.calcsize(fmt)
        if self.pos + width > self.size:
            raise UnreadableGGUF(f"truncated header at byte {self.pos}")
        buf, offset = self.window.at(self.pos, width)
        value = struct.unpack_from(self.order + fmt, buf, offset)[0]
        self.pos += width
        return value

    def _check_count(self, count: int, limit: int, min_bytes: int, what: str) -> None:
        """Reject counts beyond a hard limit or beyond what the remaining bytes could hold."""
        if count > limit:
            raise UnreadableGGUF(f"absurd {what} {count}")
        if count * min_bytes > self.size - self.pos:
            raise UnreadableGGUF(f"truncated or corrupt: {what} {count} exceeds the file")

    def string(self, limit: int, what: str) -> str:
        length = self.read("Q")
        if length > self.size - self.pos:
            raise UnreadableGGUF(f"{what} length {length} exceeds the file")
        if length > limit:
            raise UnreadableGGUF(f"{what} length {length} exceeds {limit}")
        return self.take(length).decode("utf-8", errors="replace")

    def value(self, type_id: int, depth: int) -> Any:
        if type_id == GGUFValueType.STRING:
            length = self.read("Q")
            if length > self.size - self.pos:
                raise UnreadableGGUF(f"string length {length} exceeds the file")
            if length > (MAX_ITEM_STRING if depth else MAX_KEPT_STRING) or \
                    self.kept + length > MAX_KEPT_TOTAL:
                self.skip(length)
                return None
            self.kept += length
            return self.take(length).decode("utf-8", errors="replace")
        if type_id == GGUFValueType.ARRAY:
            return self.array(depth)
        fmt = _SCALAR_FORMATS.get(type_id)
        if fmt is None:
            raise UnreadableGGUF(f"unknown value type {type_id}")
        value = self.read(fmt)
        return None if isinstance(value, float) and not math.isfinite(value) else value

    def array(self, depth: int) -> Any:
        if depth >= MAX_DEPTH:
            raise UnreadableGGUF("arrays nested too deeply")
        item_type, count = self.read("I"), self.read("Q")
        fmt = _SCALAR_FORMATS.get(item_type)
        if fmt is None and item_type not in (GGUFValueType.STRING, GGUFValueType.ARRAY):
            raise UnreadableGGUF(f"unknown array item type {item_type}")
        item_bytes = struct.calcsize(fmt) if fmt else 8
        if count * item_bytes > self.size - self.pos:
            raise UnreadableGGUF(f"array length {count} exceeds the file")
        if count <= MAX_KEPT_ARRAY:
            return [self.value(item_type, depth + 1) for _ in range(count)]
        if fmt:
            self.skip(count * item_bytes)
        else:
            self._walk(item_type, count, depth)
        return ArraySummary(GGUFValueType(item_type).name.lower(), count)

    def _walk(self, item_type: int, count: int, depth: int) -> None:
        """Skip variable-size items one by one, with a cap on the total work per file."""
        self.walked += count
        if self.walked > MAX_WALKED_ITEMS:
            raise UnreadableGGUF("too many array items in the header")
        if item_type == GGUFValueType.ARRAY:
            for _ in range(count):
                self.array(depth + 1)
            return
        at, order, size, pos = self.window.at, self.order + "Q", self.size, self.pos
        for _ in range(count):
            if pos + 8 > size:
                raise UnreadableGGUF(f"truncated header at byte {pos}")
            buf, offset = at(pos, 8)
            pos += 8 + struct.unpack_from(order, buf, offset)[0]
            if pos > size:
                raise UnreadableGGUF("string in array exceeds the file")
        self.pos = pos

    def _tensors(self, count: int, metadata: dict[str, Any]) -> tuple[int, int]:
        """Read tensor infos; return parameter count and data bytes after checking data fits the file."""
        infos = [self._tensor_info() for _ in range(count)]
        alignment = metadata.get("general.alignment")
        alignment = alignment if isinstance(alignment, int) and 0 < alignment <= 1 << 16 else 32
        data_start = -(-self.pos // alignment) * alignment
        sizes = [_tensor_bytes(elements, type_id) for elements, type_id, _ in infos]
        for (_, _, offset), size in zip(infos, sizes, strict=True):
            if data_start + offset + size > self.size:
                raise UnreadableGGUF("truncated: tensor data extends past the end of the file")
        return sum(elements for elements, _, _ in infos), sum(sizes)

    def _tensor_info(self) -> tuple[int, int, int]:
        self.string(MAX_KEY_BYTES, "tensor name")
        n_dims = self.read("I")
        if n_dims > MAX_DIMS:
            raise UnreadableGGUF(f"tensor with {n_dims} dimensions")
        elements = math.prod(self.read("Q") for _ in range(n_dims))
        type_id, offset = self.read("I"), self.read("Q")
        return elements, type_id, offset


def _tensor_bytes(elements: int, type_id: int) -> int:
    """Bytes of a tensor; 0 for types this gguf release does not know (not checked)."""
    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
    except (ValueError, KeyError):
        return 0
    return elements // block * type_size
