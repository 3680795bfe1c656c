"""Serving each instance's public port with its sidecar app (services.py drives it from the
instance lifecycle events)."""
from __future__ import annotations

import threading
from collections.abc import Callable

from llamaman.proxy.servers import PortServers


class PublicPorts:
    """Binds the public port of an instance to the proxy app made for it."""

    def __init__(self, servers: PortServers, make_app: Callable[[str], Callable]) -> None:
        self.servers = servers
        self.make_app = make_app
        self._lock = threading.Lock()  # a leaf lock: guards _bound only, never held while (un)binding
        self._bound: dict[str, int] = {}  # instance id -> the public port served for it

    def serve(self, instance_id: str, port: int) -> None:
        """Serve the instance's sidecar on port (the one it served before closes if it differs)."""
        with self._lock:
            old = self._bound.get(instance_id)
        if old is not None and old != port:
            self.release(instance_id)
        self.servers.start(port, self.make_app(instance_id))
        with self._lock:
            self._bound[instance_id] = port

    def release(self, instance_id: str) -> None:
        """Close the instance's public port (nothing when it serves none)."""
        with self._lock:
            port = self._bound.pop(instance_id, None)
        if port is not None:
            self.servers.stop(port)

    def close(self) -> None:
        """Close every public port."""
        with self._lock:
            self._bound.clear()
        self.servers.stop_all()
