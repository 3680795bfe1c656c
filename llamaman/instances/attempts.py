"""Launch attempts: start, health wait, halt, crash recovery, and restore at boot.

Every launch attempt carries a number (`attempt`); a thread acting for an older attempt
finds the record moved on and backs off, so a stop, a restart and a crash timer can race
without two llama-servers ever running for one instance.

Lock order (see registry.py): an instance's op lock → a gate's lock → the registry's locks.
Runtime calls (Docker, processes) and HTTP happen outside the registry's locks.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from llamaman.config import Config
from llamaman.errors import LlamamanError
from llamaman.instances import records as rec
from llamaman.instances.claims import PortClaims
from llamaman.instances.events import SERVING, STOPPED, LifecycleEvents
from llamaman.instances.health import Cancelled, HealthWaiter
from llamaman.instances.logs import InstanceLogs
from llamaman.instances.registry import InstanceRegistry, Record
from llamaman.proxy.contract import Target
from llamaman.proxy.gate import Gates
from llamaman.runtime import (
    LaunchFailed,
    LaunchSettings,
    LaunchSpec,
    Runtime,
    RuntimeRef,
    RuntimeState,
    UnavailableRuntime,
)
from llamaman.runtime.base import tail_lines

log = logging.getLogger(__name__)

STABLE_AFTER_S = 300  # healthy this long before a crash: the restart budget starts over
MAX_BACKOFF_S = 300


class LaunchAttempts:
    """Runs the launch attempts of this node's instances and owns where each healthy one listens."""

    def __init__(self, config: Config, registry: InstanceRegistry, logs: InstanceLogs, gates: Gates,
                 events: LifecycleEvents, claims: PortClaims, on_healthy: Callable[[str], None]) -> None:
        self.config = config
        self.registry = registry
        self.logs = logs
        self.gates = gates
        self.events = events
        self.claims = claims
        self.on_healthy = on_healthy  # the idle clock starts when an instance turns healthy
        self.runtime: Runtime = UnavailableRuntime("the instance service is not started")
        self.waiter = HealthWaiter(self.runtime, config.health_check_timeout, config.model_load_timeout)
        self.targets: dict[str, Target] = {}  # healthy instances only; read per request without a lock
        self._cancel: dict[str, threading.Event] = {}
        self._closing = threading.Event()

    # --- boot and shutdown ----------------------------------------------------------------

    def attach(self, runtime: Runtime) -> None:
        """Use this runtime from now on and hear about llama-servers that exit on their own."""
        self.runtime = runtime
        self.waiter = HealthWaiter(runtime, self.config.health_check_timeout, self.config.model_load_timeout)
        self._closing.clear()
        runtime.set_exit_listener(self._on_exit)

    def close(self) -> None:
        """Abandon every attempt in progress and stop listening for exits."""
        self._closing.set()
        self.runtime.set_exit_listener(None)
        for event in list(self._cancel.values()):
            event.set()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    # --- attempts -------------------------------------------------------------------------

    def start(self, instance_id: str, attempt: int, adopt: RuntimeRef | None = None) -> None:
        """Run attempt number `attempt` on its own thread (adopting a running llama-server when given)."""
        cancel = threading.Event()
        old = self._cancel.get(instance_id)
        if old is not None:
            old.set()
        self._cancel[instance_id] = cancel
        target = self._adopt if adopt is not None else self._launch
        thread = threading.Thread(target=target, args=(instance_id, attempt, cancel, adopt),
                                  name=f"launch-{instance_id}", daemon=True)
        thread.start()

    def prepare_relaunch(self, instance_id: str) -> int:
        """Claim ports again for a stopped record and mark it starting; returns the attempt."""
        attempt = self.registry.snapshot(instance_id).get("attempt", 0) + 1
        self.reclaim(instance_id, {
            "status": rec.STARTING, "attempt": attempt, "restarts": 0, "error": None, "runtime": None,
            "started_at": None, "healthy_at": None, "stopped_at": None})
        return attempt

    def reclaim(self, instance_id: str, changes: Record) -> None:
        """Claim a stopped record's ports again (the same ones when free), serve its public
        port, and apply changes."""
        record = self.registry.snapshot(instance_id)
        with self.claims.again(record) as (port, internal):
            configure_gate(self.gates, record)
            self.events.emit(SERVING, instance_id, port)
            self.registry.update(instance_id, {"port": port, "internal_port": internal, **changes})

    def park(self, instance_id: str) -> None:
        """Serve the public port of a stopped on-demand instance, asleep (caller holds its op lock)."""
        self.reclaim(instance_id, {"status": rec.SLEEPING, "runtime": None, "error": None,
                                   "slept_at": time.time()})

    def halt(self, record: Record, status: str, error: str | None) -> None:
        """Stop everything of an instance (caller holds its op lock), then set a final status.

        The attempt number moves on first, so threads of the old attempt back off.
        """
        instance_id = record["id"]
        self.registry.update(instance_id, {"attempt": record.get("attempt", 0) + 1})
        self.gates.remove(instance_id)  # queued requests are refused now, not after the stop
        cancel = self._cancel.pop(instance_id, None)
        if cancel is not None:
            cancel.set()
        self.targets.pop(instance_id, None)
        current = self.registry.find(instance_id) or record
        if current.get("runtime"):
            self.runtime.stop(RuntimeRef.from_dict(current["runtime"]))
        self.events.emit(STOPPED, instance_id, record["port"])
        self.targets.pop(instance_id, None)
        self.registry.update(instance_id, {"status": status, "error": error, "stopped_at": time.time()})

    def halt_stopped(self, record: Record) -> None:
        """Stop an instance (caller holds its op lock); an on-demand one is parked again."""
        self.halt(record, rec.STOPPED, error=None)
        if record.get("on_demand_start"):
            self.park(record["id"])

    def drop_target(self, instance_id: str) -> None:
        """The instance no longer serves (it falls asleep): requests find no target now."""
        self.targets.pop(instance_id, None)

    def _launch(self, instance_id: str, attempt: int, cancel: threading.Event, _: object) -> None:
        record = self.registry.find(instance_id)
        if not _current(record, attempt):
            return
        self.logs.event(instance_id, f"launching {record['model_path']} (attempt {attempt})")
        try:
            ref = self.runtime.launch(self._spec(record))
        except LlamamanError as err:
            self._fail(instance_id, attempt, err.message)
            return
        started = {"runtime": ref.to_dict(), "started_at": time.time()}
        if not self.registry.update(instance_id, started, when=_is_attempt(attempt)):
            self.runtime.stop(ref)  # stopped or relaunched meanwhile
            return
        self._await_health(instance_id, attempt, ref, cancel)

    def _adopt(self, instance_id: str, attempt: int, cancel: threading.Event, ref: RuntimeRef) -> None:
        self.runtime.adopt(ref)
        self.logs.event(instance_id, "adopted the running llama-server after a manager restart")
        self._await_health(instance_id, attempt, ref, cancel, adopted=True)

    def _await_health(self, instance_id: str, attempt: int, ref: RuntimeRef, cancel: threading.Event,
                      adopted: bool = False) -> None:
        try:
            self.waiter.wait(ref, cancel)
        except Cancelled:
            return
        except LaunchFailed as err:
            self.runtime.stop(ref)
            self._fail(instance_id, attempt, err.message)
            return
        now = time.time()
        record = self.registry.find(instance_id) or {}
        healthy = {"status": rec.HEALTHY, "error": None}
        if not adopted:
            healthy.update(healthy_at=now, load_time_s=round(now - (record.get("started_at") or now), 3))
        host, port = self.runtime.upstream(ref)
        target = Target(host, port, record["api_key"])
        self.targets[instance_id] = target  # before the status, so whoever sees healthy finds it
        self.on_healthy(instance_id)
        if not self.registry.update(instance_id, healthy, when=_is_attempt(attempt)):
            if self.targets.get(instance_id) is target:
                self.targets.pop(instance_id, None)
        else:
            self.logs.event(instance_id, "healthy" + ("" if adopted else f" after {healthy['load_time_s']}s"))

    def _fail(self, instance_id: str, attempt: int, reason: str) -> None:
        with self.registry.op_lock(instance_id):
            record = self.registry.find(instance_id)
            if _current(record, attempt):
                self.halt(record, rec.FAILED, error=reason)
                self.logs.event(instance_id, f"failed: {reason.splitlines()[0]}")

    # --- crash recovery -------------------------------------------------------------------

    def _on_exit(self, ref: RuntimeRef, state: RuntimeState) -> None:
        """The runtime saw llama-server exit on its own: restart with backoff, or fail."""
        if self._closing.is_set():
            return
        if not _crashed(self.registry.find(ref.instance_id), ref):
            return  # stopped meanwhile, or an older process: nothing to recover
        reason = state.reason or f"llama-server exited ({state.exit_code})"
        self.logs.event(ref.instance_id, f"crashed: {reason.splitlines()[0]}")
        threading.Thread(target=self._recover, args=(ref, reason), daemon=True).start()

    def _recover(self, ref: RuntimeRef, reason: str) -> None:
        instance_id = ref.instance_id
        with self.registry.op_lock(instance_id):
            record = self.registry.find(instance_id)
            if not _crashed(record, ref):
                return
            restarts = record.get("restarts", 0)
            if record.get("healthy_at") and time.time() - record["healthy_at"] > STABLE_AFTER_S:
                restarts = 0
            if not record.get("auto_restart") or restarts >= record.get("max_restarts", 0):
                self.halt(record, rec.FAILED, error=_with_log(reason, record))
                return
            self.targets.pop(instance_id, None)
            self.runtime.stop(ref)
            attempt = record["attempt"] + 1
            delay = min(MAX_BACKOFF_S, record.get("restart_delay", 0) * 2 ** restarts)
            self.registry.update(instance_id, {"status": rec.STARTING, "attempt": attempt,
                                               "restarts": restarts + 1, "error": reason, "runtime": None})
        self.logs.event(instance_id, f"restarting in {delay:g}s (restart {restarts + 1} of "
                                     f"{record.get('max_restarts')})")
        timer = threading.Timer(delay, self.start, args=(instance_id, attempt))
        timer.daemon = True
        timer.start()

    def _spec(self, record: Record) -> LaunchSpec:
        return LaunchSpec(
            instance_id=record["id"], node=record["node"],
            model_path=Path(record["real_model_path"]), internal_port=record["internal_port"],
            api_key=record["api_key"], settings=LaunchSettings.from_body(record["settings"]),
            log_path=self.logs.path(record["id"]), environment=record.get("environment") or {},
            command_override=record.get("command_override"), runtime=record.get("runtime_kind"),
        )


def configure_gate(gates: Gates, record: Record) -> None:
    """Place an instance in its gate (its own, or its model's shared pool) with its limits, live."""
    pool = record["model_path"] if record.get("share_queue") else None
    gates.configure(record["id"], pool, record.get("max_concurrent", 0), record.get("max_queue_depth", 0))


def _crashed(record: Record | None, ref: RuntimeRef) -> bool:
    """True when ref is the llama-server this healthy record runs (not an older one)."""
    return (record is not None and record["status"] == rec.HEALTHY
            and (record.get("runtime") or {}).get("handle") == ref.handle)


def _is_attempt(attempt: int) -> Callable[[Record], bool]:
    return lambda r: r.get("attempt") == attempt and r["status"] == rec.STARTING


def _current(record: Record | None, attempt: int) -> bool:
    return bool(record) and record.get("attempt") == attempt and record["status"] == rec.STARTING


def _with_log(reason: str, record: Record) -> str:
    if "\n" in reason:
        return reason
    lines = tail_lines((record.get("runtime") or {}).get("log_path", ""), 20)
    return reason + ("\n" + "\n".join(lines) if lines else "")
