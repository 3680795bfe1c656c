"""llamactl's instance API by name (seed 000), as thin views over the instance service.

Instance ids stay the key; the name is an alias, unique on this node. `/proxy/` runs the
instance's own sidecar app on the request, so auth, the model check, the gate and the wake
(on-demand start included) are exactly those of its public port.
"""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from werkzeug.test import run_wsgi_app

from llamaman.compat import llamactl_format as fmt
from llamaman.errors import Conflict, Invalid, NotFound
from llamaman.proxy.contract import PREAUTHORISED
from llamaman.webio import json_body, services

bp = Blueprint("llamactl_instances", __name__)

PREFIX = "/api/v1/instances"
PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@bp.get(PREFIX)
def list_instances():
    return jsonify([_view(i) for i in services().instances.list()])


@bp.get(f"{PREFIX}/<name>")
def get_instance(name: str):
    return jsonify(_view(services().instances.get(instance_id(name))))


@bp.post(f"{PREFIX}/<name>")
def create_instance(name: str):
    fmt.check_name(name)
    body = fmt.launch_body(json_body(), _node(), create=True)
    return jsonify(_view(services().instances.define({**body, "name": name}))), 201


@bp.put(f"{PREFIX}/<name>")
def update_instance(name: str):
    """Update & restart: a running instance relaunches on its port when a change needs it."""
    body = fmt.launch_body(json_body(), _node(), create=False)
    instance, changes, restarted = services().instances.reconfigure(instance_id(name), body)
    return jsonify({**_view(instance), "changes": fmt.renamed_changes(changes), "restarted": restarted})


@bp.delete(f"{PREFIX}/<name>")
def delete_instance(name: str):
    services().instances.remove_named(instance_id(name))
    return Response(status=204)


@bp.post(f"{PREFIX}/<name>/start")
def start_instance(name: str):
    found = instance_id(name)
    services().scheduler.admin_start(found, confirmed_evict())
    return jsonify(_view(services().instances.get(found)))


@bp.post(f"{PREFIX}/<name>/stop")
def stop_instance(name: str):
    return jsonify(_view(services().instances.stop(instance_id(name))))


@bp.post(f"{PREFIX}/<name>/restart")
def restart_instance(name: str):
    return jsonify(_view(restart_or_start(instance_id(name))))


@bp.get(f"{PREFIX}/<name>/logs")
def instance_logs(name: str):
    lines = request.args.get("lines", "100")
    if not lines.isdigit() or not 1 <= int(lines) <= 10_000:
        raise Invalid("'lines' must be an integer between 1 and 10000")
    text = "\n".join(services().instances.logs.tail(instance_id(name), int(lines)))
    return Response(text + "\n" if text else "", mimetype="text/plain")


@bp.route(f"{PREFIX}/<name>/proxy", defaults={"rest": ""}, methods=PROXY_METHODS)
@bp.route(f"{PREFIX}/<name>/proxy/", defaults={"rest": ""}, methods=PROXY_METHODS)
@bp.route(f"{PREFIX}/<name>/proxy/<path:rest>", methods=PROXY_METHODS)
def proxy(name: str, rest: str):
    """The instance's llama-server at /{rest}, through its sidecar pipeline."""
    found = instance_id(name)
    environ = dict(request.environ)
    environ.update({"PATH_INFO": "/" + rest, "SCRIPT_NAME": "", PREAUTHORISED: True})
    app = services().ports.make_app(found)
    body, status, headers = run_wsgi_app(app, environ)
    return Response(body, status=status, headers=headers, direct_passthrough=True)


def instance_id(name: str) -> str:
    """The id of the instance with this name (an id is accepted too)."""
    registry = services().instances.registry
    ids = registry.ids_named(name)
    if len(ids) > 1:
        raise Conflict(f"{len(ids)} instances are named '{name}': address them by id", ids=ids)
    if ids:
        return ids[0]
    if registry.find(name) is not None:
        return name
    raise NotFound(f"instance '{name}' not found")


def restart_or_start(found: str) -> dict:
    """Relaunch a running instance; start a stopped, failed or parked one under the model cap."""
    svc = services()
    if svc.instances.get(found)["status"] in ("starting", "healthy"):
        svc.instances.restart(found)
    else:
        svc.scheduler.admin_start(found, confirmed_evict())
    return svc.instances.get(found)


def confirmed_evict() -> bool:
    """Whether the request confirms evicting over the model cap (`?confirm_evict=true`)."""
    return request.args.get("confirm_evict", "").lower() in ("1", "true", "yes")


def _view(instance: dict) -> dict:
    return fmt.instance_view(instance, _node())


def _node() -> str:
    return services().config.node_name
