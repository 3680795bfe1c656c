"""HTTP servers on the public instance ports, started and stopped at run time."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cheroot import wsgi
from cheroot.workers import threadpool

from llamaman.errors import Conflict
from llamaman.proxy.cheroot_conn import LingeringConnection, SocketGateway

log = logging.getLogger(__name__)

THREADS_PER_PORT = 16  # the most one port uses: streams, gate waiters and kept-alive clients
THREADS_AT_START = 2  # a sleeping or quiet instance's port holds only these
RELEASE_WAIT_S = 5.0
SOCKET_TIMEOUT_S = 30
KEEP_ALIVE_LIMIT = 1024  # idle keep-alive clients per port (cheroot's default of 10 makes busy clients reconnect)


class GrowingPool(threadpool.ThreadPool):
    """cheroot's worker pool started small: one more thread whenever a connection waits with no
    idle worker, up to max. It never shrinks, so a port keeps what its busiest moment needed.
    put() runs on the server's selector thread only, so growing needs no lock."""

    def put(self, obj) -> None:
        super().put(obj)
        # not while stopping: stop() sends one shutdown request per thread it knows of
        if self.server.ready and len(self._threads) < self.max and self._queue.qsize() > self.idle:
            self._threads.append(self._spawn_worker())  # not waited for: it takes the queue when ready


class PortServers:
    """One threaded HTTP/1.1 WSGI server (cheroot) per public port."""

    def __init__(self, bind_host: str) -> None:
        self.bind_host = bind_host
        self._servers: dict[int, tuple[wsgi.Server, threading.Thread]] = {}
        self._lock = threading.Lock()

    def start(self, port: int, app: Callable) -> None:
        """Serve app on port; Conflict when the port cannot be bound."""
        with self._lock:
            if port in self._servers:
                return
            server = wsgi.Server((self.bind_host, port), app, numthreads=THREADS_PER_PORT,
                                 server_name=f"llamaman-{port}", timeout=SOCKET_TIMEOUT_S,
                                 request_queue_size=64)
            server.requests = GrowingPool(server, min=THREADS_AT_START, max=THREADS_PER_PORT)
            server.gateway = SocketGateway
            server.ConnectionClass = LingeringConnection
            server.keep_alive_conn_limit = KEEP_ALIVE_LIMIT
            try:
                server.prepare()
            except OSError as err:
                raise Conflict(f"port {port} cannot be served: {err}", field="port") from err
            thread = threading.Thread(target=server.serve, name=f"port-{port}", daemon=True)
            thread.start()
            self._servers[port] = (server, thread)

    def stop(self, port: int) -> None:
        """Close the port now; requests still running finish on their own threads.

        cheroot's stop() joins its workers without limit once its grace time is over, and a
        worker may be inside our app: so it runs on its own thread, and only the release of
        the listening socket is waited for.
        """
        with self._lock:
            entry = self._servers.pop(port, None)
        if entry is None:
            return
        server, _ = entry
        threading.Thread(target=server.stop, name=f"stop-port-{port}", daemon=True).start()
        deadline = time.monotonic() + RELEASE_WAIT_S
        while server.socket is not None and time.monotonic() < deadline:
            time.sleep(0.005)

    def ports(self) -> list[int]:
        with self._lock:
            return sorted(self._servers)

    def stop_all(self) -> None:
        for port in self.ports():
            self.stop(port)
