"""Fixtures shared by the model-library unit tests."""
import pytest

from llamaman.models.library import ModelLibrary


@pytest.fixture
def models(tmp_path):
    """An empty MODELS_DIR."""
    root = tmp_path / "models"
    root.mkdir()
    return root


@pytest.fixture
def library(models):
    """A library over `models` whose watcher never fires on its own (tests refresh it)."""
    lib = ModelLibrary(models, poll_s=3600)
    yield lib
    lib.stop()
