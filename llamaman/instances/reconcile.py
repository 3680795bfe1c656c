"""The stale-record check: this node's records vs. the llama-servers the runtime still runs.

Crash recovery (LaunchAttempts._on_exit) acts on every exit the runtime reports; this check
is the safety net for exits it never reported. So a starting or healthy record whose
llama-server is gone is marked stopped only when a second check (an interval later) finds it
unchanged: a reported exit has moved it on (restart or failure) long before, and the check never
races crash recovery for the instance. Sleeping instances run nothing by design, and starting
ones without a runtime are waiting for their (re)launch: both are left alone. Strays
(llama-servers of this node that no record runs) are stopped at once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llamaman.instances import records as rec
from llamaman.instances.restore import stop_orphans
from llamaman.runtime import Discovered, RuntimeRef, RuntimeState

if TYPE_CHECKING:
    from llamaman.instances.registry import Record
    from llamaman.instances.service import InstanceService

log = logging.getLogger(__name__)

LIVE = (rec.STARTING, rec.HEALTHY)  # statuses that should have a running llama-server


@dataclass
class ReconcileReport:
    marked_stopped: list[str] = field(default_factory=list)  # instance ids
    strays_removed: list[str] = field(default_factory=list)  # runtime names
    suspects: list[str] = field(default_factory=list)  # found gone once: marked if still so next time

    @property
    def changed(self) -> int:
        return len(self.marked_stopped) + len(self.strays_removed)


class StaleRecords:
    """The check, with what it found gone on its previous run."""

    def __init__(self, service: InstanceService) -> None:
        self.service = service
        self._suspects: dict[str, tuple[str, int]] = {}  # instance id -> (handle, attempt) seen gone

    def run(self) -> ReconcileReport:
        """Mark records whose llama-server stayed gone stopped; stop this node's strays."""
        found = self.service.runtime.discover()  # before the records: a new launch has its record already
        report = ReconcileReport()
        suspects = {}
        for record in self.service.registry.all():
            if _gone(self.service, record) is None:
                continue
            key = _identity(record)
            if self._suspects.get(record["id"]) != key:
                suspects[record["id"]] = key
            elif _mark_stopped(self.service, record["id"], key):
                report.marked_stopped.append(record["id"])
        self._suspects = suspects
        report.suspects = sorted(suspects)
        strays = [d for d in found if d.ref.instance_id not in report.marked_stopped and _stray(self.service, d)]
        report.strays_removed = stop_orphans(self.service.runtime, strays)
        return report


def _identity(record: Record) -> tuple[str, int]:
    """Which llama-server of which launch attempt the record runs (a relaunch changes it)."""
    return record["runtime"]["handle"], record.get("attempt", 0)


def _gone(service: InstanceService, record: Record) -> RuntimeState | None:
    """The runtime state of a starting/healthy record's llama-server when it is not running."""
    stored = record.get("runtime")
    if record["status"] not in LIVE or not stored:
        return None
    state = service.runtime.state(RuntimeRef.from_dict(stored))
    return None if state.running else state


def _mark_stopped(service: InstanceService, instance_id: str, key: tuple[str, int]) -> bool:
    """Stop the record through the lifecycle's own path if it still runs that dead llama-server."""
    with service.registry.op_lock(instance_id):
        current = service.registry.find(instance_id)
        state = _gone(service, current) if current is not None else None
        if state is None or _identity(current) != key:
            return False
        reason = (state.reason or state.status).splitlines()[0]
        # halt is the stop path: the attempt moves on; gate, port and runtime leftovers are released.
        service.attempts.halt(current, rec.STOPPED, error=f"llama-server was gone ({reason}); marked stopped")
    service.logs.event(instance_id, f"marked stopped by the stale-record check: llama-server was gone ({reason})")
    log.warning("instance %s: llama-server was gone (%s); marked stopped", instance_id, reason)
    return True


def _stray(service: InstanceService, found: Discovered) -> bool:
    """No record runs it: none at all, a stopped/failed one, or a healthy one that runs another."""
    record = service.registry.find(found.ref.instance_id)
    if record is None or record["status"] in (rec.STOPPED, rec.FAILED):
        return True
    runs = (record.get("runtime") or {}).get("handle")
    return record["status"] == rec.HEALTHY and runs is not None and runs != found.ref.handle
