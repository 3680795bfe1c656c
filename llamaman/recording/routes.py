"""Request-log REST routes (/api/request-log/*) and the Prometheus /metrics endpoint."""
from __future__ import annotations

import math
import re
import time

from flask import Blueprint, Response, jsonify, request

from llamaman.errors import Invalid, NotFound
from llamaman.recording import stats
from llamaman.recording.metrics import CONTENT_TYPE, RuntimeCollector, render
from llamaman.webio import int_arg, services

bp = Blueprint("request_log", __name__)

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_WINDOW_HOURS = 24 * 365 * 100
DEFAULT_BUCKETS = 48
MAX_BUCKETS = 500
_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
_INST_ID = re.compile(r"[A-Za-z0-9_.-]{1,191}")


@bp.get("/api/request-log/conversations")
def list_conversations():
    limit = int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT, blank_is_default=True)
    records = services().storage.request_log.query(since=_since(_window_arg()))
    return jsonify(stats.conversations(records, limit))


@bp.get("/api/request-log/conversations/<conversation_id>")
def get_conversation(conversation_id: str):
    if not _ID.fullmatch(conversation_id):
        raise Invalid("conversation id must be 1 to 100 letters, digits, '-' or '_'")
    records = services().storage.request_log.query(conversation_id=conversation_id)
    if not records:
        raise NotFound(f"conversation '{conversation_id}' not found")
    return jsonify({"conversation_id": conversation_id, "turns": [stats.turn_view(r) for r in records]})


@bp.get("/api/request-log/stats")
def request_log_stats():
    inst_id, hours = _inst_arg(), _window_arg()
    svc = services()
    body = stats.summarize(svc.storage.request_log.query(since=_since(hours), inst_id=inst_id))
    mode = svc.recorder.mode()
    return jsonify({**body, "inst_id": inst_id, "window_hours": hours,
                    "recording": mode != "off", "recording_mode": mode})


@bp.get("/api/request-log/series")
def request_log_series():
    """Tokens/s and TTFT per time bucket over the window (all time: from the first turn)."""
    inst_id, hours = _inst_arg(), _window_arg()
    buckets = int_arg("buckets", DEFAULT_BUCKETS, 1, MAX_BUCKETS, blank_is_default=True)
    now = time.time()
    records = services().storage.request_log.query(since=_since(hours), inst_id=inst_id)
    start = now - hours * 3600 if hours else min((r["ts"] for r in records), default=now - 3600)
    body = stats.series(records, start, now, buckets)
    return jsonify({**body, "inst_id": inst_id, "window_hours": hours})


@bp.get("/metrics")
def metrics():
    svc = services()
    runtime = RuntimeCollector(svc.instances.list, svc.scheduler)
    return Response(render(svc.recorder.metrics.registry, runtime), content_type=CONTENT_TYPE)


def _since(hours: float | None) -> float | None:
    return time.time() - hours * 3600 if hours else None


def _window_arg() -> float | None:
    """The window_hours query (absent, empty or 0: all time, None)."""
    raw = request.args.get("window_hours")
    if raw is None or raw == "":
        return None
    try:
        hours = float(raw)
    except ValueError:
        hours = math.nan
    if not (math.isfinite(hours) and 0 <= hours <= MAX_WINDOW_HOURS):
        raise Invalid(f"'window_hours' must be a number between 0 and {MAX_WINDOW_HOURS}")
    return hours or None


def _inst_arg() -> str | None:
    raw = request.args.get("inst_id")
    if raw is None or raw == "":
        return None
    if not _INST_ID.fullmatch(raw):
        raise Invalid("'inst_id' must be an instance id")
    return raw
