"""Instances as defined: new records, execution checks, and changed settings.

An instance can be defined stopped. With `on_demand_start` it is *parked*: llama-server is
not running but the public port is served and the record is `sleeping`, so the first
request wakes it through the scheduler exactly like an idle-slept instance (one launch,
the model cap applies). Stopping or evicting an on-demand instance parks it again.
"""
from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llamaman.config import Config
from llamaman.errors import Conflict, Invalid
from llamaman.instances import records as rec
from llamaman.instances.attempts import LaunchAttempts, configure_gate
from llamaman.instances.claims import PortClaims
from llamaman.instances.execution import EXECUTION_DEFAULTS
from llamaman.instances.logs import InstanceLogs
from llamaman.instances.registry import InstanceRegistry, Record
from llamaman.validation import require_object

RELAUNCH_FIELDS = ("model_path", "settings", *EXECUTION_DEFAULTS)  # changing these needs a relaunch


class Definitions:
    """Validates and stores instance definitions; relaunches a running one when they change."""

    def __init__(self, config: Config, registry: InstanceRegistry, logs: InstanceLogs,
                 attempts: LaunchAttempts, claims: PortClaims) -> None:
        self.config = config
        self.registry = registry
        self.logs = logs
        self.attempts = attempts
        self.claims = claims

    @contextmanager
    def new_record(self, body: Any, launched_by: str) -> Iterator[Record]:
        """A new, validated record whose ports stay reserved until the caller has stored it."""
        request = rec.parse_launch(body, self.config.models_dir)
        self.check_execution(request.execution)
        with self.claims.fresh(request.port) as (port, internal):
            yield rec.new_record(request, node=self.config.node_name, port=port, internal_port=internal,
                                 api_key=secrets.token_urlsafe(32), launched_by=launched_by)

    def define(self, body: Any, launched_by: str) -> str:
        """Create a stopped instance whose name is unique on this node (parked when on-demand); its id."""
        with self.new_record(body, launched_by) as record:
            record.update(status=rec.STOPPED, stopped_at=time.time())
            self.registry.insert_named(record)
        self.logs.event(record["id"], "defined" + (" (starts on the first request)"
                                                   if record["on_demand_start"] else ""))
        if record["on_demand_start"]:
            with self.registry.op_lock(record["id"]):
                self.attempts.park(record["id"])
        return record["id"]

    def check_execution(self, execution: dict[str, Any]) -> None:
        """Invalid unless the runtime asked for is available (and a native override runs)."""
        runtime = self.attempts.runtime
        kind = execution.get("runtime_kind")
        check = getattr(runtime, "check", None)
        if check is not None:
            check(kind)
        override = execution.get("command_override")
        native = (kind or runtime.kind) == "process"
        if override and native and not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise Invalid(f"command_override {override} is not an executable file on this node",
                          field="command_override")

    def reconfigure(self, instance_id: str, body: Any) -> tuple[dict[str, Any], bool]:
        """Apply changed settings; a running instance relaunches on its port when they need it.

        Returns {field: {"from", "to"}} for what changed, and whether it restarted.
        """
        body = require_object(body)
        attempt = None
        with self.registry.op_lock(instance_id):
            record = self.registry.snapshot(instance_id)
            merged = {**rec.export_config(record), **body, "name": record["name"]}
            if merged.get("port") != record["port"]:
                raise Invalid("'port' cannot change: the instance keeps its port", field="port")
            request = rec.parse_launch(merged, self.config.models_dir)
            self.check_execution(request.execution)
            fresh = _fields(request)
            changes = {k: {"from": record.get(k), "to": v} for k, v in fresh.items()
                       if record.get(k) != v and k not in ("real_model_path", "model_name")}
            self.registry.update(instance_id, fresh)
            status = record["status"]
            if status in rec.ACTIVE:
                configure_gate(self.attempts.gates, {**record, **fresh})
            if any(k in RELAUNCH_FIELDS for k in changes) and status in (rec.STARTING, rec.HEALTHY):
                self.attempts.halt(record, rec.STOPPED, error=None)
                self.logs.event(instance_id, "restarting with new settings: " + ", ".join(sorted(changes)))
                attempt = self.attempts.prepare_relaunch(instance_id)
            elif fresh["on_demand_start"] and status in (rec.STOPPED, rec.FAILED):
                self.attempts.park(instance_id)
        if attempt is not None:
            self.attempts.start(instance_id, attempt)
        return changes, attempt is not None

    def unpark(self, instance_id: str) -> None:
        """Stop a parked on-demand instance before it is removed; Conflict when it runs."""
        with self.registry.op_lock(instance_id):
            record = self.registry.snapshot(instance_id)
            if record["status"] == rec.SLEEPING and record.get("on_demand_start"):
                self.attempts.halt(record, rec.STOPPED, error=None)
            elif record["status"] in rec.ACTIVE:
                raise Conflict(f"instance '{record['name']}' is {record['status']}; stop it first")


def _fields(request: rec.LaunchRequest) -> dict[str, Any]:
    """The record fields a launch request sets (all but identity, ports and state)."""
    return {
        "model_path": str(request.model_path),
        "real_model_path": str(request.real_model_path),
        "model_name": rec.model_stem(request.model_path),
        "settings": request.settings.to_body(),
        **request.options,
        **request.execution,
    }
