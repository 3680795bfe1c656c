"""Builders of real model files for the model-library tests (no tests here).

GGUF files are written with the `gguf` package's GGUFWriter; hostile headers are packed by hand.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import gguf
import numpy as np

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def write_gguf(path: Path, *, arch: str = "llama", layers: int | None = 4, context: int | None = 2048,
               file_type: int | None = 15, template: str | None = TEMPLATE, size_label: str | None = None,
               tensors: int = 1, extra: dict | None = None,
               endian: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE) -> Path:
    """Write a small, valid GGUF file; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch=arch, endianess=endian)
    if layers is not None:
        writer.add_block_count(layers)
    if context is not None:
        writer.add_context_length(context)
    if file_type is not None:
        writer.add_file_type(file_type)
    if template is not None:
        writer.add_chat_template(template)
    if size_label is not None:
        writer.add_size_label(size_label)
    for key, value in (extra or {}).items():
        writer.add_key_value(key, value, gguf.GGUFValueType.get_type(value))
    for index in range(tensors):
        writer.add_tensor(f"blk.{index}.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_shards(directory: Path, base: str, total: int, present: list[int] | None = None) -> list[Path]:
    """Write `base-0000K-of-0000N.gguf` shards (all of them unless `present` names some)."""
    paths = []
    for index in present or range(1, total + 1):
        path = directory / f"{base}-{index:05d}-of-{total:05d}.gguf"
        meta = {"split.no": index - 1, "split.count": total}
        if index == 1:
            write_gguf(path, extra=meta, size_label="7B")
        else:
            write_gguf(path, arch="llama", layers=None, context=None, file_type=None, template=None,
                       extra=meta)
        paths.append(path)
    return paths


def write_hf_dir(directory: Path, *, template: bool = True) -> Path:
    """A HuggingFace model folder with config.json, tokenizer config and a weights file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 22,
        "max_position_embeddings": 8192, "torch_dtype": "bfloat16"}))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": "{{ x }}"} if template else {"bos_token": "<s>"}))
    (directory / "model.safetensors").write_bytes(b"\0" * 1000)
    return directory


def gguf_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def hostile_header(*, version: int = 3, tensors: int = 0, kv_count: int = 1, body: bytes = b"") -> bytes:
    """A GGUF preamble with arbitrary counts followed by raw key/value bytes."""
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kv_count) + body
