"""REST routes of the README "Instances" table, plus stats, export/import and parse-command."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, stream_with_context

from llamaman.instances.records import export_config
from llamaman.runtime.args import parse_command
from llamaman.validation import get_bool, get_str
from llamaman.webio import conditional, int_arg, json_body, services

bp = Blueprint("instances", __name__)


def _instances():
    return services().instances


@bp.get("/api/instances")
def list_instances():
    return conditional(jsonify(_instances().list()))


@bp.post("/api/instances")
def launch_instance():
    body = json_body()
    confirm = get_bool(body, "confirm_evict", default=False)
    body.pop("confirm_evict", None)
    full = services().presets.launch_body(body.get("model_path"), body)  # the preset under the body
    return jsonify(services().scheduler.admin_launch(full, confirm)), 201


@bp.get("/api/instances/<instance_id>")
def get_instance(instance_id: str):
    return jsonify(_instances().get(instance_id))


@bp.patch("/api/instances/<instance_id>")
def update_instance(instance_id: str):
    return jsonify(_instances().update_options(instance_id, json_body()))


@bp.delete("/api/instances/<instance_id>")
def stop_instance(instance_id: str):
    return jsonify(_instances().stop(instance_id))


@bp.post("/api/instances/<instance_id>/restart")
def restart_instance(instance_id: str):
    return jsonify(_instances().restart(instance_id)), 201  # 201 as LlamaMan 1.2.1 answers


@bp.delete("/api/instances/<instance_id>/remove")
def remove_instance(instance_id: str):
    _instances().remove(instance_id)
    return jsonify({"ok": True, "status": "removed"})


@bp.get("/api/instances/<instance_id>/stats")
def instance_stats(instance_id: str):
    return jsonify(_instances().stats(instance_id))


@bp.get("/api/instances/<instance_id>/export")
def export_instance(instance_id: str):
    return jsonify(export_config(_instances().registry.snapshot(instance_id)))


@bp.post("/api/instances/import")
def import_instance():
    body = json_body()
    body.pop("port", None)  # the exported port may be taken here: pick a free one
    confirm = get_bool(body, "confirm_evict", default=False)
    body.pop("confirm_evict", None)
    return jsonify(services().scheduler.admin_launch(body, confirm)), 201  # the model cap applies


@bp.post("/api/instances/parse-command")
def parse_instance_command():
    command = get_str(json_body(), "command", required=True, allow_empty=False, max_len=32_768)
    return jsonify(parse_command(command))


@bp.get("/api/instances/<instance_id>/logs")
def instance_logs(instance_id: str):
    _instances().registry.snapshot(instance_id)  # 404 for unknown ids
    lines = int_arg("lines", 100, 1, 10_000)
    return jsonify({"id": instance_id, "lines": _instances().logs.tail(instance_id, lines)})


@bp.get("/api/instances/<instance_id>/logs/stream")
def stream_instance_logs(instance_id: str):
    service = _instances()
    service.registry.snapshot(instance_id)
    last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    events = service.logs.stream(instance_id, last_id, int_arg("lines", 100, 0, 10_000),
                                 alive=lambda: not service.closing)
    return Response(stream_with_context(events), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@bp.get("/api/next-port")
def next_port():
    return jsonify({"port": _instances().next_port()})
