"""Model entries (the JSON the API shows) built from parsed GGUF headers and HF folders."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from llamaman.instances.records import model_stem
from llamaman.models.gguf_constants import LlamaFileType
from llamaman.models.gguf_header import ArraySummary, UnreadableGGUF, read_header
from llamaman.models.scanner import SHARD_RE, FileInfo, HfDir

QUANT_RE = re.compile(
    r"(?:^|[-_.])(I?Q\d+(?:_[A-Z0-9]+)*|BF16|F16|F32|MXFP4(?:_MOE)?)(?=$|[-_.])", re.IGNORECASE)
MAX_JSON_BYTES = 8 << 20  # config.json / tokenizer_config.json read limit
CHAT_TEMPLATE_KEY = "tokenizer.chat_template"


@dataclass
class Parsed:
    """One GGUF file's header, reduced to JSON-safe values, or why it could not be read."""

    metadata: dict[str, Any] = field(default_factory=dict)
    chat_template: str | None = None
    parameter_count: int = 0
    error: str | None = None


def parse_gguf(path: str) -> Parsed:
    """Read the header of one GGUF file; never raises for a bad file."""
    try:
        header = read_header(path)
    except UnreadableGGUF as exc:
        return Parsed(error=str(exc))
    metadata = {key: _json_safe(value) for key, value in header.metadata.items()}
    template = metadata.pop(CHAT_TEMPLATE_KEY, None)
    if template is not None or CHAT_TEMPLATE_KEY in header.metadata:
        metadata[CHAT_TEMPLATE_KEY] = "<chat template>"  # kept out of the big metadata dict
    return Parsed(metadata, template if isinstance(template, str) else None, header.parameter_count)


def _json_safe(value: Any) -> Any:
    if isinstance(value, ArraySummary):
        return value.to_json()
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def shard_key(path: str) -> tuple[str, int, int] | None:
    """(group key, index, total) for `name-0000K-of-0000N.gguf`, else None."""
    match = SHARD_RE.match(os.path.basename(path))
    if not match:
        return None
    group = os.path.join(os.path.dirname(path), match["base"].lower() + f"-of-{match['total']}")
    return group, int(match["index"]), int(match["total"])


def group_shards(files: list[FileInfo]) -> list[list[FileInfo]]:
    """Single files as one-element groups; shards of one model together, ordered by index."""
    groups: dict[str, list[tuple[int, FileInfo]]] = {}
    for info in files:
        key = shard_key(info.path)
        groups.setdefault(key[0] if key else info.path, []).append((key[1] if key else 1, info))
    return [[info for _, info in sorted(members, key=lambda m: m[0])] for members in groups.values()]


def is_mmproj(path: str, parsed: Parsed) -> bool:
    """A multimodal projector, listed on its sibling models rather than as a model."""
    arch = parsed.metadata.get("general.architecture")
    return "mmproj" in os.path.basename(path).lower() or arch == "clip" or \
        parsed.metadata.get("general.type") == "mmproj"


def gguf_entry(shards: list[FileInfo], parsed: list[Parsed], repo_id: str | None) -> dict[str, Any]:
    """The list entry of one GGUF model (all shards together)."""
    first, head = shards[0], parsed[0]
    entry: dict[str, Any] = {
        "path": first.path, "name": model_stem(first.path), "type": "gguf",
        "size": sum(s.size for s in shards), "modified": max(s.mtime_ns for s in shards) / 1e9,
        "quant": None, "architecture": None, "parameter_size": None, "layers": None,
        "context_length": None, "has_chat_template": False, "shards": len(shards),
        "repo_id": repo_id, "mmproj": None, "unreadable": False,
    }
    entry.update(size_fields(entry["size"]))
    key = shard_key(first.path)
    if key and (key[1] != 1 or len(shards) != key[2]):
        entry["incomplete"] = True
    errors = [p.error for p in parsed if p.error]
    if errors:
        entry.update(unreadable=True, reason=errors[0], quant=quant_from_name(first.path))
        return entry
    entry.update(_gguf_fields(head, first.path))
    entry["parameter_size"] = entry["parameter_size"] or format_params(sum(p.parameter_count for p in parsed))
    return entry


def size_fields(size: int) -> dict[str, Any]:
    """LlamaMan 1.2.1's size fields beside `size`: bytes and '241 MB' / '4.1 GB' (binary units)."""
    display = f"{size / 1024**3:.1f} GB" if size >= 1024**3 else f"{size / 1024**2:.0f} MB"
    return {"size_bytes": size, "size_display": display}


def _gguf_fields(head: Parsed, path: str) -> dict[str, Any]:
    meta = head.metadata
    arch = meta.get("general.architecture")
    arch = arch if isinstance(arch, str) else None
    label = meta.get("general.size_label")
    return {
        "architecture": arch,
        "quant": file_type_name(meta.get("general.file_type")) or quant_from_name(path),
        "parameter_size": label if isinstance(label, str) and label else None,
        "layers": _int_or_none(meta.get(f"{arch}.block_count")),
        "context_length": _int_or_none(meta.get(f"{arch}.context_length")),
        "has_chat_template": CHAT_TEMPLATE_KEY in meta,
    }


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def file_type_name(value: Any) -> str | None:
    """general.file_type as a quant name (15 → Q4_K_M); None when absent or unknown."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        name = LlamaFileType(value).name
    except ValueError:
        return None
    return None if name == "GUESSED" else name.removeprefix("MOSTLY_").removeprefix("ALL_")


def quant_from_name(path: str) -> str | None:
    """The quant type spelled in a file name (model-Q4_K_M.gguf → Q4_K_M)."""
    stem = model_stem(path)
    key = shard_key(path)
    if key:
        stem = stem[: -len("-00001-of-00001")]
    matches = QUANT_RE.findall(stem)
    return matches[-1].upper() if matches else None


def format_params(count: int) -> str | None:
    """A parameter count as a size label (268098176 → 268.1M)."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.1f}".removesuffix(".0") + suffix
    return str(count) if count else None


def read_json(path: str) -> dict[str, Any] | None:
    """A small JSON object file, or None when missing, too large or malformed."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_JSON_BYTES + 1)
        value = json.loads(data) if len(data) <= MAX_JSON_BYTES else None
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def hf_entry(folder: HfDir, config: dict[str, Any] | None, tokenizer: dict[str, Any] | None,
             repo_id: str | None) -> dict[str, Any]:
    """The list entry of one HuggingFace model folder."""
    entry: dict[str, Any] = {
        "path": folder.path, "name": os.path.basename(folder.path).lower(), "type": "hf",
        "size": folder.size, "modified": folder.mtime_ns / 1e9, "quant": None, "architecture": None,
        "parameter_size": None, "layers": None, "context_length": None,
        "has_chat_template": "chat_template.jinja" in folder.files or bool(
            tokenizer and isinstance(tokenizer.get("chat_template"), (str, list))),
        "shards": 1, "repo_id": repo_id, "mmproj": None, "unreadable": config is None,
    }
    entry.update(size_fields(folder.size))
    if config is None:
        entry["reason"] = "config.json is missing, too large or not a JSON object"
        return entry
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    archs = config.get("architectures")
    entry["architecture"] = archs[0] if isinstance(archs, list) and archs and isinstance(
        archs[0], str) else _str_or_none(config.get("model_type"))
    entry["layers"] = _int_or_none(config.get("num_hidden_layers", text.get("num_hidden_layers")))
    entry["context_length"] = _int_or_none(
        config.get("max_position_embeddings", text.get("max_position_embeddings")))
    quant = config.get("quantization_config")
    entry["quant"] = _str_or_none(quant.get("quant_method")) if isinstance(quant, dict) else \
        _str_or_none(config.get("torch_dtype", config.get("dtype")))
    return entry


def _str_or_none(value: Any) -> str | None:
    return value[:64] if isinstance(value, str) else None
