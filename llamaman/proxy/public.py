"""Serving each instance's public port with its InstanceProxy."""
from __future__ import annotations

from collections.abc import Callable

from llamaman.proxy.servers import PortServers


class PublicPorts:
    """Binds the public port of an instance to the proxy app made for it."""

    def __init__(self, servers: PortServers, make_app: Callable[[str], Callable] | None = None) -> None:
        self.servers = servers
        self.make_app = make_app

    def serve(self, instance_id: str, port: int) -> None:
        if self.make_app is None:
            raise RuntimeError("PublicPorts.make_app is not wired")
        self.servers.start(port, self.make_app(instance_id))

    def release(self, instance_id: str, port: int) -> None:
        self.servers.stop(port)

    def close(self) -> None:
        self.servers.stop_all()
