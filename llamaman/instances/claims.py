"""The public and internal ports of this node's instances: which are free, and claiming them."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from llamaman.config import Config
from llamaman.errors import LlamamanError
from llamaman.instances import records as rec
from llamaman.instances.ports import PortAllocator, port_is_free
from llamaman.instances.registry import InstanceRegistry, Record


class PortClaims:
    """Ports held by active records, plus reservations for records not stored yet."""

    def __init__(self, config: Config, registry: InstanceRegistry) -> None:
        self.registry = registry
        self.public = PortAllocator(
            config.public_ports, "public", lambda: self._held("port"),
            lambda port: port_is_free(port, config.bind_host))
        self.internal = PortAllocator(
            config.internal_ports, "internal", lambda: self._held("internal_port"),
            lambda port: port_is_free(port, "127.0.0.1"))

    def suggest(self) -> int | None:
        """A free public port to offer in the launch form."""
        return self.public.suggest()

    @contextmanager
    def fresh(self, wanted: int | None) -> Iterator[tuple[int, int]]:
        """(public, internal) reserved for a new record until the block ends (it stores it)."""
        port = self.public.reserve(wanted)
        internal = None
        try:
            internal = self.internal.reserve()
            yield port, internal
        finally:
            self.public.release(port)
            self.internal.release(internal)

    @contextmanager
    def again(self, record: Record) -> Iterator[tuple[int, int]]:
        """A stopped record's ports reserved again (the same ones when free) until the block ends."""
        port = _reserve_again(self.public, record["port"])
        internal = None
        try:
            internal = _reserve_again(self.internal, record["internal_port"])
            yield port, internal
        finally:
            self.public.release(port)
            self.internal.release(internal)

    def _held(self, field: str) -> list[int]:
        return self.registry.values(field, lambda r: r["status"] in rec.ACTIVE)


def _reserve_again(allocator: PortAllocator, wanted: int) -> int:
    try:
        return allocator.reserve(wanted)
    except LlamamanError:
        return allocator.reserve()
