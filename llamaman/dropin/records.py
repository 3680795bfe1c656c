"""LlamaMan 1.2.1 presets, instances and model sources in our forms.

Storage's JSON and SQL imports call these through `storage.upstream.DomainRecords`; they live
above storage because they apply the presets', instances', runtime's and models' own rules.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from llamaman.errors import LlamamanError
from llamaman.instances import records as rec
from llamaman.models.source_file import (
    read_sidecar,
    sidecar_path,
    valid_repo_id,
    write_sidecar,
)
from llamaman.presets.validate import PRESET_FIELDS, parse_fields
from llamaman.runtime.launch_settings import LaunchSettings
from llamaman.storage.base import Record
from llamaman.storage.upstream import PRESET_RENAMES

log = logging.getLogger(__name__)


class UpstreamRecords:
    """The `DomainRecords` storage's LlamaMan imports use."""

    def preset(self, model_path: str, record: Record) -> Record:
        """An upstream preset: renamed fields, our valid fields, upstream's extras kept."""
        renamed = {PRESET_RENAMES.get(k, k): v for k, v in record.items()}
        unknown = {k: v for k, v in renamed.items() if k not in PRESET_FIELDS}
        return {**unknown, **valid_preset_fields(renamed), "model_path": model_path}

    def instance(self, record: Record, node: str) -> Record:
        """An upstream instance record (stopped by the switch) as our stopped instance."""
        config = valid_preset_fields({PRESET_RENAMES.get(k, k): v
                                      for k, v in (record.get("config") or {}).items()})
        settings = {k: v for k, v in config.items() if k in rec.SETTINGS_FIELDS}
        options = {**rec.LIVE_DEFAULTS, **rec.RESTART_DEFAULTS,
                   **{k: v for k, v in config.items() if k not in rec.SETTINGS_FIELDS}}
        path = str(record.get("model_path") or "")
        status = record.get("status") if record.get("status") == rec.FAILED else rec.STOPPED
        started = record.get("started_at")
        return {
            **record, **options,
            "id": str(record["id"]), "name": rec.model_stem(path) if path else str(record["id"]),
            "node": record.get("node_id") or node, "model_path": path, "real_model_path": path,
            "model_name": rec.model_stem(path) if path else "", "port": record.get("port"),
            "internal_port": None, "api_key": None, "launched_by": "admin", "status": status,
            "settings": LaunchSettings.from_body(settings).to_body(), "restarts": 0,
            "created_at": started, "started_at": started, "healthy_at": None, "load_time_s": None,
            "stopped_at": None, "error": None, "runtime": None, "last_request_at": None,
        }

    def sidecars(self, model_sources: Any) -> int:
        """Write our repo-id sidecars for upstream's model sources that exist; return how many.

        A source folder gets one for itself and one for each GGUF in it (what our library reads).
        """
        written = 0
        for path, source in (model_sources or {}).items() if isinstance(model_sources, dict) else ():
            repo_id = source.get("repo_id") if isinstance(source, dict) else None
            if not valid_repo_id(repo_id) or not Path(path).exists():
                continue
            ggufs = sorted(Path(path).rglob("*.gguf")) if Path(path).is_dir() else []
            written += sum(_sidecar(p, repo_id) for p in (Path(path), *ggufs))
        return written


def valid_preset_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The fields our presets know, each checked alone; a bad or null one is dropped."""
    kept = {}
    for key, value in body.items():
        if key not in PRESET_FIELDS or value is None:
            continue
        try:
            kept.update(parse_fields({key: value}))
        except LlamamanError as err:
            log.warning("LlamaMan preset field %s=%r not imported: %s", key, value, err.message)
    return kept


def _sidecar(path: Path, repo_id: str) -> bool:
    """Write path's sidecar unless it has one; True when written."""
    if read_sidecar(sidecar_path(path)) is not None:
        return False
    try:
        write_sidecar(path, repo_id)
    except (OSError, LlamamanError) as err:
        log.warning("repo id of %s not recorded: %s", path, err)
        return False
    return True
