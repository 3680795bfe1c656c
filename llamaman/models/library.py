"""The model library: an index of the GGUF files and HuggingFace folders under MODELS_DIR."""
from __future__ import annotations

from pathlib import Path


class ModelLibrary:
    """Index of models under MODELS_DIR (filled in by the model-library work)."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir

    def start(self) -> None:
        """Build the index and start watching for changes."""

    def stop(self) -> None:
        """Stop background work."""
