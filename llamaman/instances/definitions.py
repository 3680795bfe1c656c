"""Instances defined before they run (part of InstanceService, kept apart for size).

An instance can be defined stopped. With `on_demand_start` it is *parked*: llama-server is
not running but the public port is served and the record is `sleeping`, so the first
request wakes it through the scheduler exactly like an idle-slept instance (one launch,
the model cap applies). Stopping or evicting an on-demand instance parks it again.
"""
from __future__ import annotations

import os
import time
from typing import Any

from llamaman.errors import Conflict, Invalid
from llamaman.instances import records as rec
from llamaman.instances.execution import EXECUTION_DEFAULTS
from llamaman.instances.registry import Record
from llamaman.validation import require_object

RELAUNCH_FIELDS = ("model_path", "settings", *EXECUTION_DEFAULTS)  # changing these needs a relaunch
RECONFIGURE_FIELDS = ("model_path", "real_model_path", "model_name", "settings",
                      *rec.LIVE_DEFAULTS, *rec.RESTART_DEFAULTS, *EXECUTION_DEFAULTS)


class Definitions:
    """Mixin of InstanceService: uses its registry, ports, gates, runtime and logs."""

    def define(self, body: Any, launched_by: str = "admin") -> Record:
        """Create a stopped instance whose name is unique on this node; parked when on-demand."""
        with self.claimed_record(body, launched_by) as record:
            record.update(status=rec.STOPPED, stopped_at=time.time())
            self.registry.insert_named(record)
        self.logs.event(record["id"], "defined" + (" (starts on the first request)"
                                                   if record["on_demand_start"] else ""))
        if record["on_demand_start"]:
            with self.registry.op_lock(record["id"]):
                self.park(record["id"])
        return self.get(record["id"])

    def check_execution(self, execution: dict[str, Any]) -> None:
        """Invalid unless the runtime asked for is available (and a native override runs)."""
        kind = execution.get("runtime_kind")
        check = getattr(self.runtime, "check", None)
        if check is not None:
            check(kind)
        override = execution.get("command_override")
        native = (kind or self.runtime.kind) == "process"
        if override and native and not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise Invalid(f"command_override {override} is not an executable file on this node",
                          field="command_override")

    def park(self, instance_id: str) -> None:
        """Serve the public port of a stopped on-demand instance, asleep (caller holds its op lock)."""
        self.reclaim(instance_id, {"status": rec.SLEEPING, "runtime": None, "error": None,
                                   "slept_at": time.time()})

    def halt_stopped(self, record: Record) -> None:
        """Stop an instance (caller holds its op lock); an on-demand one is parked again."""
        self._halt(record, rec.STOPPED, error=None)
        if record.get("on_demand_start"):
            self.park(record["id"])

    def relaunch(self, instance_id: str) -> None:
        """Start a stopped or failed instance with its stored configuration."""
        with self.registry.op_lock(instance_id):
            record = self.registry.snapshot(instance_id)
            if record["status"] in rec.ACTIVE:
                return
            attempt = self.prepare_relaunch(instance_id)
        self.start_attempt(instance_id, attempt)

    def reconfigure(self, instance_id: str, body: Any) -> tuple[Record, dict[str, Any], bool]:
        """Apply changed settings; a running instance relaunches on its port when they need it.

        Returns the instance, {field: {"from", "to"}} for what changed, and whether it restarted.
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
                self.configure_gate({**record, **fresh})
            if any(k in RELAUNCH_FIELDS for k in changes) and status in (rec.STARTING, rec.HEALTHY):
                self._halt(record, rec.STOPPED, error=None)
                self.logs.event(instance_id, "restarting with new settings: " + ", ".join(sorted(changes)))
                attempt = self.prepare_relaunch(instance_id)
            elif fresh["on_demand_start"] and status in (rec.STOPPED, rec.FAILED):
                self.park(instance_id)
        if attempt is not None:
            self.start_attempt(instance_id, attempt)
        return self.get(instance_id), changes, attempt is not None

    def remove_named(self, instance_id: str) -> None:
        """Forget an instance that runs nothing (a parked on-demand one counts as stopped)."""
        with self.registry.op_lock(instance_id):
            record = self.registry.snapshot(instance_id)
            if record["status"] == rec.SLEEPING and record.get("on_demand_start"):
                self._halt(record, rec.STOPPED, error=None)
            elif record["status"] in rec.ACTIVE:
                raise Conflict(f"instance '{record['name']}' is {record['status']}; stop it first")
        self.remove(instance_id)


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
