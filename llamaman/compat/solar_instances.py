"""Solar Host's instance REST API (seed 003) at its own paths, over the instance service.

`/instances…` are management routes (admin key as Bearer or `X-API-Key`, or a session).
Create defines a stopped instance, as Solar Host does; `{id}` is the instance id (a unique
alias works too). The live log socket at `/instances/{id}/logs` is in `compat/solar.py`.
"""
from __future__ import annotations

from flask import Blueprint, jsonify

from llamaman.compat import solar_format as fmt
from llamaman.compat.llamactl_instances import (
    confirmed_evict,
    instance_id,
    restart_or_start,
)
from llamaman.errors import Invalid
from llamaman.webio import json_body, services

bp = Blueprint("solar_instances", __name__)

PREFIX = "/instances"
ACTIVE = ("starting", "healthy")


@bp.get(PREFIX)
def list_instances():
    return jsonify([fmt.instance_view(i) for i in services().instances.list()])


@bp.post(PREFIX)
def create_instance():
    instance = services().instances.define(fmt.launch_body(json_body()))
    return _answer(instance, "created", 201)


@bp.get(f"{PREFIX}/<ref>")
def get_instance(ref: str):
    return jsonify(fmt.instance_view(services().instances.get(instance_id(ref))))


@bp.put(f"{PREFIX}/<ref>")
def update_instance(ref: str):
    """Replace the config; a running instance restarts with it on its port."""
    body = fmt.launch_body(json_body())
    found = instance_id(ref)
    if body["name"] != services().instances.get(found)["name"]:
        raise Invalid("config.alias cannot change: it is the instance's name (create a new instance)",
                      field="config.alias")
    instance, changes, restarted = services().instances.reconfigure(found, body)
    return jsonify({"instance": fmt.instance_view(instance), "changes": changes, "restarted": restarted,
                    "message": f"Instance {instance['id']} updated successfully"})


@bp.delete(f"{PREFIX}/<ref>")
def delete_instance(ref: str):
    """Remove the instance, stopping it first when it runs (Solar Host removes running ones too)."""
    found = instance_id(ref)
    instances = services().instances
    if instances.get(found)["status"] in ACTIVE:
        instances.stop(found)
    instances.remove_named(found)
    return jsonify({"message": f"Instance {found} deleted successfully"})


@bp.post(f"{PREFIX}/<ref>/start")
def start_instance(ref: str):
    found = instance_id(ref)
    services().scheduler.admin_start(found, confirmed_evict())
    return _answer(services().instances.get(found), "started")


@bp.post(f"{PREFIX}/<ref>/stop")
def stop_instance(ref: str):
    return _answer(services().instances.stop(instance_id(ref)), "stopped")


@bp.post(f"{PREFIX}/<ref>/restart")
def restart_instance(ref: str):
    return _answer(restart_or_start(instance_id(ref)), "restarted")


def _answer(instance: dict, done: str, status: int = 200):
    message = f"Instance {instance['id']} {done} successfully"
    return jsonify({"instance": fmt.instance_view(instance), "message": message}), status
