"""Global settings: README defaults, validation, and the per-node overrides."""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from llamaman.errors import Invalid
from llamaman.runtime import image_settings
from llamaman.settings import upstream_keys
from llamaman.storage.base import SettingsRepository
from llamaman.validation import (
    get_bool,
    get_choice,
    get_float,
    get_int,
    get_str,
    reject_unknown,
    require_object,
)

RECORDING_MODES = ("off", "per_request", "per_conversation")
CACHE_TTL_S = 1.0

DEFAULTS: dict[str, Any] = {
    "require_auth": True,
    "admin_ui_enforce_max_models": False,
    "allow_ollama_api_override_admin": False,
    "auto_retry_failed_downloads": False,
    "retry_count_per_failed_download": 3,
    "download_speed_limit_mbps": 0,  # megabits/s shared by all downloads together; 0 = unlimited
    "hf_token": "",  # stored HuggingFace token; get() returns it masked
    "request_recording_mode": "off",
    "request_recording_retention_days": 0,
    "metrics_open": False,
    "cluster_hide_offline_monitoring": False,  # LlamaMan 1.2.1's UI option, kept for its clients
    "cleanup": {
        "downloads_enabled": True,
        "downloads_max_age_hours": 24,
        "downloads_last_run_at": None,
        "instances_enabled": False,
        "instances_max_age_hours": 48,
        "instances_last_run_at": None,
        "stale_records_enabled": False,
        "stale_records_interval_min": 5,
        "stale_records_last_run_at": None,
    },
    "docker_images": image_settings.DEFAULTS,  # tracked images and auto-update (per node)
}

# Host-specific keys live in the node's own scope (README "Per-node vs shared settings").
NODE_SCOPED = frozenset({"admin_ui_enforce_max_models", "allow_ollama_api_override_admin",
                         "docker_images"})

_FLAGS = ("require_auth", "admin_ui_enforce_max_models", "allow_ollama_api_override_admin",
          "auto_retry_failed_downloads", "metrics_open", "cluster_hide_offline_monitoring")
_CLEANUP_FLAGS = ("downloads_enabled", "instances_enabled", "stale_records_enabled")
_CLEANUP_HOURS = ("downloads_max_age_hours", "instances_max_age_hours")
_CLEANUP_STAMPS = ("downloads_last_run_at", "instances_last_run_at", "stale_records_last_run_at")
_CLEANUP_SHARED = frozenset(DEFAULTS["cleanup"]) - set(_CLEANUP_STAMPS)  # stamps are per node


class SettingsService:
    """Reads settings merged over defaults and saves validated patches."""

    def __init__(self, repo: SettingsRepository, node: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.repo = repo
        self.node = node
        self.clock = clock
        self._require_auth: tuple[float, bool] | None = None  # (read at, value)
        self.generation = 0  # bumped by every local save: caches of settings compare it

    def get(self) -> dict[str, Any]:
        """Return the effective settings of this node."""
        merged = copy.deepcopy(DEFAULTS)
        stored = self.repo.get("global")
        for key, value in stored.items():
            if key == "cleanup" and isinstance(value, dict):
                merged["cleanup"].update({k: v for k, v in value.items() if k in _CLEANUP_SHARED})
            elif key in merged:
                merged[key] = value
        node_doc = self.repo.get(self.node)
        merged.update({k: v for k, v in node_doc.items() if k in NODE_SCOPED})
        # The cleanup jobs clean this node's records only, so each node stamps its own runs.
        stamps = node_doc.get("cleanup") if isinstance(node_doc.get("cleanup"), dict) else {}
        merged["cleanup"].update({k: v for k, v in stamps.items() if k in _CLEANUP_STAMPS})
        merged["hf_token"] = mask_token(merged["hf_token"])
        merged["docker_images"] = image_settings.effective(merged["docker_images"])
        merged.update(upstream_keys.shown(merged, stored))
        return merged

    def hf_token(self) -> str | None:
        """The stored HuggingFace token in full (for the download manager only), or None."""
        return self.repo.get("global").get("hf_token") or None

    def stamp_cleanup(self, job: str, when: float) -> None:
        """Record when a cleanup job last ran on this node (cleanup.<job>_last_run_at)."""
        key = f"{job}_last_run_at"
        if key not in _CLEANUP_STAMPS:
            raise ValueError(f"unknown cleanup job {job!r}")
        self.repo.update(self.node, lambda doc: {**doc, "cleanup": {**(doc.get("cleanup") or {}), key: when}})

    def require_auth(self) -> bool:
        """Whether model endpoints and instance ports need a bearer key (read at most once a
        second: it is asked on every proxied request; a local save applies at once)."""
        cached = self._require_auth
        if cached is not None and self.clock() - cached[0] <= CACHE_TTL_S:
            return cached[1]
        value = bool(self.repo.get("global").get("require_auth", DEFAULTS["require_auth"]))
        self._require_auth = (self.clock(), value)
        return value

    def save(self, patch: Any) -> dict[str, Any]:
        """Validate a partial settings document, store it, and return the effective settings."""
        patch = upstream_keys.normalise(patch, self.get())
        if isinstance(patch, dict) and patch.get("hf_token") and patch["hf_token"] == mask_token(self.hf_token()):
            patch = {k: v for k, v in patch.items() if k != "hf_token"}  # the masked value sent back
        clean = validate_patch(patch)
        node_part = {k: v for k, v in clean.items() if k in NODE_SCOPED}
        shared_part = {k: v for k, v in clean.items() if k not in NODE_SCOPED}
        if shared_part:
            self.repo.update("global", _merger(shared_part))
            self._require_auth = None
        if node_part:
            self.repo.update(self.node, _merger(node_part))
        self.generation += 1
        return self.get()


def _merger(patch: dict[str, Any]) -> Callable[[dict], dict]:
    def merge(current: dict) -> dict:
        updated = dict(current)
        for key, value in patch.items():
            if key == "cleanup":
                updated["cleanup"] = {**current.get("cleanup", {}), **value}
            elif key == image_settings.KEY:
                updated[key] = image_settings.merge(current.get(key), value)
            else:
                updated[key] = value
        return updated
    return merge


def validate_patch(patch: Any) -> dict[str, Any]:
    """Check every field of a settings patch; raise Invalid on the first bad one."""
    body = require_object(patch)
    reject_unknown(body, DEFAULTS.keys())
    clean: dict[str, Any] = {}
    for key in _FLAGS:
        if key in body:
            clean[key] = get_bool(body, key)
    if "retry_count_per_failed_download" in body:
        clean["retry_count_per_failed_download"] = get_int(
            body, "retry_count_per_failed_download", low=1, high=100)
    if "request_recording_mode" in body:
        clean["request_recording_mode"] = get_choice(body, "request_recording_mode", RECORDING_MODES)
    if "request_recording_retention_days" in body:
        clean["request_recording_retention_days"] = get_int(
            body, "request_recording_retention_days", low=0, high=36500)
    if "cleanup" in body:
        clean["cleanup"] = _validate_cleanup(body["cleanup"])
    if "download_speed_limit_mbps" in body:
        clean["download_speed_limit_mbps"] = get_float(body, "download_speed_limit_mbps", low=0, high=1_000_000)
    if "hf_token" in body:
        clean["hf_token"] = _validate_token(body)
    if image_settings.KEY in body:
        clean[image_settings.KEY] = image_settings.validate(body[image_settings.KEY])
    return {k: v for k, v in clean.items() if v is not None}


def mask_token(token: str | None) -> str:
    """A token shown without its secret part, e.g. 'hf_…abcd' ('' when there is none)."""
    if not token:
        return ""
    return f"{token[:3]}…{token[-4:]}" if len(token) >= 16 else "…"


def _validate_token(body: dict) -> str:
    token = get_str(body, "hf_token", default="", max_len=512) or ""
    if any(ch.isspace() for ch in token) or not token.isascii():
        raise Invalid("'hf_token' must be a HuggingFace access token (no spaces), or '' to remove it")
    return token


def _validate_cleanup(value: Any) -> dict[str, Any]:
    body = require_object(value, "'cleanup'")
    try:
        reject_unknown(body, DEFAULTS["cleanup"].keys())
        clean: dict[str, Any] = {}
        for key in _CLEANUP_FLAGS:
            clean[key] = get_bool(body, key)
        for key in _CLEANUP_HOURS:
            clean[key] = get_int(body, key, low=1, high=24 * 3650)
        clean["stale_records_interval_min"] = get_int(body, "stale_records_interval_min", low=1, high=10080)
        for key in _CLEANUP_STAMPS:
            # Read-only (the jobs set them): a number or null, as GET shows it, is accepted and ignored.
            get_float(body, key, low=0, high=float("inf"))
    except Invalid as err:
        raise Invalid(f"cleanup: {err.message}", field="cleanup") from err
    return {k: v for k, v in clean.items() if v is not None}
