"""Boot reconciliation: records vs. what the runtime still runs for this node."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from llamaman.errors import LlamamanError
from llamaman.instances import records as rec
from llamaman.instances.events import SERVING
from llamaman.runtime import Discovered, RuntimeRef

if TYPE_CHECKING:
    from llamaman.instances.service import InstanceService

log = logging.getLogger(__name__)


def restore(service: InstanceService) -> None:
    """Adopt running instances, relaunch lost ones, keep sleepers asleep, clean orphans."""
    records = service.registry.load()
    found = {d.ref.instance_id: d for d in service.runtime.discover()}
    for record in records:
        try:
            _restore_one(service, record, found.pop(record["id"], None))
        except LlamamanError as err:
            log.error("could not restore instance %s: %s", record["id"], err.message)
            service.registry.update(record["id"], {"status": rec.FAILED, "error": err.message,
                                                   "stopped_at": time.time()})
    stop_orphans(service, found.values())


def stop_orphans(service: InstanceService, orphans: Iterable[Discovered]) -> list[str]:
    """Stop llama-servers of this node that no active record owns; returns their names."""
    stopped = []
    for orphan in orphans:
        log.warning("removing orphaned llama-server %s (no record runs it)", orphan.ref.name)
        service.runtime.stop(orphan.ref)
        stopped.append(orphan.ref.name)
    return stopped


def _restore_one(service: InstanceService, record: dict, found: Discovered | None) -> None:
    status = record["status"]
    if status in (rec.STARTING, rec.HEALTHY):
        if found is not None and found.state.running and _same(record, found.ref):
            _adopt(service, record, found.ref)
            return
        if found is not None:
            service.runtime.stop(found.ref)
        service.registry.update(record["id"], {"status": rec.STOPPED, "runtime": None})
        attempt = service.prepare_relaunch(record["id"])
        service.logs.event(record["id"], "relaunching: llama-server was gone after a manager restart")
        service.start_attempt(record["id"], attempt)
        return
    if found is not None:
        service.runtime.stop(found.ref)  # sleeping, stopped and failed instances run nothing
    if status == rec.SLEEPING:
        service.configure_gate(record)
        service.events.emit(SERVING, record["id"], record["port"])


def _adopt(service: InstanceService, record: dict, ref: RuntimeRef) -> None:
    service.configure_gate(record)
    service.events.emit(SERVING, record["id"], record["port"])
    attempt = record.get("attempt", 0) + 1
    service.registry.update(record["id"], {"status": rec.STARTING, "attempt": attempt,
                                           "runtime": ref.to_dict()})
    service.start_attempt(record["id"], attempt, adopt=ref)


def _same(record: dict, ref: RuntimeRef) -> bool:
    stored = record.get("runtime") or {}
    return not stored or stored.get("handle") == ref.handle
