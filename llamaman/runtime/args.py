"""The llama-server command line: built from launch settings, and parsed back ("parse command").

The internal API key is passed in the environment (`LLAMA_API_KEY`, llama-server's own
variable for `--api-key`) rather than on the command line, because every local user can
read command lines with `ps` (container processes included) but not another user's
environment.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Any

from llamaman.errors import Invalid
from llamaman.runtime.managed_flags import check_extra_args

if TYPE_CHECKING:
    from llamaman.runtime.launch_settings import LaunchSettings

API_KEY_ENV = "LLAMA_API_KEY"
GPU_ENV_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")

# Flags that parse_command maps onto settings (all take a value).
_VALUE_FLAGS = {
    "-m": "model_path",
    "--model": "model_path",
    "-ngl": "n_gpu_layers",
    "--gpu-layers": "n_gpu_layers",
    "--n-gpu-layers": "n_gpu_layers",
    "-c": "ctx_size",
    "--ctx-size": "ctx_size",
    "-np": "parallel",
    "--parallel": "parallel",
    "-t": "threads",
    "--threads": "threads",
    "--port": "port",
    "--spec-type": "spec_type",
    "--spec-draft-n-max": "draft_n_max",
    "--host": None,
    "--api-key": None,
    "--api-key-file": None,
}
_BOOL_FLAGS = {"--embedding": "embedding", "--embeddings": "embedding"}
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def build_args(settings: LaunchSettings, *, model: str, host: str, port: int) -> list[str]:
    """Return llama-server's arguments (without the binary) for these settings."""
    args = ["--model", model, "--host", host, "--port", str(port)]
    args += ["--n-gpu-layers", str(settings.n_gpu_layers), "--ctx-size", str(settings.ctx_size)]
    if settings.parallel is not None:
        args += ["--parallel", str(settings.parallel)]
    if settings.threads is not None:
        args += ["--threads", str(settings.threads)]
    if settings.embedding:
        args.append("--embeddings")
    if settings.spec_decoding:
        args += ["--spec-type", "draft-mtp"]
        if settings.draft_n_max is not None:
            args += ["--spec-draft-n-max", str(settings.draft_n_max)]
    check_extra_args(settings.extra_args)
    return args + list(settings.extra_args)


def parse_command(cmdline: str) -> dict[str, Any]:
    """Turn a `llama-server …` command line into launch settings; unknown flags go to extra_args.

    The result has launch-body keys for what the command sets, plus `extra_args` (a shell
    string) and `ignored` (flags llamaman manages itself, such as --host and --api-key).
    """
    try:
        tokens = shlex.split(cmdline)
    except ValueError as exc:
        raise Invalid(f"command: {exc}", field="command") from None
    result: dict[str, Any] = {}
    tokens = _take_env(tokens, result)
    if tokens and not _is_flag(tokens[0]):
        tokens = tokens[1:]  # the binary, whatever its path
    found, extra, ignored = _scan(tokens)
    _apply(found, result, extra)
    result["extra_args"] = shlex.join(extra)
    result["ignored"] = ignored + result.pop("_ignored_env", [])
    return result


def _is_flag(token: str) -> bool:
    return token.startswith("-") and not _NUMBER.match(token)


def _take_env(tokens: list[str], result: dict[str, Any]) -> list[str]:
    """Consume leading VAR=value words; GPU visibility becomes gpu_devices."""
    ignored = []
    while tokens and _ENV_ASSIGN.match(tokens[0]):
        name, value = tokens[0].split("=", 1)
        if name in GPU_ENV_VARS:
            result["gpu_devices"] = value
        else:
            ignored.append(name)
        tokens = tokens[1:]
    result["_ignored_env"] = ignored
    return tokens


def _scan(tokens: list[str]) -> tuple[dict[str, str | bool], list[str], list[str]]:
    """Split tokens into known settings (last one wins), extra tokens and ignored flags."""
    found: dict[str, str | bool] = {}
    extra: list[str] = []
    ignored: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        flag, eq, inline = token.partition("=")
        if flag in _VALUE_FLAGS:
            value, i = (inline, i + 1) if eq else (_value_at(tokens, i + 1, flag), i + 2)
            key = _VALUE_FLAGS[flag]
            if key is None:
                ignored.append(flag)
            else:
                found[key] = value
            continue
        if token in _BOOL_FLAGS:
            found[_BOOL_FLAGS[token]] = True
        else:
            extra.append(token)
        i += 1
    return found, extra, ignored


def _value_at(tokens: list[str], index: int, flag: str) -> str:
    if index >= len(tokens):
        raise Invalid(f"command: {flag} needs a value", field="command", flag=flag)
    return tokens[index]


def _apply(found: dict[str, str | bool], result: dict[str, Any], extra: list[str]) -> None:
    """Convert the raw values found into launch-body fields."""
    for key in ("ctx_size", "parallel", "threads", "port"):
        if key in found:
            result[key] = _to_int(key, found[key])
    if "n_gpu_layers" in found:
        value = str(found["n_gpu_layers"])
        if value == "all":
            result["n_gpu_layers"] = -1
        elif _NUMBER.match(value):
            result["n_gpu_layers"] = int(value)
        else:
            extra[:0] = ["--n-gpu-layers", value]  # e.g. "auto": keep llama.cpp's meaning
    if "model_path" in found:
        result["model_path"] = found["model_path"]
    if found.get("embedding"):
        result["embedding"] = True
    _apply_spec(found, result, extra)


def _apply_spec(found: dict[str, str | bool], result: dict[str, Any], extra: list[str]) -> None:
    """MTP drafting maps onto the settings; other draft types stay in extra_args."""
    spec_type = found.get("spec_type")
    n_max = found.get("draft_n_max")
    if spec_type == "draft-mtp":
        result["spec_decoding"] = True
        result["draft_n_max"] = _to_int("draft_n_max", n_max) if n_max is not None else None
        return
    if spec_type is not None:
        extra += ["--spec-type", str(spec_type)]
    if n_max is not None:
        extra += ["--spec-draft-n-max", str(n_max)]


def _to_int(key: str, value: str | bool) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise Invalid(
            f"command: {key} expects an integer, got {value!r}", field="command"
        ) from None
