"""Idle sleep and wake of instances: the idle reaper, single-flight wakes, and eviction.

Sleeping is decided under the gate's lock, so no request can be admitted between "nothing in
flight" and "asleep"; a request that finds the instance asleep wakes it, and concurrent ones
wait for that one launch.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from llamaman.errors import Unavailable
from llamaman.instances import records as rec
from llamaman.instances.attempts import LaunchAttempts
from llamaman.instances.logs import InstanceLogs
from llamaman.instances.registry import InstanceRegistry
from llamaman.periodic import PeriodicJob
from llamaman.proxy.contract import Target
from llamaman.proxy.gate import Gates
from llamaman.runtime import RuntimeRef

REAP_INTERVAL_S = 1.0
# Nothing is in flight when an instance falls asleep and llama-server keeps no state worth a
# clean exit, so it is killed at once: a request that wakes it meanwhile waits for this stop.
SLEEP_GRACE_S = 0.0


class SleepWake:
    """Puts idle instances to sleep and wakes them on demand; owns each instance's idle clock."""

    def __init__(self, registry: InstanceRegistry, logs: InstanceLogs, gates: Gates,
                 attempts: LaunchAttempts) -> None:
        self.registry = registry
        self.logs = logs
        self.gates = gates
        self.attempts = attempts
        self._targets = attempts.targets  # read on the request path; LaunchAttempts writes it
        self._last_end: dict[str, float] = {}
        self.waker: Callable[[str, float], None] = self.wake  # replaced by the scheduler's
        self.reaper = PeriodicJob("idle-reaper", REAP_INTERVAL_S, self.reap_idle)

    def ensure_running(self, instance_id: str, timeout: float) -> Target:
        """The instance's target, waking it first when it sleeps (one launch however many ask)."""
        target = self._targets.get(instance_id)
        if target is not None:
            return target
        record = self.registry.snapshot(instance_id)
        if record["status"] == rec.SLEEPING:
            self.waker(instance_id, timeout)  # the scheduler, once wired: waking counts against the cap
        settled = self.registry.wait_until(instance_id, lambda r: r["status"] != rec.STARTING, timeout)
        target = self._targets.get(instance_id)
        if target is None:
            reason = (settled or {}).get("error") or f"instance {instance_id} is {(settled or {}).get('status', 'not ready')}"
            raise Unavailable(reason)
        return target

    def wake(self, instance_id: str, timeout: float) -> None:
        """Start a sleeping instance (one launch: later callers find it starting)."""
        lock = self.registry.op_lock(instance_id)
        if not lock.acquire(timeout=timeout):
            raise Unavailable(f"instance {instance_id} is busy stopping or starting")
        try:
            record = self.registry.snapshot(instance_id)
            if record["status"] != rec.SLEEPING:
                return
            attempt = record.get("attempt", 0) + 1
            self.registry.update(instance_id, {"status": rec.STARTING, "attempt": attempt,
                                               "runtime": None, "error": None})
            self.logs.event(instance_id, "waking on request")
            self.attempts.start(instance_id, attempt)
        finally:
            lock.release()

    def evict(self, instance_id: str) -> bool:
        """Stop an instance for another model, only while nothing of it is in flight."""
        with self.registry.op_lock(instance_id):
            record = self.registry.find(instance_id)
            if record is None or record["status"] not in rec.ACTIVE:
                return False
            if not self.gates.remove_if_idle(instance_id):
                return False
            self.attempts.halt_stopped(record)  # an on-demand instance stays reachable, asleep
        self.logs.event(instance_id, "evicted to make room for another model (LLAMAMAN_MAX_MODELS)")
        return True

    def request_done(self, instance_id: str) -> None:
        """Idle time counts from the end of the last request."""
        self._last_end[instance_id] = time.monotonic()

    def forget(self, instance_id: str) -> None:
        """Drop the idle clock of a removed instance."""
        self._last_end.pop(instance_id, None)

    def last_use(self) -> dict[str, float]:
        """Epoch time each instance last finished a request (for expiry estimates)."""
        offset = time.time() - time.monotonic()
        return {instance_id: end + offset for instance_id, end in self._last_end.items()}

    def reap_idle(self) -> None:
        """Put healthy instances to sleep once idle past their idle timeout."""
        now = time.monotonic()
        for record in self.registry.all():
            timeout_min = record.get("idle_timeout_min") or 0
            if record["status"] != rec.HEALTHY or timeout_min <= 0:
                continue
            last = self._last_end.setdefault(record["id"], now)
            if now - last >= timeout_min * 60:
                self.sleep(record["id"])

    def sleep(self, instance_id: str) -> bool:
        """Stop llama-server but keep the public port answering; False when requests are in flight."""
        with self.registry.op_lock(instance_id):
            record = self.registry.find(instance_id)
            if record is None or record["status"] != rec.HEALTHY:
                return False
            if not self.gates.if_idle(instance_id, lambda: self._mark_sleeping(instance_id)):
                return False
            if record.get("runtime"):
                self.attempts.runtime.stop(RuntimeRef.from_dict(record["runtime"]), grace_s=SLEEP_GRACE_S)
            self.registry.update(instance_id, {"runtime": None})
        self.logs.event(instance_id, "sleeping after the idle timeout")
        return True

    def _mark_sleeping(self, instance_id: str) -> None:
        self.attempts.drop_target(instance_id)
        self.registry.update(instance_id, {"status": rec.SLEEPING, "slept_at": time.time()})
