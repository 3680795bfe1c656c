"""Public and internal port allocation from the configured pools."""
from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable, Iterable

from llamaman.config import PortRange
from llamaman.errors import Conflict, Invalid, Unavailable


def port_is_free(port: int, host: str = "0.0.0.0") -> bool:
    """True when nothing on this host listens on port (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


class PortAllocator:
    """Hands out ports from a pool, skipping ports claimed by records or busy on the host.

    `claimed` returns the ports held by existing instances; reservations made here cover
    the window between choosing a port and the record that claims it being saved.
    """

    def __init__(self, pool: PortRange, name: str, claimed: Callable[[], Iterable[int]],
                 is_free: Callable[[int], bool] = port_is_free) -> None:
        self.pool = pool
        self.name = name
        self.claimed = claimed
        self.is_free = is_free
        self._reserved: set[int] = set()
        self._lock = threading.Lock()

    def reserve(self, wanted: int | None = None) -> int:
        """Reserve wanted (validated) or the lowest free port of the pool."""
        with self._lock:
            taken = set(self.claimed()) | self._reserved
            port = self._check(wanted, taken) if wanted is not None else self._first_free(taken)
            self._reserved.add(port)
            return port

    def release(self, port: int | None) -> None:
        """Forget a reservation (the record now claims the port, or the launch was abandoned)."""
        with self._lock:
            self._reserved.discard(port)

    def suggest(self) -> int | None:
        """The port reserve() would pick now, without reserving it."""
        with self._lock:
            try:
                return self._first_free(set(self.claimed()) | self._reserved)
            except Unavailable:
                return None

    def _check(self, port: int, taken: set[int]) -> int:
        if isinstance(port, bool) or not isinstance(port, int) or port not in self.pool:
            raise Invalid(f"port must be in the {self.name} pool {self.pool.start}-{self.pool.end}",
                          field="port")
        if port in taken or not self.is_free(port):
            raise Conflict(f"port {port} is already in use", field="port")
        return port

    def _first_free(self, taken: set[int]) -> int:
        for port in self.pool.ports():
            if port not in taken and self.is_free(port):
                return port
        raise Unavailable(f"no free port left in the {self.name} pool "
                          f"{self.pool.start}-{self.pool.end}")
