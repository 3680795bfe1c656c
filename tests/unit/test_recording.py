"""Request recording: conversation ids, size caps, the never-blocking queue, dropped records,
and the stats arithmetic, with in-memory fakes of our own repositories."""
from __future__ import annotations

import json
import threading
import time

import pytest

from llamaman.auth.guard import Access, classify
from llamaman.recording import records, stats
from llamaman.recording.metrics import model_label
from llamaman.recording.recorder import Recorder
from llamaman.storage._common import check_log_record, log_matches, newest


class MemoryLog:
    """In-memory RequestLogRepository; `gate` (when set) holds appends until released."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.gate: threading.Event | None = None
        self.fail = False

    def append(self, record: dict) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise OSError(28, "No space left on device")
        self.rows.append(json.loads(json.dumps(check_log_record(record))))

    def query(self, *, since=None, inst_id=None, conversation_id=None, limit=None) -> list[dict]:
        found = sorted((r for r in self.rows if log_matches(r, since, inst_id, conversation_id)),
                       key=lambda r: r["ts"])
        return newest(found, limit)

    def prune(self, older_than: float) -> int:
        keep = [r for r in self.rows if r["ts"] >= older_than]
        removed, self.rows = len(self.rows) - len(keep), keep
        return removed


def turn(**over) -> dict:
    base = {"endpoint": "/api/chat", "model": "alpha", "inst_id": "i1", "status": 200, "streamed": True,
            "started_at": 1000.0, "duration_s": 2.0, "ttft_s": 0.5, "queue_wait_s": 0.0,
            "prompt_tokens": 10, "completion_tokens": 20, "gen_tps": 40.0,
            "request": {"model": "alpha", "messages": [{"role": "system", "content": "Be brief."},
                                                       {"role": "user", "content": "Hello"}]},
            "response": "Hi!", "error": None}
    return {**base, **over}


def make_recorder(mode: str = "per_conversation", **kw) -> tuple[Recorder, MemoryLog, dict]:
    """A recorder whose mode and retention are read from the returned dict at each call."""
    options = {"mode": mode, "retention_days": 0}
    log = MemoryLog()
    recorder = Recorder(log, lambda: options["mode"], lambda: options["retention_days"], **kw)
    return recorder, log, options


@pytest.fixture
def running():
    made: list[Recorder] = []

    def start(mode: str = "per_conversation", **kw):
        recorder, log, settings = make_recorder(mode, **kw)
        recorder.start()
        made.append(recorder)
        return recorder, log, settings
    yield start
    for recorder in made:
        recorder.stop()


# --- conversation ids and caps ---------------------------------------------------------------

def test_conversation_id_is_system_plus_first_user_message():
    first = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"}]}
    later = {"messages": [*first["messages"], {"role": "assistant", "content": "A"},
                          {"role": "user", "content": "U2"}]}
    other_system = {"messages": [{"role": "system", "content": "T"}, {"role": "user", "content": "U1"}]}
    assert records.conversation_id(first) == records.conversation_id(later)
    assert records.conversation_id(first) != records.conversation_id(other_system)
    assert len(records.conversation_id(first)) == records.CONVERSATION_ID_LEN


def test_conversation_id_reads_content_parts_and_generate_prompts():
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "U1"},
                                                        {"type": "image_url", "image_url": {"url": "x"}}]}]}
    plain = {"messages": [{"role": "user", "content": "U1"}]}
    assert records.conversation_id(parts) == records.conversation_id(plain)
    generate = {"system": "S", "prompt": "P"}
    assert records.conversation_id(generate) == records.conversation_id(
        {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "P"}]})
    assert records.conversation_id({"messages": []}) is None


def test_per_request_mode_uses_the_record_id_and_per_conversation_the_hash():
    a, b = records.build_record(turn(), "per_request"), records.build_record(turn(), "per_request")
    assert a["conversation_id"] == a["id"] and a["conversation_id"] != b["conversation_id"]
    c = records.build_record(turn(), "per_conversation")
    assert c["conversation_id"] == records.conversation_id(turn()["request"]) and c["ts"] == 1000.0
    assert c["title"] == "Hello" and c["mode"] == "per_conversation"


def test_bodies_over_the_cap_are_cut_and_flagged():
    big = "é" * records.BODY_CAP_BYTES  # 2 bytes each in UTF-8
    record = records.build_record(turn(request={"messages": [{"role": "user", "content": big}]},
                                       response=big, error="x" * 10_000), "per_request")
    assert record["request_truncated"] and record["response_truncated"]
    assert isinstance(record["request"], str)
    assert len(record["request"].encode()) <= records.BODY_CAP_BYTES
    assert len(record["response"].encode()) <= records.BODY_CAP_BYTES
    assert record["response"] == "é" * (records.BODY_CAP_BYTES // 2)
    assert len(record["error"]) == records.ERROR_CAP_BYTES
    small = records.build_record(turn(), "per_request")
    assert small["request"] == turn()["request"] and not small["request_truncated"]
    assert small["response"] == "Hi!" and not small["response_truncated"]


# --- the recorder ------------------------------------------------------------------------------

def test_records_are_written_off_the_request_thread(running):
    recorder, log, _ = running()
    recorder.submit(turn())
    recorder.submit(turn(started_at=1001.0, request={"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "More"}]}))
    assert recorder.flush()
    assert len(log.rows) == 2 and log.rows[0]["conversation_id"] == log.rows[1]["conversation_id"]


def test_mode_off_stores_nothing_but_metrics_still_count(running):
    recorder, log, _ = running("off")
    recorder.submit(turn())
    assert recorder.flush() and log.rows == []
    value = recorder.metrics.registry.get_sample_value(
        "llamaman_requests_total", {"model": "alpha", "endpoint": "/api/chat", "status": "200"})
    assert value == 1.0


def test_the_mode_callable_is_read_for_every_turn(running):
    recorder, log, options = running("off")
    recorder.submit(turn())
    assert recorder.flush() and not recorder.enabled()
    options["mode"] = "per_request"
    recorder.submit(turn(started_at=1001.0))
    assert recorder.flush() and recorder.enabled()
    assert [r["ts"] for r in log.rows] == [1001.0]


def test_a_full_queue_drops_without_blocking(running):
    recorder, log, _ = running(queue_size=2)
    log.gate = threading.Event()  # the writer is stuck on a slow disk
    started = time.monotonic()
    for _ in range(50):
        recorder.submit(turn())
    assert time.monotonic() - started < 1.0
    assert recorder.drops.total >= 47
    log.gate.set()
    assert recorder.flush()
    assert 1 <= len(log.rows) <= 3
    dropped = recorder.metrics.registry.get_sample_value("llamaman_request_records_dropped_total",
                                                         {"reason": "queue full"})
    assert dropped == recorder.drops.total


def test_storage_errors_drop_the_record_and_the_writer_goes_on(running, caplog):
    recorder, log, _ = running()
    log.fail = True
    recorder.submit(turn())
    assert recorder.flush() and log.rows == []
    assert recorder.drops.total == 1 and "No space left" in caplog.text
    log.fail = False
    recorder.submit(turn())
    assert recorder.flush() and len(log.rows) == 1


def test_a_malformed_turn_is_dropped_not_raised(running):
    recorder, log, _ = running()
    recorder.submit({"model": object()})  # no started_at, odd types
    assert recorder.flush() and log.rows == [] and recorder.drops.total == 1


def test_stop_flushes_what_is_queued():
    recorder, log, _ = make_recorder()
    recorder.start()
    log.gate = threading.Event()
    for i in range(5):
        recorder.submit(turn(started_at=1000.0 + i))
    log.gate.set()
    recorder.stop()
    assert len(log.rows) == 5


def test_retention_prunes_older_records():
    recorder, log, options = make_recorder(clock=lambda: 10 * 86400.0)
    log.rows = [{"id": "a", "ts": 7 * 86400.0, "conversation_id": "a"},
                {"id": "b", "ts": 9.5 * 86400.0, "conversation_id": "b"}]
    assert recorder.prune_expired() == 0  # retention 0 keeps everything
    options["retention_days"] = 2
    assert recorder.prune_expired() == 1 and [r["id"] for r in log.rows] == ["b"]


# --- stats arithmetic --------------------------------------------------------------------------

ROWS = [
    {"id": "1", "ts": 100.0, "conversation_id": "c1", "status": 200, "streamed": True, "prompt_tokens": 10,
     "completion_tokens": 30, "gen_tps": 30.0, "ttft_s": 0.2, "duration_s": 1.2, "model": "alpha"},
    {"id": "2", "ts": 160.0, "conversation_id": "c1", "status": 200, "streamed": False, "prompt_tokens": 20,
     "completion_tokens": 50, "gen_tps": 50.0, "ttft_s": 0.4, "duration_s": 1.8, "model": "alpha"},
    {"id": "3", "ts": 400.0, "conversation_id": "c2", "status": 500, "streamed": True, "prompt_tokens": None,
     "completion_tokens": None, "gen_tps": None, "ttft_s": None, "duration_s": 0.3, "error": "boom",
     "model": "beta"},
]


def test_stats_match_a_hand_computation():
    s = stats.summarize(ROWS)
    assert s["turn_count"] == 3 and s["error_count"] == 1 and s["streamed_count"] == 2
    assert (s["prompt_tokens"], s["completion_tokens"], s["total_tokens"]) == (30, 80, 110)
    assert s["avg_tokens_per_sec"] == 40.0 and s["max_tokens_per_sec"] == 50.0
    assert s["avg_ttft_ms"] == pytest.approx(300.0) and s["avg_duration_ms"] == pytest.approx(1100.0)
    assert s["active_span_s"] == 300.0
    assert s["first_seen_at"] == "1970-01-01T00:01:40.000Z" and s["last_seen_at"] == "1970-01-01T00:06:40.000Z"


def test_stats_of_nothing_are_empty():
    s = stats.summarize([])
    assert s["turn_count"] == 0 and s["avg_tokens_per_sec"] is None and s["first_seen_at"] is None


def test_conversations_roll_up_newest_first():
    listed = stats.conversations(ROWS, limit=10)
    assert [c["conversation_id"] for c in listed] == ["c2", "c1"]
    c1 = listed[1]
    assert c1["turn_count"] == 2 and c1["total_tokens"] == 110 and c1["error_count"] == 0
    assert listed[0]["error_count"] == 1 and listed[0]["model"] == "beta"
    assert stats.conversations(ROWS, limit=1) == listed[:1]


# --- metrics labels and access -----------------------------------------------------------------

def test_model_labels_fold_client_spellings():
    assert model_label("Alpha:latest") == model_label("alpha") == "alpha"
    assert model_label("alpha:q4") == "alpha:q4" and model_label(None) == "unknown"


def test_metrics_path_opens_only_with_the_setting():
    assert classify("/metrics") is Access.MANAGEMENT
    assert classify("/metrics", metrics_open=True) is Access.OPEN
    assert classify("/api/request-log/stats", metrics_open=True) is Access.MANAGEMENT
