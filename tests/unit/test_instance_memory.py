"""The memory estimate from the GGUF header (weights, KV cache) used when llama-server logs no sizes."""
from __future__ import annotations

import pytest

from llamaman.compat.localai_memory import (
    ESTIMATED,
    REPORTED,
    cache_types_of,
    estimate_breakdown,
    instance_memory,
    kv_cache_bytes,
    model_files,
)
from llamaman.models.gguf_header import read_header
from tests.modelkit import write_gguf

MIB = 2**20
# Llama-3-8B's attention: 32 layers, 32 query heads, 8 KV heads of 128 over a 4096 embedding.
LLAMA3_8B = {"general.architecture": "llama", "llama.block_count": 32, "llama.embedding_length": 4096,
             "llama.attention.head_count": 32, "llama.attention.head_count_kv": 8}


def test_kv_cache_follows_context_layers_and_cache_types():
    f16 = kv_cache_bytes(LLAMA3_8B, 8192, "f16", "f16")
    assert f16 == 1024 * MIB  # the well-known 1 GiB of Llama-3-8B at 8k context in f16
    assert kv_cache_bytes(LLAMA3_8B, 4096, "f16", "f16") == f16 // 2
    assert kv_cache_bytes(LLAMA3_8B, 8192, "f32", "f32") == 2 * f16
    q8 = kv_cache_bytes(LLAMA3_8B, 8192, "q8_0", "q8_0")
    assert q8 == f16 * 34 // 64  # q8_0: 34 bytes per block of 32
    assert kv_cache_bytes(LLAMA3_8B, 8192, "q8_0", "f16") == (q8 + f16) // 2


def test_kv_cache_per_layer_heads_and_explicit_head_sizes():
    uniform = {**LLAMA3_8B, "llama.attention.key_length": 128, "llama.attention.value_length": 128}
    assert kv_cache_bytes(uniform, 1024, "f16", "f16") == kv_cache_bytes(LLAMA3_8B, 1024, "f16", "f16")
    half = {**LLAMA3_8B, "llama.attention.head_count_kv": [8, 0] * 16}  # every other layer has no KV
    assert kv_cache_bytes(half, 1024, "f16", "f16") * 2 == kv_cache_bytes(LLAMA3_8B, 1024, "f16", "f16")
    assert kv_cache_bytes({"general.architecture": "mamba", "mamba.block_count": 4}, 1024, "f16", "f16") is None


@pytest.mark.parametrize(("extra_args", "environment", "expected"), [
    ("", {}, ("f16", "f16")),
    ("--cache-type-k q8_0", {}, ("q8_0", "f16")),
    ("-ctk q4_0 -ctv Q8_0 --flash-attn on", {}, ("q4_0", "q8_0")),
    ("--cache-type-v=q5_1", {}, ("f16", "q5_1")),
    ("", {"LLAMA_ARG_CACHE_TYPE_K": "q8_0"}, ("q8_0", "f16")),
    ("-ctk f32", {"LLAMA_ARG_CACHE_TYPE_K": "q8_0"}, ("f32", "f16")),  # the flag wins, as in llama-server
    ("-ctk", {}, ("f16", "f16")),
])
def test_cache_types_from_flags_and_environment(extra_args, environment, expected):
    assert cache_types_of(extra_args, environment) == expected


def test_estimate_reads_weights_and_context_from_the_header(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", layers=2, context=1024, tensors=3,
                      extra={"llama.embedding_length": 64, "llama.attention.head_count": 4,
                             "llama.attention.head_count_kv": 2})
    record = {"model_path": str(path), "settings": {"ctx_size": 0, "extra_args": ""}, "environment": {}}
    estimate = estimate_breakdown(record)
    assert estimate["weights"] == read_header(path).tensor_bytes == 3 * 4 * 8 * 4  # three f32 4x8 tensors
    per_layer_cell = 2 * 16 * 2 * 2  # KV heads x head size x (K + V) x f16 bytes
    assert estimate["kv_cache"] == 1024 * 2 * per_layer_cell  # ctx 0: the model's context length
    record["settings"]["ctx_size"] = 256
    assert estimate_breakdown(record)["kv_cache"] == 256 * 2 * per_layer_cell
    breakdown, sources = instance_memory(record, tmp_path / "no-such.log")
    assert breakdown == estimate_breakdown(record) and set(sources.values()) == {ESTIMATED}


def test_reported_sizes_win_over_the_estimate(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", extra={"llama.embedding_length": 64, "llama.attention.head_count": 4})
    log = tmp_path / "i.log"
    log.write_text("[llamaman 2026-01-01] launching m.gguf\nload_tensors: CPU model buffer size = 2.00 MiB\n")
    breakdown, sources = instance_memory({"model_path": str(path), "settings": {}}, log)
    assert breakdown == {"weights": 2 * MIB} and sources == {"weights": REPORTED}


def test_split_models_sum_their_shards_and_unreadable_ones_give_nothing(tmp_path):
    for index in (1, 2):
        write_gguf(tmp_path / f"big-0000{index}-of-00002.gguf", tensors=index)
    write_gguf(tmp_path / "other-00001-of-00002.gguf", tensors=5)
    first = str(tmp_path / "big-00001-of-00002.gguf")
    assert [p.rsplit("/", 1)[1] for p in model_files(first)] == ["big-00001-of-00002.gguf",
                                                                 "big-00002-of-00002.gguf"]
    assert estimate_breakdown({"model_path": first, "settings": {}})["weights"] == 3 * 4 * 8 * 4
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\xff" * 20)
    assert estimate_breakdown({"model_path": str(junk), "settings": {}}) == {}
