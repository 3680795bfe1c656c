"""Fixtures of the unit tier: no real sockets, and the shared model-library fixtures."""
import socket

import pytest

from llamaman.models.library import ModelLibrary


class SocketInUnitTest(AssertionError):
    """A unit test tried to bind or connect a real socket; it belongs in tests/integration."""


def _refuse(self: socket.socket, address: object, *args: object) -> None:
    raise SocketInUnitTest(
        f"unit tests open no real sockets (tried {address!r}); move this test to tests/integration"
    )


@pytest.fixture(autouse=True)
def no_real_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any unit test that binds or connects a socket: the unit tier stays pure and fast."""
    for method in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, method, _refuse)


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


@pytest.fixture
def make_node(tmp_path):
    """Builds started nodes (tests/fakes/node.py) over the fake runtime; closes them afterwards."""
    from tests.fakes.node import make_node as build

    nodes = []

    def make(autoload: bool = True, **env: str):
        node = build(tmp_path / f"node{len(nodes)}", autoload=autoload, **env)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.close()
