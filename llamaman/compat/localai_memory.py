"""Memory per component of an instance: llama-server's own figures when it logs them, else an
estimate from the GGUF header.

llama-server logs `… buffer size = N MiB` lines (model weights, KV cache, compute and output
buffers, per device) only from `--log-verbosity 4`; at the default verbosity neither its log nor
`/props`, `/slots` or `/metrics` tell memory. The estimate then gives the two big parts:
weights = the tensor data in the file(s), KV cache = n_ctx × Σ layers (n_embd_k_gqa × bytes of
the K cache type + n_embd_v_gqa × bytes of the V cache type).
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

from llamaman.models.entries import shard_key
from llamaman.models.gguf_constants import GGML_QUANT_SIZES, GGMLQuantizationType
from llamaman.models.gguf_header import UnreadableGGUF, read_header
from llamaman.runtime.base import tail_lines

# The manager's line before each launch: only the newest load counts (logs are appended to).
LAUNCH_MARK = re.compile(r"^\[llamaman [^\]]*\] launching ")
_BUFFER = re.compile(r"\b(model|KV|RS|compute|output) buffer size\s*=\s*([\d.]+)\s*(B|KiB|MiB|GiB)\b")
COMPONENT = {"model": "weights", "KV": "kv_cache", "RS": "recurrent_state", "compute": "compute_buffers",
             "output": "output_buffers"}
_UNIT = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
SCAN_LINES = 5000
REPORTED, ESTIMATED = "reported", "estimated"
DEFAULT_CACHE_TYPE = "f16"
# llama-server's cache-type flags and the environment variables it reads for them.
CACHE_FLAGS = {"-ctk": "k", "--cache-type-k": "k", "-ctv": "v", "--cache-type-v": "v"}
CACHE_ENV = {"LLAMA_ARG_CACHE_TYPE_K": "k", "LLAMA_ARG_CACHE_TYPE_V": "v"}


def instance_memory(record: dict[str, Any], log_path: Path | str) -> tuple[dict[str, int], dict[str, str]]:
    """Bytes per component and the source of each (`reported` or `estimated`); ({}, {}) if neither."""
    reported = memory_breakdown(log_path)
    if reported:
        return reported, dict.fromkeys(reported, REPORTED)
    estimated = estimate_breakdown(record)
    return estimated, dict.fromkeys(estimated, ESTIMATED)


def memory_breakdown(log_path: Path | str) -> dict[str, int]:
    """Bytes per component of the newest load in the log ({} when it reports none)."""
    lines = tail_lines(log_path, SCAN_LINES, max_bytes=4 * 2**20)
    return parse_breakdown(lines)


def parse_breakdown(lines: list[str]) -> dict[str, int]:
    """Bytes per component from the lines after the last launch mark."""
    start = max((i for i, line in enumerate(lines) if LAUNCH_MARK.match(line)), default=-1)
    totals: dict[str, int] = {}
    for line in lines[start + 1:]:
        match = _BUFFER.search(line)
        if match:
            key = COMPONENT[match.group(1)]
            totals[key] = totals.get(key, 0) + round(float(match.group(2)) * _UNIT[match.group(3)])
    return totals


def estimate_breakdown(record: dict[str, Any]) -> dict[str, int]:
    """`weights` and `kv_cache` of an instance from its GGUF header and launch settings ({} if unreadable)."""
    path = record.get("real_model_path") or record["model_path"]
    try:
        headers = [read_header(p) for p in model_files(path)]
    except UnreadableGGUF:
        return {}
    settings = record.get("settings") or {}
    cache_types = cache_types_of(settings.get("extra_args") or "", record.get("environment") or {})
    metadata = headers[0].metadata
    n_ctx = settings.get("ctx_size") or _arch_value(metadata, "context_length") or 0
    estimate = {"weights": sum(h.tensor_bytes for h in headers)}
    kv = kv_cache_bytes(metadata, int(n_ctx), *cache_types)
    if kv is not None:
        estimate["kv_cache"] = kv
    return estimate


def kv_cache_bytes(metadata: dict[str, Any], n_ctx: int, type_k: str, type_v: str) -> int | None:
    """n_ctx × Σ layers (n_embd_k_gqa × bytes(K) + n_embd_v_gqa × bytes(V)); None without attention."""
    layers = _arch_value(metadata, "block_count")
    heads = _arch_value(metadata, "attention.head_count")
    embd = _arch_value(metadata, "embedding_length")
    if not isinstance(layers, int) or not heads or not isinstance(embd, int):
        return None
    heads_kv = _per_layer(_arch_value(metadata, "attention.head_count_kv", heads), layers)
    heads = _per_layer(heads, layers)
    per_cell = 0.0
    for n_head, n_head_kv in zip(heads, heads_kv, strict=True):
        key_len = _arch_value(metadata, "attention.key_length") or (embd // n_head if n_head else 0)
        value_len = _arch_value(metadata, "attention.value_length") or key_len
        per_cell += n_head_kv * (key_len * element_bytes(type_k) + value_len * element_bytes(type_v))
    return round(n_ctx * per_cell)


def element_bytes(cache_type: str) -> float:
    """Bytes per element of a ggml type (a quantised block's size spread over its elements)."""
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[cache_type.upper()]]
    return size / block


def cache_types_of(extra_args: str, environment: dict[str, str]) -> tuple[str, str]:
    """The K and V cache types llama-server uses: flags first, then its environment, else f16."""
    found = {side: environment[name].strip().lower() for name, side in CACHE_ENV.items() if environment.get(name)}
    tokens = shlex.split(extra_args)
    for i, token in enumerate(tokens):
        flag, _, inline = token.partition("=")
        if flag in CACHE_FLAGS and (inline or i + 1 < len(tokens)):
            found[CACHE_FLAGS[flag]] = (inline or tokens[i + 1]).lower()
    types = (found.get("k", DEFAULT_CACHE_TYPE), found.get("v", DEFAULT_CACHE_TYPE))
    return tuple(t if t.upper() in GGMLQuantizationType.__members__ else DEFAULT_CACHE_TYPE for t in types)


def model_files(path: str) -> list[str]:
    """The model's file, or all shards of a split model (`name-0000K-of-0000N.gguf`)."""
    key = shard_key(path)
    if key is None:
        return [path]
    folder = os.path.dirname(path)
    siblings = (os.path.join(folder, name) for name in os.listdir(folder))
    return sorted(p for p in siblings if (shard_key(p) or (None,))[0] == key[0]) or [path]


def _arch_value(metadata: dict[str, Any], key: str, default: Any = None) -> Any:
    return metadata.get(f"{metadata.get('general.architecture')}.{key}", default)


def _per_layer(value: Any, layers: int) -> list[int]:
    """A per-layer hyperparameter as a list (GGUF stores it as one number or one per layer)."""
    if isinstance(value, list) and len(value) == layers and all(isinstance(v, int) for v in value):
        return value
    return [value if isinstance(value, int) else 0] * layers
