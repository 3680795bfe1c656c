"""Lifecycle events of instances, for whoever serves their public ports (wired in services.py).

Subscribers run synchronously on the thread that changes the instance, in subscription order.
A subscriber that cannot follow a `SERVING` event (its port cannot be bound) raises, and the
change that emitted it is abandoned: the error reaches the caller (launch → 409).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

# What happened to an instance's public port.
SERVING = "serving"  # launched, relaunched, parked or restored: its public port must answer
STOPPED = "stopped"  # stopped, failed or evicted: its public port closes
REMOVED = "removed"  # forgotten (it was stopped before)
CLOSING = "closing"  # the manager shuts down: every port closes (llama-servers keep running)


@dataclass(frozen=True)
class LifecycleEvent:
    kind: str
    instance_id: str = ""
    port: int = 0


Subscriber = Callable[[LifecycleEvent], None]


class LifecycleEvents:
    """Subscribers of the instance lifecycle, called in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a leaf lock: guards the list only, never held while calling out
        self._subscribers: tuple[Subscriber, ...] = ()

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call subscriber on every later event."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)

    def emit(self, kind: str, instance_id: str = "", port: int = 0) -> None:
        """Tell every subscriber; an exception of one stops the rest and reaches the caller."""
        event = LifecycleEvent(kind, instance_id, port)
        for subscriber in self._subscribers:
            subscriber(event)
