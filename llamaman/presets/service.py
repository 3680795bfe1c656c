"""Per-model launch presets with live apply to running instances."""
from __future__ import annotations

from llamaman.config import Config
from llamaman.instances.service import InstanceService
from llamaman.storage.base import Collection


class PresetService:
    """Presets keyed by model path (filled in by the presets work)."""

    def __init__(self, repo: Collection, instances: InstanceService, config: Config) -> None:
        self.repo = repo
        self.instances = instances
        self.config = config
