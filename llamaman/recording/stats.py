"""Roll-ups over stored request records: summary stats, conversation list, turn views.

Conventions (the hand computation tests check): a turn is an error when its status is >= 400
or it carries an error message; averages are plain means over the turns that have the value
(gen tokens/s and TTFT are absent on failed turns); the active span runs from the first turn's
start to the last turn's start. Times in the API are milliseconds, instants are ISO-8601 UTC.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

Record = dict[str, Any]
DIGITS = 3


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO-8601 UTC with a Z (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_error(record: Record) -> bool:
    """A turn failed when llama-server or the proxy answered >= 400 or reported an error."""
    status = record.get("status")
    return bool(record.get("error")) or (_number(status) and status >= 400)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _values(records: Iterable[Record], key: str) -> list[float]:
    return [float(r[key]) for r in records if _number(r.get(key))]


def _mean(values: list[float], scale: float = 1.0) -> float | None:
    return round(sum(values) * scale / len(values), DIGITS) if values else None


def _tokens(records: Iterable[Record], key: str) -> int:
    return int(sum(_values(records, key)))


def summarize(records: list[Record]) -> dict[str, Any]:
    """Aggregate metrics over the records (the /stats body without the recording mode)."""
    tps = _values(records, "gen_tps")
    stamps = _values(records, "ts")
    prompt, completion = _tokens(records, "prompt_tokens"), _tokens(records, "completion_tokens")
    first, last = (min(stamps), max(stamps)) if stamps else (None, None)
    return {
        "turn_count": len(records),
        "error_count": sum(1 for r in records if is_error(r)),
        "streamed_count": sum(1 for r in records if r.get("streamed")),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "avg_tokens_per_sec": _mean(tps),
        "max_tokens_per_sec": round(max(tps), DIGITS) if tps else None,
        "avg_ttft_ms": _mean(_values(records, "ttft_s"), 1000.0),
        "avg_duration_ms": _mean(_values(records, "duration_s"), 1000.0),
        "first_seen_at": iso(first),
        "last_seen_at": iso(last),
        "active_span_s": round(last - first, DIGITS) if stamps else None,
    }


def conversations(records: list[Record], limit: int) -> list[dict[str, Any]]:
    """One summary per conversation, most recently active first (records oldest first)."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record["conversation_id"], []).append(record)
    ordered = sorted(groups.values(), key=lambda turns: turns[-1]["ts"], reverse=True)
    return [_conversation(turns) for turns in ordered[:limit]]


def _conversation(turns: list[Record]) -> dict[str, Any]:
    first, last = turns[0], turns[-1]
    prompt, completion = _tokens(turns, "prompt_tokens"), _tokens(turns, "completion_tokens")
    return {
        "conversation_id": first["conversation_id"],
        "title": first.get("title") or "",
        "model": last.get("model"),
        "inst_id": last.get("inst_id"),
        "mode": last.get("mode"),
        "turn_count": len(turns),
        "first_seen_at": iso(first["ts"]),
        "last_seen_at": iso(last["ts"]),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "error_count": sum(1 for r in turns if is_error(r)),
    }


def _ms(value: Any) -> float | None:
    return round(value * 1000.0, DIGITS) if _number(value) else None


def turn_view(record: Record) -> dict[str, Any]:
    """One turn as the API shows it (bodies as text, durations in ms)."""
    request = record.get("request")
    return {
        "id": record["id"],
        "conversation_id": record["conversation_id"],
        "mode": record.get("mode"),
        "created_at": iso(record["ts"]),
        "ts": record["ts"],
        "endpoint": record.get("endpoint"),
        "model": record.get("model"),
        "inst_id": record.get("inst_id"),
        "status_code": record.get("status"),
        "streamed": bool(record.get("streamed")),
        "duration_ms": _ms(record.get("duration_s")),
        "ttft_ms": _ms(record.get("ttft_s")),
        "queue_wait_ms": _ms(record.get("queue_wait_s")),
        "prompt_tokens": record.get("prompt_tokens"),
        "completion_tokens": record.get("completion_tokens"),
        "tokens_per_sec": record.get("gen_tps"),
        "request_body": request if isinstance(request, str) else json.dumps(request, ensure_ascii=False),
        "request_truncated": bool(record.get("request_truncated")),
        "response_body": record.get("response") or "",
        "response_truncated": bool(record.get("response_truncated")),
        "error": record.get("error"),
    }


def series(records: list[Record], start: float, end: float, buckets: int) -> dict[str, Any]:
    """Per-bucket averages of tokens/s and TTFT between start and end (epoch s), for charts.

    Only buckets that hold turns are listed; `bucket_s` is the width every bucket shares.
    """
    width = max((end - start) / buckets, 1.0)
    groups: dict[int, list[Record]] = {}
    for record in records:
        ts = record.get("ts")
        if _number(ts) and start <= ts <= end:
            groups.setdefault(min(int((ts - start) // width), buckets - 1), []).append(record)
    return {"start": iso(start), "end": iso(end), "bucket_s": round(width, DIGITS),
            "points": [_point(start + index * width, groups[index]) for index in sorted(groups)]}


def _point(at: float, turns: list[Record]) -> dict[str, Any]:
    tps = _values(turns, "gen_tps")
    return {
        "at": iso(at),
        "ts": round(at, DIGITS),
        "turn_count": len(turns),
        "error_count": sum(1 for r in turns if is_error(r)),
        "total_tokens": _tokens(turns, "prompt_tokens") + _tokens(turns, "completion_tokens"),
        "avg_tokens_per_sec": _mean(tps),
        "max_tokens_per_sec": round(max(tps), DIGITS) if tps else None,
        "avg_ttft_ms": _mean(_values(turns, "ttft_s"), 1000.0),
    }
