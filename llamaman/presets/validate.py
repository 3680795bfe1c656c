"""Preset input rules: the model path a preset is keyed by, and its launch-setting fields.

Field values are checked by the launch validators themselves (`parse_options`,
`LaunchSettings.from_body`), so a preset accepts exactly what a launch accepts.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from llamaman.errors import Invalid, LlamamanError
from llamaman.instances.records import (
    LIVE_DEFAULTS,
    RESTART_DEFAULTS,
    SETTINGS_FIELDS,
    parse_options,
)
from llamaman.runtime.launch_settings import LaunchSettings
from llamaman.storage._common import MAX_KEY_LEN
from llamaman.validation import require_object

OPTION_FIELDS = frozenset(LIVE_DEFAULTS) | frozenset(RESTART_DEFAULTS)  # applied live
RELAUNCH_FIELDS = SETTINGS_FIELDS  # baked into llama-server: need a relaunch
PRESET_FIELDS = OPTION_FIELDS | RELAUNCH_FIELDS
# LlamaMan 1.2.1's preset fields without a launch meaning here: stored and shown, never launched.
EXTRA_FIELDS: dict[str, type] = {"favorite": bool, "note": str, "share_queue_group": str,
                                 "share_queue_fallback": bool}
# LlamaMan 1.2.1's names of fields we have under another name.
UPSTREAM_NAMES = {"spec_enabled": "spec_decoding", "spec_draft_n_max": "draft_n_max",
                  "embedding_model": "embedding", "auto_restart_on_crash": "auto_restart"}
# A final name with an extension like ".txt" or ".json" names a file that is not a model;
# directory names such as "Qwen2.5-0.5B-Instruct" or "Llama-3.2-1B" do not match.
_FILE_SUFFIX = re.compile(r"^\.[A-Za-z][A-Za-z0-9_]*$")


def preset_key(models_dir: Path, raw: Any) -> str:
    """Normalised absolute path of a model strictly inside MODELS_DIR (it need not exist yet)."""
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw or len(raw) > 4096:
        raise _bad_path("'model_path' must name a GGUF file or model directory inside MODELS_DIR")
    root = Path(os.path.normpath(os.path.abspath(models_dir)))
    path = Path(os.path.normpath(_absolute(root, raw.strip())))
    real_root = Path(os.path.realpath(root))
    if root not in path.parents or real_root not in Path(os.path.realpath(path)).parents:
        raise _bad_path(f"'model_path' must be inside MODELS_DIR ({models_dir})")
    key = str(path)
    if len(key) > MAX_KEY_LEN:
        raise _bad_path(f"'model_path' is longer than {MAX_KEY_LEN} characters")
    _check_kind(path)
    return key


def _absolute(root: Path, raw: str) -> str:
    """Absolute form of raw: an absolute path, or relative to MODELS_DIR.

    A URL path loses its leading slash ("/models/x.gguf" arrives as "models/x.gguf"), so a
    relative path that reads as an absolute one inside MODELS_DIR is taken as that.
    """
    if os.path.isabs(raw):
        return raw
    as_absolute = Path(os.path.normpath("/" + raw))
    if root in as_absolute.parents:
        return str(as_absolute)
    return str(root / raw)


def _check_kind(path: Path) -> None:
    """A .gguf file or a model directory; other files are refused."""
    is_gguf = path.name.lower().endswith(".gguf")
    try:
        exists, is_dir, is_file = path.exists(), path.is_dir(), path.is_file()
    except OSError as err:  # a name too long for the file system, a permission error
        raise _bad_path(f"'model_path' cannot be used: {err.strerror}") from None
    if exists:
        fits = is_dir or (is_gguf and is_file)
    else:  # not downloaded yet: a .gguf name, or a directory name
        fits = is_gguf or not _FILE_SUFFIX.match(path.suffix)
    if fits:
        return
    raise _bad_path("'model_path' must be a .gguf file or a model directory")


def _extra(key: str, value: Any) -> Any:
    kind = EXTRA_FIELDS[key]
    if not isinstance(value, kind) or (kind is str and len(value) > 4096):
        raise Invalid(f"'{key}' must be {'true or false' if kind is bool else 'a string'}")
    return value


def _bad_path(message: str) -> Invalid:
    return Invalid(message, field="model_path")


def parse_fields(body: Any) -> dict[str, Any]:
    """Validate preset fields (any subset of the launch settings); return them normalised."""
    body = {UPSTREAM_NAMES.get(k, k): v for k, v in require_object(body).items()}
    unknown = sorted(set(body) - PRESET_FIELDS - EXTRA_FIELDS.keys())
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
    return {key: _parse_one(key, value) for key, value in body.items()}


def _parse_one(key: str, value: Any) -> Any:
    """One field, checked by the launch validators; the error names the field."""
    try:
        if key in EXTRA_FIELDS:
            return _extra(key, value)
        if key in OPTION_FIELDS:
            return parse_options({key: value})[key]
        return LaunchSettings.from_body({key: value}).to_body()[key]
    except LlamamanError as err:
        if "field" not in err.extra:
            err.extra["field"] = key
        raise
