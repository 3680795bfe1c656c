"""A fake Runtime: llama-servers that live in memory, on a FakeHost shared like a real engine.

It keeps the Runtime contract (tests/integration/test_runtime_contract.py runs it beside the
Docker and process runtimes), so unit tests of the lifecycle and the scheduler can trust it.
Tests drive what the real world would do: a load finishing, a crash, a refused launch.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from llamaman.instances.health import Cancelled
from llamaman.runtime.base import (
    RUNNING,
    Discovered,
    ExitListener,
    LaunchFailed,
    LaunchSpec,
    ResourceStats,
    RuntimeRef,
    RuntimeState,
    exit_reason,
    tail_lines,
)

FAKE_RSS = 96 * 1024**2  # what a small model's server might hold
FAKE_CPU_PERCENT = 12.5
SIGKILL_CODE = 137
MISSING = RuntimeState("missing", reason="fake llama-server is gone")


@dataclass
class FakeServer:
    """One fake llama-server: its ref, API key, whether it finished loading, and its exit."""

    ref: RuntimeRef
    api_key: str
    model: str
    loaded: bool = False
    exit: RuntimeState | None = None
    sampled: bool = False


class FakeHost:
    """The machine the fake servers run on: outlives runtime objects, so one can adopt."""

    def __init__(self, autoload: bool = True) -> None:
        self.autoload = autoload  # False: servers stay loading until finish_loading()
        self.launches: list[LaunchSpec] = []
        self.changed = threading.Condition()
        self._servers: dict[str, FakeServer] = {}
        self._refusals: list[str] = []
        self._handles = itertools.count(1000)

    # -- what the outside world does to servers

    def refuse_next_launch(self, message: str) -> None:
        """Make the next launch fail with LaunchFailed(message)."""
        with self.changed:
            self._refusals.append(message)

    def finish_loading(self, ref: RuntimeRef) -> None:
        """The model finished loading: /health answers 200 from now on."""
        with self.changed:
            server = self._servers[ref.handle]
            server.loaded = True
            self._log(server, "main: model loaded")
            self._log(server, f"main: server is listening on http://127.0.0.1:{ref.internal_port}")
            self.changed.notify_all()

    def kill(self, ref: RuntimeRef, code: int = SIGKILL_CODE, last_words: str = "") -> None:
        """The server dies on its own (killed from outside, or a crash while loading)."""
        with self.changed:
            server = self._servers[ref.handle]
            if last_words:
                self._log(server, last_words)
            server.exit = RuntimeState("exited", code, exit_reason(code, tail_lines(ref.log_path)))
            self.changed.notify_all()

    def request(self, ref: RuntimeRef, api_key: str) -> int:
        """A request to the server's API: 401 with a logged complaint for a wrong key."""
        with self.changed:
            server = self._servers[ref.handle]
            if api_key != server.api_key:
                self._log(server, "srv  log_server_r: Invalid API Key")
                return 401
            return 200

    def models(self, ref: RuntimeRef, api_key: str) -> list[dict[str, str]]:
        """What /v1/models lists: the loaded model, for the right key only."""
        with self.changed:
            server = self._servers[ref.handle]
            return [{"id": server.model}] if api_key == server.api_key and server.loaded else []

    # -- what tests and the fake runtime read

    def healthy(self, ref: RuntimeRef) -> bool:
        """Whether /health would answer 200."""
        with self.changed:
            server = self._servers.get(ref.handle)
            return server is not None and server.exit is None and server.loaded

    def running(self) -> list[RuntimeRef]:
        """Refs of the servers alive now (any node)."""
        with self.changed:
            return [s.ref for s in self._servers.values() if s.exit is None]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until predicate() holds after a change on the host."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def launched_ids(self) -> list[str]:
        """Instance ids in launch order, one per launch."""
        with self.changed:
            return [spec.instance_id for spec in self.launches]

    # -- used by FakeRuntime

    def start(self, spec: LaunchSpec, kind: str) -> RuntimeRef:
        """Start a server for spec (loading, or loaded at once with autoload)."""
        with self.changed:
            if self._refusals:
                raise LaunchFailed(self._refusals.pop(0))
            self.launches.append(spec)
            ref = RuntimeRef(kind, spec.instance_id, spec.node, str(next(self._handles)),
                             f"fake-{spec.instance_id}", spec.internal_port, time.time(),
                             str(spec.log_path))
            server = FakeServer(ref, spec.api_key, spec.model_path.name)
            self._servers[ref.handle] = server
            self._log(server, f"fake llama-server: loading model {spec.model_path}")
            self.changed.notify_all()
        if self.autoload:
            self.finish_loading(ref)
        return ref

    def server(self, ref: RuntimeRef) -> FakeServer | None:
        """The server behind ref, None once removed."""
        with self.changed:
            server = self._servers.get(ref.handle)
            return server if server is not None and server.ref == ref else None

    def remove(self, ref: RuntimeRef) -> RuntimeState:
        """Stop (an exit of 0 when it still ran) and forget the server."""
        with self.changed:
            server = self._servers.pop(ref.handle, None)
            self.changed.notify_all()
        if server is None or server.ref != ref:
            return MISSING
        return server.exit or RuntimeState("exited", 0)

    def sample(self, ref: RuntimeRef) -> bool | None:
        """Whether this is the server's first stats sample; None when it does not run."""
        with self.changed:
            server = self._servers.get(ref.handle)
            if server is None or server.ref != ref or server.exit is not None:
                return None
            first, server.sampled = not server.sampled, True
            return first

    def poke(self) -> None:
        """Wake everyone waiting on the host (a runtime object closed)."""
        with self.changed:
            self.changed.notify_all()

    def servers_of(self, node: str) -> Iterator[FakeServer]:
        """The servers of one node, running or exited."""
        with self.changed:
            servers = [s for s in self._servers.values() if s.ref.node == node]
        yield from servers

    @staticmethod
    def _log(server: FakeServer, line: str) -> None:
        with open(server.ref.log_path, "a", encoding="utf-8") as log:
            log.write(line + "\n")


class FakeRuntime:
    """The Runtime protocol over a FakeHost; exits are reported from a thread, like the real ones."""

    kind = "fake"

    def __init__(self, host: FakeHost, node: str) -> None:
        self.host = host
        self.node = node
        self._lock = threading.Lock()
        self._watched: set[str] = set()
        self._listener: ExitListener | None = None
        self._closed = threading.Event()

    def launch(self, spec: LaunchSpec) -> RuntimeRef:
        """Start a fake llama-server (LaunchFailed when the host was told to refuse it)."""
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        ref = self.host.start(spec, self.kind)
        self._watch(ref)
        return ref

    def stop(self, ref: RuntimeRef, grace_s: float = 10.0) -> RuntimeState:
        """Stop and forget the server; stopping a missing one answers missing."""
        with self._lock:
            self._watched.discard(ref.handle)
        return self.host.remove(ref)

    def state(self, ref: RuntimeRef) -> RuntimeState:
        """Running, exited (code and log tail) or missing."""
        server = self.host.server(ref)
        if server is None:
            return MISSING
        return server.exit or RUNNING

    def upstream(self, ref: RuntimeRef) -> tuple[str, int]:
        """The loopback address a real server would listen on (nothing listens here)."""
        return "127.0.0.1", ref.internal_port

    def stats(self, ref: RuntimeRef) -> ResourceStats | None:
        """CPU is None on the first sample (it needs two, as in the process runtime)."""
        first = self.host.sample(ref)
        if first is None:
            return None
        return ResourceStats(None if first else FAKE_CPU_PERCENT, None, FAKE_RSS, None)

    def discover(self) -> list[Discovered]:
        """This node's fake servers, running or exited."""
        return [Discovered(s.ref, s.exit or RUNNING) for s in self.host.servers_of(self.node)]

    def adopt(self, ref: RuntimeRef) -> None:
        """Watch a server an earlier runtime object started."""
        if self.host.server(ref) is not None:
            self._watch(ref)

    def set_exit_listener(self, listener: ExitListener | None) -> None:
        """Register the callback told about exits not caused by stop()."""
        with self._lock:
            self._listener = listener

    def close(self) -> None:
        """Stop watching; the servers keep running on the host."""
        self._closed.set()
        self.host.poke()  # the watchers see the close and end

    def _watch(self, ref: RuntimeRef) -> None:
        with self._lock:
            self._watched.add(ref.handle)
        threading.Thread(target=self._await_exit, args=(ref,), name=f"fake-watch-{ref.handle}",
                         daemon=True).start()

    def _await_exit(self, ref: RuntimeRef) -> None:
        """Report the exit unless stop() or close() came first."""
        def ended() -> bool:
            server = self.host.server(ref)
            return self._closed.is_set() or server is None or server.exit is not None

        while not self.host.wait_for(ended, 1.0):
            pass
        with self._lock:
            watched = ref.handle in self._watched and not self._closed.is_set()
            self._watched.discard(ref.handle)
            listener = self._listener
        if watched and listener is not None:
            listener(ref, self.state(ref))


class FakeHealth:
    """Stands in for HealthWaiter: waits until the fake server loaded, exited or was cancelled."""

    def __init__(self, host: FakeHost, runtime: FakeRuntime) -> None:
        self.host = host
        self.runtime = runtime

    def wait(self, ref: RuntimeRef, cancelled: threading.Event) -> None:
        """Return once healthy; raise LaunchFailed (it exited) or Cancelled."""
        while True:
            if cancelled.is_set():
                raise Cancelled()
            state = self.runtime.state(ref)
            if not state.running:
                raise LaunchFailed(state.reason or f"llama-server {state.status} before it was healthy")
            if self.host.healthy(ref):
                return
            self.host.wait_for(lambda: self.host.healthy(ref) or not self.runtime.state(ref).running, 0.05)

