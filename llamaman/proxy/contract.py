"""What the proxy needs from the instances, and the names the proxy and its servers share.

A leaf module: the proxy depends on this narrow protocol, never on the instance service,
so instances/ can use the proxy's gate without an import circle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

SOCKET_KEY = "llamaman.socket"  # the environ key of the client socket (a queued request notices a disconnect)
# Set by the app on :5000 when it relays a request its own guard already admitted (llamactl /proxy/).
PREAUTHORISED = "llamaman.preauthorised"


@dataclass(frozen=True)
class Target:
    """Where an instance's llama-server listens now, and the key it expects."""

    host: str
    port: int
    api_key: str


class Instances(Protocol):
    """The instance lifecycle as the proxy sees it."""

    def live(self, instance_id: str) -> dict[str, Any] | None:
        """Status, model name and live options of an instance (None when it is gone)."""

    def ensure_running(self, instance_id: str, timeout: float) -> Target:
        """Where the instance serves, waking it first when it sleeps."""

    def request_done(self, instance_id: str) -> None:
        """A request of the instance has ended (idle time counts from now)."""
