"""Boot reconciliation: records vs. what the runtime still runs for this node."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from llamaman.errors import LlamamanError
from llamaman.instances import records as rec
from llamaman.instances.attempts import LaunchAttempts, configure_gate
from llamaman.instances.events import SERVING
from llamaman.runtime import Discovered, Runtime, RuntimeRef

log = logging.getLogger(__name__)


def restore(attempts: LaunchAttempts) -> None:
    """Adopt running instances, relaunch lost ones, keep sleepers asleep, clean orphans."""
    registry = attempts.registry
    records = registry.load()
    found = {d.ref.instance_id: d for d in attempts.runtime.discover()}
    for record in records:
        try:
            _restore_one(attempts, record, found.pop(record["id"], None))
        except LlamamanError as err:
            log.error("could not restore instance %s: %s", record["id"], err.message)
            registry.update(record["id"], {"status": rec.FAILED, "error": err.message, "stopped_at": time.time()})
    stop_orphans(attempts.runtime, found.values())


def stop_orphans(runtime: Runtime, orphans: Iterable[Discovered]) -> list[str]:
    """Stop llama-servers of this node that no active record owns; returns their names."""
    stopped = []
    for orphan in orphans:
        log.warning("removing orphaned llama-server %s (no record runs it)", orphan.ref.name)
        runtime.stop(orphan.ref)
        stopped.append(orphan.ref.name)
    return stopped


def _restore_one(attempts: LaunchAttempts, record: dict, found: Discovered | None) -> None:
    status = record["status"]
    if status in (rec.STARTING, rec.HEALTHY):
        if found is not None and found.state.running and _same(record, found.ref):
            _adopt(attempts, record, found.ref)
            return
        if found is not None:
            attempts.runtime.stop(found.ref)
        attempts.registry.update(record["id"], {"status": rec.STOPPED, "runtime": None})
        attempt = attempts.prepare_relaunch(record["id"])
        attempts.logs.event(record["id"], "relaunching: llama-server was gone after a manager restart")
        attempts.start(record["id"], attempt)
        return
    if found is not None:
        attempts.runtime.stop(found.ref)  # sleeping, stopped and failed instances run nothing
    if status == rec.SLEEPING:
        _serve(attempts, record)


def _adopt(attempts: LaunchAttempts, record: dict, ref: RuntimeRef) -> None:
    _serve(attempts, record)
    attempt = record.get("attempt", 0) + 1
    attempts.registry.update(record["id"], {"status": rec.STARTING, "attempt": attempt, "runtime": ref.to_dict()})
    attempts.start(record["id"], attempt, adopt=ref)


def _serve(attempts: LaunchAttempts, record: dict) -> None:
    configure_gate(attempts.gates, record)
    attempts.events.emit(SERVING, record["id"], record["port"])


def _same(record: dict, ref: RuntimeRef) -> bool:
    stored = record.get("runtime") or {}
    return not stored or stored.get("handle") == ref.handle
