"""The request gate: strictly FIFO admission, per-member concurrency limits, a bounded queue.

A gate has one or more members (instances); a shared-queue pool is a gate with several.
Every admitted request is counted on the member it was given, so the counts double as the
in-flight numbers the idle reaper checks. Limits change in place: lowering one never
cancels running requests, and no new request is admitted until the member is below it.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from llamaman.errors import ClientGone, GateTimeout, QueueFull, Unavailable

WAIT_SLICE_S = 0.1


@dataclass
class Member:
    limit: int  # 0 = unlimited
    queue_depth: int
    active: int = 0

    def free(self) -> float:
        return float("inf") if self.limit == 0 else self.limit - self.active


@dataclass
class _Waiter:
    granted: str | None = None
    seq: int = 0
    event: threading.Event = field(default_factory=threading.Event)


class Gate:
    """FIFO admission over a set of members; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.members: dict[str, Member] = {}
        self.waiters: deque[_Waiter] = deque()
        self.admitted = 0

    def set_member(self, member_id: str, limit: int, queue_depth: int) -> None:
        """Add a member or change its limits in place (active requests stay counted)."""
        with self.lock:
            member = self.members.setdefault(member_id, Member(limit, queue_depth))
            member.limit, member.queue_depth = limit, queue_depth
            self._grant()

    def remove_member(self, member_id: str, only_if_idle: bool = False) -> bool:
        """Drop a member (False, and nothing done, when only_if_idle and it has requests in
        flight); with none left, queued requests are turned away at once."""
        with self.lock:
            member = self.members.get(member_id)
            if only_if_idle and member is not None and member.active > 0:
                return False
            self.members.pop(member_id, None)
            if not self.members:
                while self.waiters:
                    self.waiters.popleft().event.set()  # granted stays None: refused
            return True

    def acquire(self, timeout: float, gone: Callable[[], bool] = lambda: False) -> Ticket:
        """Wait for a slot in arrival order; return the member that got it."""
        with self.lock:
            member_id = self._pick() if not self.waiters else None
            if member_id is not None:
                return self._admit(member_id)
            if len(self.waiters) >= self._queue_depth():
                raise QueueFull("request queue full")
            waiter = _Waiter()
            self.waiters.append(waiter)
        return self._wait(waiter, timeout, gone)

    def release(self, member_id: str) -> None:
        with self.lock:
            member = self.members.get(member_id)
            if member is not None and member.active > 0:
                member.active -= 1
            self._grant()

    def if_idle(self, member_id: str, action: Callable[[], None]) -> bool:
        """Run action while no request of the member is in flight (none can be admitted meanwhile)."""
        with self.lock:
            member = self.members.get(member_id)
            if member is not None and member.active > 0:
                return False
            action()
            return True

    def counts(self, member_id: str) -> tuple[int, int]:
        """(active requests of the member, requests queued at the gate)."""
        with self.lock:
            member = self.members.get(member_id)
            return (member.active if member else 0), len(self.waiters)

    def _admit(self, member_id: str) -> Ticket:
        self.members[member_id].active += 1
        self.admitted += 1
        return Ticket(self, member_id, self.admitted)

    def _wait(self, waiter: _Waiter, timeout: float, gone: Callable[[], bool]) -> Ticket:
        deadline = time.monotonic() + timeout
        while not waiter.event.wait(WAIT_SLICE_S):
            expired = time.monotonic() >= deadline
            if expired or gone():
                with self.lock:
                    if waiter.granted is None:
                        self.waiters.remove(waiter)
                        if expired:
                            raise GateTimeout(f"timed out after {timeout:g}s waiting in the request queue")
                        raise ClientGone("client disconnected while queued")
                break  # granted while we were giving up: take the slot
        if waiter.granted is None:
            raise Unavailable("the instance stopped while the request was queued")
        return Ticket(self, waiter.granted, waiter.seq)

    def _grant(self) -> None:
        while self.waiters:
            member_id = self._pick()
            if member_id is None:
                return
            waiter = self.waiters.popleft()
            waiter.seq = self._admit(member_id).seq
            waiter.granted = member_id
            waiter.event.set()

    def _pick(self) -> str | None:
        """The member with the most free slots (least busy first), or None when all are full."""
        open_members = [(m.free(), -m.active, member_id) for member_id, m in self.members.items()
                        if m.free() > 0]
        return max(open_members)[2] if open_members else None

    def _queue_depth(self) -> int:
        return max((m.queue_depth for m in self.members.values()), default=0)


@dataclass(frozen=True)
class Ticket:
    """An admitted request: which member it was given, its place in the gate's admission
    order, and the gate to release it on."""

    gate: Gate
    member_id: str
    seq: int

    def release(self) -> None:
        self.gate.release(self.member_id)


class Gates:
    """The gate of each instance: its own, or its model's shared pool (Share Queue)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[str, Gate] = {}
        self._key_of: dict[str, str] = {}

    def configure(self, instance_id: str, pool: str | None, limit: int, queue_depth: int) -> None:
        """Place an instance in its pool (None = its own gate) with these limits, live."""
        key = f"pool:{pool}" if pool else f"instance:{instance_id}"
        with self._lock:
            old = self._key_of.get(instance_id)
            if old is not None and old != key:
                self._gates[old].remove_member(instance_id)
            self._key_of[instance_id] = key
            gate = self._gates.setdefault(key, Gate())
        gate.set_member(instance_id, limit, queue_depth)

    def remove(self, instance_id: str) -> None:
        with self._lock:
            key = self._key_of.pop(instance_id, None)
            gate = self._gates.get(key) if key else None
        if gate is not None:
            gate.remove_member(instance_id)

    def gate(self, instance_id: str) -> Gate | None:
        with self._lock:
            key = self._key_of.get(instance_id)
            return self._gates.get(key) if key else None

    def admit(self, instance_id: str, timeout: float, gone: Callable[[], bool]) -> Ticket:
        gate = self.gate(instance_id)
        if gate is None:
            raise QueueFull("instance is not accepting requests")
        return gate.acquire(timeout, gone)

    def counts(self, instance_id: str) -> tuple[int, int]:
        gate = self.gate(instance_id)
        return gate.counts(instance_id) if gate else (0, 0)

    def remove_if_idle(self, instance_id: str) -> bool:
        """Take an instance out of its gate unless it has requests in flight (atomically)."""
        gate = self.gate(instance_id)
        if gate is not None and not gate.remove_member(instance_id, only_if_idle=True):
            return False
        with self._lock:
            self._key_of.pop(instance_id, None)
        return True

    def if_idle(self, instance_id: str, action: Callable[[], None]) -> bool:
        gate = self.gate(instance_id)
        if gate is None:
            action()
            return True
        return gate.if_idle(instance_id, action)
