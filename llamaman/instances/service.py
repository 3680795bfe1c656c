"""The instance service: the one façade the routes, the scheduler and the proxy use.

It composes the lifecycle's collaborators and keeps none of their state:
- `LaunchAttempts` (attempts.py): start, health wait, halt, crash recovery; where healthy ones listen;
- `SleepWake` (idle.py): the idle reaper, single-flight wakes, eviction, the idle clocks;
- `Definitions` (definitions.py): new records, execution checks, changed settings;
- `PortClaims` (claims.py): the public and internal port ranges.
Public ports are not served here: lifecycle events (events.py) tell whoever serves them.

Lock order: an instance's op lock → a gate's lock (proxy/gate.py) → the registry's locks
(registry.py). Runtime calls and storage writes happen outside the registry's `_lock`.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from llamaman.config import Config
from llamaman.errors import Conflict, Invalid, Unavailable
from llamaman.instances import records as rec
from llamaman.instances.attempts import LaunchAttempts, configure_gate
from llamaman.instances.claims import PortClaims
from llamaman.instances.definitions import Definitions
from llamaman.instances.events import CLOSING, REMOVED, SERVING, LifecycleEvents
from llamaman.instances.idle import SleepWake
from llamaman.instances.logs import InstanceLogs
from llamaman.instances.registry import InstanceRegistry, Record
from llamaman.instances.restore import restore
from llamaman.instances.upstream_view import upstream_fields
from llamaman.proxy.contract import Target
from llamaman.proxy.gate import Gates
from llamaman.runtime import Runtime, RuntimeRef
from llamaman.runtime.choice import RuntimeSet
from llamaman.validation import require_object

LIVE_READ = ("status", "model_name", "error", *rec.LIVE_DEFAULTS)


class InstanceService:
    """Owns this node's instances; the REST routes, the scheduler and the proxy call it."""

    def __init__(self, config: Config, registry: InstanceRegistry, logs: InstanceLogs, gates: Gates,
                 events: LifecycleEvents | None = None) -> None:
        self.config = config
        self.registry = registry
        self.logs = logs
        self.gates = gates
        self.events = events or LifecycleEvents()  # the composition root serves the public ports from these
        self.claims = PortClaims(config, registry)
        self.attempts = LaunchAttempts(config, registry, logs, gates, self.events, self.claims,
                                       on_healthy=self._idle_clock_starts)
        self.idle = SleepWake(registry, logs, gates, self.attempts)
        self.definitions = Definitions(config, registry, logs, self.attempts, self.claims)
        self._targets = self.attempts.targets  # read per request (target())
        # The request path calls these often: bound once, straight to their owner.
        self.ensure_running = self.idle.ensure_running
        self.request_done = self.idle.request_done

    def _idle_clock_starts(self, instance_id: str) -> None:
        self.idle.request_done(instance_id)

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
    def runtime(self) -> Runtime:
        return self.attempts.runtime

    @property
    def closing(self) -> bool:
        return self.attempts.closing

    @property
    def waker(self) -> Callable[[str, float], None]:
        return self.idle.waker

    @waker.setter
    def waker(self, waker: Callable[[str, float], None]) -> None:
        """Who wakes an instance for a request on its port (the scheduler: the cap applies)."""
        self.idle.waker = waker

    def next_port(self) -> int | None:
        return self.claims.suggest()

    def last_use(self) -> dict[str, float]:
        """Epoch time each instance last finished a request (for expiry estimates)."""
        return self.idle.last_use()

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
            "gpus": rec.assigned_gpus(record["settings"], self.config.gpu_devices),
            "uptime_s": time.time() - healthy_at if healthy_at and record["status"] == rec.HEALTHY else None,
            "load_time_s": record.get("load_time_s"),
        }

    # --- commands ------------------------------------------------------------------------

    def launch(self, body: Any, launched_by: str = "admin") -> Record:
        """Validate, claim ports, start serving the public port, and launch in the background."""
        with self.definitions.new_record(body, launched_by) as record:
            record["attempt"] = 1
            configure_gate(self.gates, record)
            self.events.emit(SERVING, record["id"], record["port"])
            self.registry.insert(record)
        self.attempts.start(record["id"], 1)
        return self._view(record)

    def define(self, body: Any, launched_by: str = "admin") -> Record:
        """Create a stopped instance whose name is unique on this node; parked when on-demand."""
        return self.get(self.definitions.define(body, launched_by))

    def stop(self, instance_id: str) -> Record:
        """Stop llama-server and the public port; the record stays, as stopped (an on-demand
        instance keeps its port, asleep, so the next request starts it again)."""
        with self.registry.op_lock(instance_id):
            record = self.registry.snapshot(instance_id)
            if record["status"] in rec.ACTIVE and not _parked(record):
                self.attempts.halt_stopped(record)
                self.logs.event(instance_id, "stopped by request")
        return self.get(instance_id)

    def restart(self, instance_id: str) -> Record:
        """Relaunch with the same configuration (same public port when it is free)."""
        with self.registry.op_lock(instance_id):
            record = self.registry.snapshot(instance_id)
            if record["status"] in rec.ACTIVE:
                self.attempts.halt(record, rec.STOPPED, error=None)
            attempt = self.attempts.prepare_relaunch(instance_id)
        self.attempts.start(instance_id, attempt)
        return self.get(instance_id)

    def relaunch(self, instance_id: str) -> None:
        """Start a stopped or failed instance with its stored configuration."""
        with self.registry.op_lock(instance_id):
            if self.registry.snapshot(instance_id)["status"] in rec.ACTIVE:
                return
            attempt = self.attempts.prepare_relaunch(instance_id)
        self.attempts.start(instance_id, attempt)

    def reconfigure(self, instance_id: str, body: Any) -> tuple[Record, dict[str, Any], bool]:
        """Apply changed settings (see Definitions.reconfigure); the instance, changes, restarted."""
        changes, restarted = self.definitions.reconfigure(instance_id, body)
        return self.get(instance_id), changes, restarted

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
                configure_gate(self.gates, {**record, **options})
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
        self.idle.forget(instance_id)
        self.logs.delete(instance_id)

    def remove_named(self, instance_id: str) -> None:
        """Forget an instance that runs nothing (a parked on-demand one counts as stopped)."""
        self.definitions.unpark(instance_id)
        self.remove(instance_id)

    # --- sleep and wake (SleepWake) ---------------------------------------------------------

    def wake(self, instance_id: str, timeout: float) -> None:
        """Start a sleeping instance (one launch: later callers find it starting)."""
        self.idle.wake(instance_id, timeout)

    def sleep(self, instance_id: str) -> bool:
        """Put a healthy instance to sleep now; False when requests are in flight."""
        return self.idle.sleep(instance_id)

    def evict(self, instance_id: str) -> bool:
        """Stop an instance for another model, only while nothing of it is in flight."""
        return self.idle.evict(instance_id)

    # --- boot and shutdown ----------------------------------------------------------------

    def start(self, runtime: Runtime) -> None:
        """Attach the runtime and restore this node's instances (adopt, relaunch, clean)."""
        chosen = RuntimeSet(runtime, self.config)  # per-instance runtime choice
        chosen.prepare(r.get("runtime_kind") for r in self.registry.load())
        self.attempts.attach(chosen)
        restore(self.attempts)
        self.idle.reaper.start()

    def close(self) -> None:
        """Stop serving public ports; llama-servers keep running for adoption on the next start."""
        self.attempts.close()
        self.idle.reaper.stop()
        self.events.emit(CLOSING)
        self.runtime.close()


def _parked(record: Record) -> bool:
    """An on-demand instance asleep: stopping it changes nothing."""
    return bool(record.get("on_demand_start")) and record["status"] == rec.SLEEPING
