"""Forwarding a request of the compat API to an instance through the same gate, wake and
sampling overrides as its sidecar, over the shared upstream pool."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from llamaman.proxy import inference
from llamaman.proxy.contract import Instances
from llamaman.proxy.gate import Gates, Ticket
from llamaman.proxy.upstream import UpstreamPool


@dataclass
class Opened:
    """An upstream response in flight; close() releases the gate slot (once)."""

    ticket: Ticket
    response: Any
    waited_s: float  # queueing and loading before the request reached llama-server
    instances: Instances
    closed: bool = False

    def close(self, finished: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        if finished:
            self.response.drain_conn()  # reads what is left (e.g. after [DONE]) so the connection can be reused
        else:
            self.response.close()  # stop generating for a client that went away
        self.response.release_conn()
        self.ticket.release()
        self.instances.request_done(self.ticket.member_id)


class Forwarder:
    def __init__(self, instances: Instances, gates: Gates, pool: UpstreamPool, timeout: float) -> None:
        self.instances = instances
        self.gates = gates
        self.pool = pool
        self.timeout = timeout

    def open(self, instance_id: str, path: str, body: dict[str, Any]) -> Opened:
        """Admit, wake if needed, apply overrides, and send; the caller must close() the result."""
        started = time.monotonic()
        ticket = self.gates.admit(instance_id, self.timeout, lambda: False)
        try:
            target = self.instances.ensure_running(ticket.member_id, self.timeout)
            live = self.instances.live(ticket.member_id) or {}
            raw = inference.apply_overrides(json.dumps(body).encode(), body, live)
            waited = time.monotonic() - started
            response = self.pool.open("POST", target.host, target.port, path,
                                      {"Authorization": f"Bearer {target.api_key}",
                                       "Content-Type": "application/json"}, raw)
        except BaseException:
            ticket.release()
            self.instances.request_done(ticket.member_id)
            raise
        return Opened(ticket, response, waited, self.instances)
