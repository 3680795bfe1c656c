"""Solar Host's instance JSON (seed 003) ↔ llamaman launch bodies and instance views.

A Solar config maps onto a launch body: `model` is the GGUF path, `alias` the instance name,
`threads`, `n_gpu_layers`, `ctx_size` and `port` are launch fields, and the sampling defaults,
`chat_template_file` and `special` become the llama-server flags Solar Host passes.
`host` and `api_key` are accepted for compatibility: llamaman serves every public port itself
and guards it with its own keys, so neither reaches llama-server.
"""
from __future__ import annotations

import re
import shlex
from typing import Any

from llamaman.errors import Invalid
from llamaman.validation import require_object

LAUNCH_FIELDS = {"model": "model_path", "alias": "name", "threads": "threads",
                 "n_gpu_layers": "n_gpu_layers", "ctx_size": "ctx_size", "port": "port"}
# Sampling defaults: llama-server flag and the seed's range (None: no upper bound).
SAMPLING = {"temp": ("--temp", 0.0, 2.0), "top_p": ("--top-p", 0.0, 1.0),
            "top_k": ("--top-k", 0, None), "min_p": ("--min-p", 0.0, 1.0)}
TEMPLATE_FLAG = "--chat-template-file"
SPECIAL_FLAG = "--special"
PUBLIC_HOST = "0.0.0.0"
KNOWN = frozenset({*LAUNCH_FIELDS, *SAMPLING, "chat_template_file", "special", "host", "api_key"})
STATUS = {"healthy": "running", "starting": "starting", "sleeping": "stopped", "stopped": "stopped",
          "failed": "failed"}


def launch_body(raw: Any) -> dict[str, Any]:
    """A Solar create/update body (`{"config": {...}}`) as a llamaman launch body."""
    config = require_object(require_object(raw).get("config"), "config")
    unknown = sorted(set(config) - KNOWN)
    if unknown:
        raise Invalid(f"unknown config field(s): {', '.join(unknown)}", fields=unknown)
    for field in ("model", "alias"):
        if not isinstance(config.get(field), str) or not config[field].strip():
            raise Invalid(f"config.{field} is required (a non-empty string)", field=f"config.{field}")
    _check_accepted(config)
    body = {LAUNCH_FIELDS[k]: v for k, v in config.items() if k in LAUNCH_FIELDS}
    flags = _sampling_flags(config)
    template = config.get("chat_template_file")
    if template is not None:
        if not isinstance(template, str) or not template.strip():
            raise Invalid("config.chat_template_file must be a file path", field="config.chat_template_file")
        flags += [TEMPLATE_FLAG, template]
    special = config.get("special", False)
    if not isinstance(special, bool):
        raise Invalid("config.special must be true or false", field="config.special")
    if special:
        flags.append(SPECIAL_FLAG)
    body["extra_args"] = shlex.join(flags)
    return body


def instance_view(instance: dict[str, Any]) -> dict[str, Any]:
    """An instance as Solar Host shows it (plus llamaman's raw status)."""
    return {
        "id": instance["id"],
        "config": config_view(instance),
        "status": STATUS.get(instance["status"], instance["status"]),
        "port": instance["port"],
        "error_message": instance.get("error"),
        "created_at": instance.get("created_at"),
        "started_at": instance.get("started_at"),
        "llamaman_status": instance["status"],
    }


def config_view(instance: dict[str, Any]) -> dict[str, Any]:
    """The Solar config of an instance; flags Solar does not name stay in `extra_args`."""
    config = {"model": instance["model_path"], "alias": instance["name"], "threads": instance.get("threads"),
              "n_gpu_layers": instance.get("n_gpu_layers"), "ctx_size": instance.get("ctx_size"),
              "host": PUBLIC_HOST, "port": instance["port"], "special": False}
    tokens = shlex.split(instance.get("extra_args") or "")
    rest: list[str] = []
    names = {flag: key for key, (flag, _, _) in SAMPLING.items()} | {TEMPLATE_FLAG: "chat_template_file"}
    while tokens:
        token = tokens.pop(0)
        if token in names and tokens:
            value = tokens.pop(0)
            config[names[token]] = value if token == TEMPLATE_FLAG else _number(value)
        elif token == SPECIAL_FLAG:
            config["special"] = True
        else:
            rest.append(token)
    if rest:
        config["extra_args"] = shlex.join(rest)
    return config


def _sampling_flags(config: dict[str, Any]) -> list[str]:
    flags: list[str] = []
    for key, (flag, low, high) in SAMPLING.items():
        value = config.get(key)
        if value is None:
            continue
        whole = isinstance(low, int)
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) \
                or value < low or (high is not None and value > high):
            bound = f"{low}-{high}" if high is not None else f">= {low}"
            kind = "an integer" if whole else "a number"
            raise Invalid(f"config.{key} must be {kind} in {bound}", field=f"config.{key}")
        flags += [flag, str(value)]
    return flags


def _check_accepted(config: dict[str, Any]) -> None:
    host = config.get("host", PUBLIC_HOST)
    if host != PUBLIC_HOST:
        raise Invalid(f"config.host must be {PUBLIC_HOST!r}: llamaman serves every instance's public port "
                      "on all interfaces itself", field="config.host")
    key = config.get("api_key")
    if key is not None and not isinstance(key, str):
        raise Invalid("config.api_key must be a string", field="config.api_key")


def _number(text: str) -> int | float | str:
    """A flag's value as the number it was given as (flags set by hand may hold anything)."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return float(text) if re.fullmatch(r"-?\d+(\.\d*)?(e[-+]?\d+)?", text) else text
