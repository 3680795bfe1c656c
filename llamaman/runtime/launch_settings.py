"""Launch settings of one llama-server instance: parsing, range checks, round trip to JSON.

The JSON shape is the README launch body (`memory_limit` "32g", `gpu_devices` "0,1",
`extra_args` a shell string); `LaunchSettings` holds the parsed, validated values.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from llamaman.config import ConfigError, parse_gpu_devices
from llamaman.errors import Invalid
from llamaman.runtime.managed_flags import check_extra_args

# Docker's own minimum memory limit; a smaller cap could never start anything.
MIN_MEMORY_LIMIT = 6 * 1024**2
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)

# (low, high) per integer field; None means "not set" and is always allowed.
RANGES: dict[str, tuple[int, int]] = {
    "n_gpu_layers": (-1, 100_000),
    "ctx_size": (0, 16_777_216),
    "parallel": (1, 256),
    "threads": (1, 1024),
    "draft_n_max": (1, 64),
}


@dataclass(frozen=True)
class LaunchSettings:
    """Everything baked into a llama-server launch (changes need a relaunch)."""

    n_gpu_layers: int = -1
    ctx_size: int = 4096
    parallel: int | None = None
    threads: int | None = None
    memory_limit: int | None = None
    gpu_devices: tuple[int, ...] | None = None
    embedding: bool = False
    spec_decoding: bool = False
    draft_n_max: int | None = 2
    extra_args: tuple[str, ...] = field(default=())

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> LaunchSettings:
        """Parse and range-check the settings fields of a launch body; other keys are ignored."""
        values: dict[str, Any] = {}
        for name in RANGES:
            if name in body:
                values[name] = _integer(
                    name, body[name], optional=name not in ("n_gpu_layers", "ctx_size")
                )
        for name in ("embedding", "spec_decoding"):
            if name in body:
                values[name] = _boolean(name, body[name])
        if "memory_limit" in body:
            values["memory_limit"] = parse_memory_limit(body["memory_limit"])
        if "gpu_devices" in body:
            values["gpu_devices"] = _gpu_devices(body["gpu_devices"])
        if "extra_args" in body:
            values["extra_args"] = split_extra_args(body["extra_args"])
        return cls(**{k: v for k, v in values.items() if k in _FIELD_NAMES})

    def to_body(self) -> dict[str, Any]:
        """Return the launch-body form of these settings (inverse of from_body)."""
        return {
            "n_gpu_layers": self.n_gpu_layers,
            "ctx_size": self.ctx_size,
            "parallel": self.parallel,
            "threads": self.threads,
            "memory_limit": format_memory_limit(self.memory_limit),
            "gpu_devices": ",".join(map(str, self.gpu_devices)) if self.gpu_devices else "",
            "embedding": self.embedding,
            "spec_decoding": self.spec_decoding,
            "draft_n_max": self.draft_n_max,
            "extra_args": shlex.join(self.extra_args),
        }


_FIELD_NAMES = {f.name for f in fields(LaunchSettings)}


def parse_memory_limit(value: object) -> int | None:
    """Parse "32g", "8192m", "512MiB" or a byte count into bytes; None/"" means no limit."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Invalid(
            f"memory_limit: expected a size like 32g or 8192m, got {value!r}", field="memory_limit"
        )
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise Invalid(
                f"memory_limit: expected a size like 32g or 8192m, got {value!r}",
                field="memory_limit",
            )
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < MIN_MEMORY_LIMIT:
        raise Invalid(f"memory_limit: must be at least 6m, got {value!r}", field="memory_limit")
    return size


def format_memory_limit(size: int | None) -> str | None:
    """Format bytes as the shortest exact Docker size string ("32g", "8192m", "1536k")."""
    if size is None:
        return None
    for unit in ("t", "g", "m", "k"):
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


def split_extra_args(value: object) -> tuple[str, ...]:
    """Split Extra Args (a shell string or a list) into tokens; forbidden flags raise Invalid."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        tokens = tuple(value)
    elif isinstance(value, str):
        try:
            tokens = tuple(shlex.split(value))
        except ValueError as exc:
            raise Invalid(f"extra_args: {exc}", field="extra_args") from None
    else:
        raise Invalid("extra_args: expected a string", field="extra_args")
    check_extra_args(tokens)
    return tokens


def _integer(name: str, value: object, *, optional: bool) -> int | None:
    if value is None or value == "":
        if optional:
            return None
        raise Invalid(f"{name}: a number is required", field=name)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Invalid(f"{name}: expected an integer, got {value!r}", field=name)
    try:
        number = int(value)
    except ValueError:
        raise Invalid(f"{name}: expected an integer, got {value!r}", field=name) from None
    low, high = RANGES[name]
    if not low <= number <= high:
        raise Invalid(f"{name}: must be between {low} and {high}, got {number}", field=name)
    return number


def _boolean(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    raise Invalid(f"{name}: expected true or false, got {value!r}", field=name)


def _gpu_devices(value: object) -> tuple[int, ...] | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "all")):
        return None
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    try:
        return parse_gpu_devices(str(value).replace(" ", ""), "gpu_devices")
    except ConfigError as exc:
        raise Invalid(str(exc), field="gpu_devices") from None
