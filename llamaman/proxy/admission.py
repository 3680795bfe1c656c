"""One request's path to an instance: admit → wake → sampling overrides → open upstream.

The sidecar and the compat forwarder both send through a Pipeline. A request that passes the
gate holds an Admission until its response ends; release() frees the gate slot and starts the
instance's idle clock exactly once, whichever end comes first: an error before llama-server
answers, the relay's close, or a client that went away.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from llamaman.proxy import inference
from llamaman.proxy.contract import Instances
from llamaman.proxy.gate import Gates, Ticket
from llamaman.proxy.upstream import Response, UpstreamPool


class Admission:
    """A request admitted by an instance's gate (not thread-safe: one request, one thread)."""

    __slots__ = ("_done", "arrived", "released", "ticket", "waited_s")

    def __init__(self, ticket: Ticket, done: Callable[[str], None], arrived: float) -> None:
        self.ticket = ticket
        self._done = done
        self.arrived = arrived
        self.waited_s: float | None = None  # queueing and loading, once the request is sent upstream
        self.released = False

    @property
    def member_id(self) -> str:
        return self.ticket.member_id

    @property
    def seq(self) -> int:
        return self.ticket.seq

    def release(self) -> None:
        """Free the gate slot and end the request for the idle clock (once; later calls do nothing)."""
        if self.released:
            return
        self.released = True
        self.ticket.release()
        self._done(self.ticket.member_id)


class Pipeline:
    """Admits requests to an instance and opens them upstream."""

    def __init__(self, instances: Instances, gates: Gates, pool: UpstreamPool, timeout: float) -> None:
        self.instances = instances
        self.gates = gates
        self.pool = pool
        self.timeout = timeout
        self._done = instances.request_done  # bound once, not per request

    def admit(self, instance_id: str, gone: Callable[[], bool], arrived: float) -> Admission:
        """Wait for a slot at the instance's gate (FIFO); QueueFull, GateTimeout or ClientGone."""
        return Admission(self.gates.admit(instance_id, self.timeout, gone), self._done, arrived)

    def open(self, admission: Admission | None, instance_id: str, live: dict | None, method: str,
             path: str, headers: dict[str, str], raw: bytes | None, body: object = None) -> Response:
        """Wake the admitted member if it sleeps, apply its sampling overrides to a parsed body,
        and send; the admission is released when any of it fails."""
        try:
            member = admission.ticket.member_id if admission is not None else instance_id
            target = self.instances.ensure_running(member, self.timeout)
            if body is not None:
                if live is None or member != instance_id:
                    live = self.instances.live(member) or {}
                raw = inference.apply_overrides(raw, body, live)
            if admission is not None:
                admission.waited_s = time.monotonic() - admission.arrived
            headers["Authorization"] = f"Bearer {target.api_key}"
            return self.pool.open(method, target.host, target.port, path, headers, raw)
        except BaseException:
            if admission is not None:
                admission.release()
            raise
