"""The unit tier's guard: a test that binds or connects a real socket fails."""
import socket

import pytest

from tests.unit.conftest import SocketInUnitTest


def test_connecting_a_socket_fails_the_test() -> None:
    with pytest.raises(SocketInUnitTest, match="move this test to tests/integration"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_binding_a_socket_fails_the_test() -> None:
    with socket.socket() as sock, pytest.raises(SocketInUnitTest):
        sock.bind(("127.0.0.1", 0))


def test_starting_a_server_fails_the_test() -> None:
    with pytest.raises(SocketInUnitTest):
        socket.create_server(("127.0.0.1", 0))
