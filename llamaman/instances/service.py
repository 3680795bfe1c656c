"""Instance lifecycle: launch, health, stop, restart, remove, crash recovery.

Every launch attempt carries a number (`attempt`); a thread acting for an older attempt
finds the record moved on and backs off, so a stop, a restart and a crash timer can race
without two llama-servers ever running for one instance.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llamaman.config import Config
from llamaman.errors import Conflict, Invalid, LlamamanError, Unavailable
from llamaman.instances import records as rec
from llamaman.instances.definitions import Definitions
from llamaman.instances.events import (
    CLOSING,
    REMOVED,
    SERVING,
    STOPPED,
    LifecycleEvents,
)
from llamaman.instances.health import Cancelled, HealthWaiter
from llamaman.instances.idle import SleepWake
from llamaman.instances.logs import InstanceLogs
from llamaman.instances.ports import PortAllocator, port_is_free
from llamaman.instances.registry import InstanceRegistry, Record
from llamaman.instances.upstream_view import upstream_fields
from llamaman.jobs import PeriodicJob
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
from llamaman.runtime.choice import RuntimeSet
from llamaman.validation import require_object

log = logging.getLogger(__name__)

REAP_INTERVAL_S = 1.0
LIVE_READ = ("status", "model_name", "error", *rec.LIVE_DEFAULTS)
STABLE_AFTER_S = 300  # healthy this long before a crash: the restart budget starts over
MAX_BACKOFF_S = 300


class InstanceService(SleepWake, Definitions):
    """Owns this node's instances; the REST routes and (later) the scheduler call it."""

    def __init__(self, config: Config, registry: InstanceRegistry, logs: InstanceLogs, gates: Gates,
                 events: LifecycleEvents | None = None) -> None:
        self.config = config
        self.registry = registry
        self.logs = logs
        self.gates = gates
        self.events = events or LifecycleEvents()  # the composition root serves the public ports from these
        self._last_end: dict[str, float] = {}
        self.waker: Callable[[str, float], None] = self.wake  # replaced by the scheduler's
        self.reaper = PeriodicJob("idle-reaper", REAP_INTERVAL_S, self.reap_idle)
        self.runtime: Runtime = UnavailableRuntime("the instance service is not started")
        self.waiter = HealthWaiter(self.runtime, config.health_check_timeout, config.model_load_timeout)
        self.public_ports = PortAllocator(
            config.public_ports, "public", lambda: self._claimed("port"),
            lambda port: port_is_free(port, config.bind_host))
        self.internal_ports = PortAllocator(
            config.internal_ports, "internal", lambda: self._claimed("internal_port"),
            lambda port: port_is_free(port, "127.0.0.1"))
        self._cancel: dict[str, threading.Event] = {}
        self._targets: dict[str, Target] = {}
        self._closing = threading.Event()

    # --- queries -------------------------------------------------------------------------

    def list(self) -> list[Record]:
        return [self._view(r) for r in sorted(self.registry.all(), key=lambda r: r["created_at"])]

    def get(self, instance_id: str) -> Record:
        return self._view(self.registry.snapshot(instance_id))

    def _view(self, record: Record) -> Record:
        view = rec.public_view(record)
        view["active_requests"], view["queued_requests"] = self.gates.counts(record["id"])
        view.update(upstream_fields(view, self.logs.path(record["id"])))
        return view

    def live(self, instance_id: str) -> dict[str, Any] | None:
        """Status, model name and live options, read per request by the proxy."""
        values = self.registry.fields(instance_id, LIVE_READ)
        return dict(zip(LIVE_READ, values)) if values is not None else None

    def target(self, instance_id: str) -> Target:
        """Where the healthy instance's llama-server listens; Unavailable otherwise."""
        target = self._targets.get(instance_id)
        if target is not None:
            return target
        record = self.registry.find(instance_id)
        status = record["status"] if record else "removed"
        raise Unavailable(f"instance {instance_id} is {status}", status=status)

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def next_port(self) -> int | None:
        return self.public_ports.suggest()

    # --- commands ------------------------------------------------------------------------

    @contextmanager
    def claimed_record(self, body: Any, launched_by: str) -> Iterator[Record]:
        """A new, validated record whose ports stay reserved until the caller has stored it."""
        request = rec.parse_launch(body, self.config.models_dir)
        self.check_execution(request.execution)
        port = self.public_ports.reserve(request.port)
        internal = None
        try:
            internal = self.internal_ports.reserve()
            yield rec.new_record(request, node=self.config.node_name, port=port, internal_port=internal,
                                 api_key=secrets.token_urlsafe(32), launched_by=launched_by)
        finally:
            self.public_ports.release(port)
            self.internal_ports.release(internal)

    def launch(self, body: Any, launched_by: str = "admin") -> Record:
        """Validate, claim ports, start serving the public port, and launch in the background."""
        with self.claimed_record(body, launched_by) as record:
            record["attempt"] = 1
            self.configure_gate(record)
            self.events.emit(SERVING, record["id"], record["port"])
            self.registry.insert(record)
        self.start_attempt(record["id"], 1)
        return self._view(record)

    def stop(self, instance_id: str) -> Record:
        """Stop llama-server and the public port; the record stays, as stopped (an on-demand
        instance keeps its port, asleep, so the next request starts it again)."""
        with self.registry.op_lock(instance_id):
            record = self.registry.snapshot(instance_id)
            if record["status"] in rec.ACTIVE and not _parked(record):
                self.halt_stopped(record)
                self.logs.event(instance_id, "stopped by request")
        return self.get(instance_id)

    def restart(self, instance_id: str) -> Record:
        """Relaunch with the same configuration (same public port when it is free)."""
        with self.registry.op_lock(instance_id):
            record = self.registry.snapshot(instance_id)
            if record["status"] in rec.ACTIVE:
                self._halt(record, rec.STOPPED, error=None)
            attempt = self.prepare_relaunch(instance_id)
        self.start_attempt(instance_id, attempt)
        return self.get(instance_id)

    def remove(self, instance_id: str) -> None:
        """Forget a stopped or failed instance."""
        with self.registry.op_lock(instance_id):
            record = self.registry.snapshot(instance_id)
            if record["status"] in rec.ACTIVE:
                raise Conflict(f"instance {instance_id} is {record['status']}; stop it first")
            self.registry.remove(instance_id)
        self.events.emit(REMOVED, instance_id)
        self.gates.remove(instance_id)
        self._last_end.pop(instance_id, None)
        self.logs.delete(instance_id)

    def stats(self, instance_id: str) -> Record:
        """Resource use, uptime and load time of one instance."""
        record = self.registry.snapshot(instance_id)
        usage = None
        if record["status"] == rec.HEALTHY and record.get("runtime"):
            usage = self.runtime.stats(RuntimeRef.from_dict(record["runtime"]))
        healthy_at = record.get("healthy_at")
        return {
            "id": instance_id,
            "status": record["status"],
            "cpu_percent": usage.cpu_percent if usage else None,
            "cpu_quota": usage.cpu_quota if usage else None,
            "mem_used": usage.mem_used if usage else None,
            "mem_limit": usage.mem_limit if usage else None,
            "gpus": self._gpus(record),
            "uptime_s": time.time() - healthy_at if healthy_at and record["status"] == rec.HEALTHY else None,
            "load_time_s": record.get("load_time_s"),
        }

    def update_options(self, instance_id: str, body: Any) -> Record:
        """Apply live options (gate, idle timeout, sampling overrides) without a relaunch."""
        body = require_object(body)
        needs_relaunch = sorted(set(body) - set(rec.LIVE_DEFAULTS) - {"auto_restart", "max_restarts", "restart_delay"})
        if needs_relaunch:
            raise Invalid(f"these settings need a relaunch: {', '.join(needs_relaunch)}")
        with self.registry.op_lock(instance_id):
            record = self.registry.snapshot(instance_id)
            options = rec.parse_options(body, base={k: record[k] for k in (*rec.LIVE_DEFAULTS, *rec.RESTART_DEFAULTS)})
            self.registry.update(instance_id, options)
            if record["status"] in rec.ACTIVE:
                self.configure_gate({**record, **options})
        return self.get(instance_id)

    def configure_gate(self, record: Record) -> None:
        pool = record["model_path"] if record.get("share_queue") else None
        self.gates.configure(record["id"], pool, record.get("max_concurrent", 0),
                             record.get("max_queue_depth", 0))

    # --- boot and shutdown ----------------------------------------------------------------

    def start(self, runtime: Runtime) -> None:
        """Attach the runtime and restore this node's instances (adopt, relaunch, clean)."""
        from llamaman.instances.restore import restore
        self.runtime = RuntimeSet(runtime, self.config)  # per-instance runtime choice
        self.runtime.prepare(r.get("runtime_kind") for r in self.registry.load())
        self.waiter = HealthWaiter(self.runtime, self.config.health_check_timeout, self.config.model_load_timeout)
        self._closing.clear()
        runtime.set_exit_listener(self._on_exit)
        restore(self)
        self.reaper.start()

    def close(self) -> None:
        """Stop serving public ports; llama-servers keep running for adoption on the next start."""
        self._closing.set()
        self.reaper.stop()
        self.runtime.set_exit_listener(None)
        for event in list(self._cancel.values()):
            event.set()
        self.events.emit(CLOSING)
        self.runtime.close()

    # --- internals ------------------------------------------------------------------------

    def _claimed(self, field: str) -> list[int]:
        return self.registry.values(field, lambda r: r["status"] in rec.ACTIVE)

    def start_attempt(self, instance_id: str, attempt: int, adopt: RuntimeRef | None = None) -> None:
        cancel = threading.Event()
        old = self._cancel.get(instance_id)
        if old is not None:
            old.set()
        self._cancel[instance_id] = cancel
        target = self._adopt if adopt is not None else self._launch
        thread = threading.Thread(target=target, args=(instance_id, attempt, cancel, adopt),
                                  name=f"launch-{instance_id}", daemon=True)
        thread.start()

    def _launch(self, instance_id: str, attempt: int, cancel: threading.Event, _: Any) -> None:
        record = self.registry.find(instance_id)
        if not self._current(record, attempt):
            return
        self.logs.event(instance_id, f"launching {record['model_path']} (attempt {attempt})")
        try:
            ref = self.runtime.launch(self._spec(record))
        except LlamamanError as err:
            self._fail(instance_id, attempt, err.message)
            return
        started = {"runtime": ref.to_dict(), "started_at": time.time()}
        if not self.registry.update(instance_id, started, when=self._is_attempt(attempt)):
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
        self._targets[instance_id] = target  # before the status, so whoever sees healthy finds it
        self._last_end[instance_id] = time.monotonic()
        if not self.registry.update(instance_id, healthy, when=self._is_attempt(attempt)):
            if self._targets.get(instance_id) is target:
                self._targets.pop(instance_id, None)
        else:
            self.logs.event(instance_id, "healthy" + ("" if adopted else f" after {healthy['load_time_s']}s"))

    def _fail(self, instance_id: str, attempt: int, reason: str) -> None:
        with self.registry.op_lock(instance_id):
            record = self.registry.find(instance_id)
            if self._current(record, attempt):
                self._halt(record, rec.FAILED, error=reason)
                self.logs.event(instance_id, f"failed: {reason.splitlines()[0]}")

    def _halt(self, record: Record, status: str, error: str | None) -> None:
        """Stop everything of an instance (caller holds its op lock), then set a final status.

        The attempt number moves on first, so threads of the old attempt back off.
        """
        instance_id = record["id"]
        self.registry.update(instance_id, {"attempt": record.get("attempt", 0) + 1})
        self.gates.remove(instance_id)  # queued requests are refused now, not after the stop
        cancel = self._cancel.pop(instance_id, None)
        if cancel is not None:
            cancel.set()
        self._targets.pop(instance_id, None)
        current = self.registry.find(instance_id) or record
        if current.get("runtime"):
            self.runtime.stop(RuntimeRef.from_dict(current["runtime"]))
        self.events.emit(STOPPED, instance_id, record["port"])
        self._targets.pop(instance_id, None)
        self.registry.update(instance_id, {"status": status, "error": error, "stopped_at": time.time()})

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
        port = self._reserve_again(self.public_ports, record["port"])
        internal = self._reserve_again(self.internal_ports, record["internal_port"])
        try:
            self.configure_gate(record)
            self.events.emit(SERVING, instance_id, port)
            self.registry.update(instance_id, {"port": port, "internal_port": internal, **changes})
        finally:
            self.public_ports.release(port)
            self.internal_ports.release(internal)

    @staticmethod
    def _reserve_again(allocator: PortAllocator, wanted: int) -> int:
        try:
            return allocator.reserve(wanted)
        except LlamamanError:
            return allocator.reserve()

    def _on_exit(self, ref: RuntimeRef, state: RuntimeState) -> None:
        """The runtime saw llama-server exit on its own: restart with backoff, or fail."""
        if self._closing.is_set():
            return
        if not self._crashed(self.registry.find(ref.instance_id), ref):
            return  # stopped meanwhile, or an older process: nothing to recover
        reason = state.reason or f"llama-server exited ({state.exit_code})"
        self.logs.event(ref.instance_id, f"crashed: {reason.splitlines()[0]}")
        threading.Thread(target=self._recover, args=(ref, reason), daemon=True).start()

    def _recover(self, ref: RuntimeRef, reason: str) -> None:
        instance_id = ref.instance_id
        with self.registry.op_lock(instance_id):
            record = self.registry.find(instance_id)
            if not self._crashed(record, ref):
                return
            restarts = record.get("restarts", 0)
            if record.get("healthy_at") and time.time() - record["healthy_at"] > STABLE_AFTER_S:
                restarts = 0
            if not record.get("auto_restart") or restarts >= record.get("max_restarts", 0):
                self._halt(record, rec.FAILED, error=_with_log(reason, record))
                return
            self._targets.pop(instance_id, None)
            self.runtime.stop(ref)
            attempt = record["attempt"] + 1
            delay = min(MAX_BACKOFF_S, record.get("restart_delay", 0) * 2 ** restarts)
            self.registry.update(instance_id, {"status": rec.STARTING, "attempt": attempt,
                                               "restarts": restarts + 1, "error": reason, "runtime": None})
        self.logs.event(instance_id, f"restarting in {delay:g}s (restart {restarts + 1} of "
                                     f"{record.get('max_restarts')})")
        timer = threading.Timer(delay, self.start_attempt, args=(instance_id, attempt))
        timer.daemon = True
        timer.start()

    @staticmethod
    def _crashed(record: Record | None, ref: RuntimeRef) -> bool:
        """True when ref is the llama-server this healthy record runs (not an older one)."""
        return (record is not None and record["status"] == rec.HEALTHY
                and (record.get("runtime") or {}).get("handle") == ref.handle)

    def _spec(self, record: Record) -> LaunchSpec:
        return LaunchSpec(
            instance_id=record["id"], node=record["node"],
            model_path=Path(record["real_model_path"]), internal_port=record["internal_port"],
            api_key=record["api_key"], settings=LaunchSettings.from_body(record["settings"]),
            log_path=self.logs.path(record["id"]), environment=record.get("environment") or {},
            command_override=record.get("command_override"), runtime=record.get("runtime_kind"),
        )

    def _gpus(self, record: Record) -> list[int] | None:
        return rec.assigned_gpus(record["settings"], self.config.gpu_devices)

    @staticmethod
    def _is_attempt(attempt: int):
        return lambda r: r.get("attempt") == attempt and r["status"] == rec.STARTING

    @staticmethod
    def _current(record: Record | None, attempt: int) -> bool:
        return bool(record) and record.get("attempt") == attempt and record["status"] == rec.STARTING


def _parked(record: Record) -> bool:
    """An on-demand instance asleep: stopping it changes nothing."""
    return bool(record.get("on_demand_start")) and record["status"] == rec.SLEEPING


def _with_log(reason: str, record: Record) -> str:
    if "\n" in reason:
        return reason
    lines = tail_lines((record.get("runtime") or {}).get("log_path", ""), 20)
    return reason + ("\n" + "\n".join(lines) if lines else "")
