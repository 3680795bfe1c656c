"""Request recording through the real app, on JSON storage and on real MariaDB: the recorded
rows, the /api/request-log routes against a hand computation, recording modes, retention, and
the Prometheus /metrics endpoint with its auth."""
from __future__ import annotations

import time

import pytest

from tests.appkit import create_key, make_app, setup_admin
from tests.dbkit import reset_database

NOW = time.time()
SYSTEM = {"role": "system", "content": "You are terse."}


def chat(*users: str) -> dict:
    """A chat request whose messages alternate the given user turns with assistant replies."""
    messages = [SYSTEM]
    for i, text in enumerate(users):
        if i:
            messages.append({"role": "assistant", "content": f"reply {i}"})
        messages.append({"role": "user", "content": text})
    return {"model": "alpha", "messages": messages}


def turn(request: dict, **over) -> dict:
    base = {"endpoint": "/api/chat", "model": "alpha", "inst_id": "inst0001", "status": 200,
            "streamed": True, "started_at": NOW - 60, "duration_s": 2.0, "ttft_s": 0.25,
            "queue_wait_s": 0.0, "prompt_tokens": 12, "completion_tokens": 40, "gen_tps": 50.0,
            "request": request, "response": "ok", "error": None}
    return {**base, **over}


# Conversation A: two turns on inst0001; conversation B: one failed turn on inst0002, and one
# turn of A's instance that is 3 days old (outside a 24 h window).
TURNS = [
    turn(chat("Hi"), started_at=NOW - 300, prompt_tokens=10, completion_tokens=30, gen_tps=30.0,
         ttft_s=0.2, duration_s=1.2),
    turn(chat("Hi", "More"), started_at=NOW - 200, prompt_tokens=20, completion_tokens=50,
         gen_tps=50.0, ttft_s=0.4, duration_s=1.8, streamed=False),
    turn(chat("Other"), started_at=NOW - 100, inst_id="inst0002", status=500, error="boom",
         prompt_tokens=None, completion_tokens=None, gen_tps=None, ttft_s=None, duration_s=0.3),
    turn(chat("Old"), started_at=NOW - 3 * 86400, prompt_tokens=5, completion_tokens=5, gen_tps=10.0,
         ttft_s=1.0, duration_s=3.0),
]


@pytest.fixture(params=["json", "mariadb"])
def app(request, tmp_path):
    env = {}
    if request.param == "mariadb":
        url = request.getfixturevalue("database_url")
        reset_database(url)
        env["DATABASE_URL"] = url
    app = make_app(tmp_path, **env)
    yield app
    app.extensions["llamaman"].stop()


@pytest.fixture
def admin(app):
    """A logged-in client and its CSRF header."""
    client = app.test_client()
    token = setup_admin(client)
    return client, {"X-CSRF-Token": token}


def save_settings(admin, **values) -> None:
    client, csrf = admin
    response = client.post("/api/settings", json=values, headers=csrf)
    assert response.status_code == 200, response.get_data(as_text=True)


def record(app, *turns: dict) -> None:
    recorder = app.extensions["llamaman"].recorder
    for t in turns:
        recorder.submit(t)
    assert recorder.flush()


def test_per_conversation_rollups_match_a_hand_computation(app, admin):
    client, _ = admin
    save_settings(admin, request_recording_mode="per_conversation")
    record(app, *TURNS)
    listed = client.get("/api/request-log/conversations").get_json()
    assert [c["turn_count"] for c in listed] == [1, 2, 1]  # newest activity first
    other, first, old = listed
    assert first["title"] == "Hi" and first["total_tokens"] == 110 and first["error_count"] == 0
    assert other["error_count"] == 1 and other["inst_id"] == "inst0002" and old["title"] == "Old"
    in_window = client.get("/api/request-log/conversations?window_hours=24&limit=1").get_json()
    assert [c["conversation_id"] for c in in_window] == [other["conversation_id"]]

    detail = client.get(f"/api/request-log/conversations/{first['conversation_id']}").get_json()
    turns = detail["turns"]
    assert [t["prompt_tokens"] for t in turns] == [10, 20]  # oldest first
    assert turns[1]["tokens_per_sec"] == 50.0 and turns[1]["ttft_ms"] == 400.0
    assert turns[1]["duration_ms"] == 1800.0 and turns[1]["streamed"] is False
    assert '"More"' in turns[1]["request_body"] and turns[0]["response_body"] == "ok"


def test_stats_match_a_hand_computation(app, admin):
    client, _ = admin
    save_settings(admin, request_recording_mode="per_conversation")
    record(app, *TURNS)
    everything = client.get("/api/request-log/stats").get_json()
    assert everything["turn_count"] == 4 and everything["error_count"] == 1
    assert everything["streamed_count"] == 3
    assert (everything["prompt_tokens"], everything["completion_tokens"]) == (35, 85)
    assert everything["total_tokens"] == 120
    assert everything["avg_tokens_per_sec"] == pytest.approx((30 + 50 + 10) / 3, abs=1e-3)
    assert everything["max_tokens_per_sec"] == 50.0
    assert everything["avg_ttft_ms"] == pytest.approx((200 + 400 + 1000) / 3, abs=1e-3)
    assert everything["avg_duration_ms"] == pytest.approx((1200 + 1800 + 300 + 3000) / 4, abs=1e-3)
    assert everything["active_span_s"] == pytest.approx(3 * 86400 - 100, abs=1e-2)
    assert everything["recording"] is True and everything["recording_mode"] == "per_conversation"

    day = client.get("/api/request-log/stats?window_hours=24&inst_id=inst0001").get_json()
    assert day["turn_count"] == 2 and day["error_count"] == 0 and day["total_tokens"] == 110
    assert day["avg_tokens_per_sec"] == 40.0 and day["avg_ttft_ms"] == pytest.approx(300.0)
    assert day["active_span_s"] == pytest.approx(100.0, abs=1e-2)
    assert day["inst_id"] == "inst0001" and day["window_hours"] == 24


def test_series_buckets_match_a_hand_computation(app, admin):
    client, _ = admin
    save_settings(admin, request_recording_mode="per_conversation")
    record(app, *TURNS)
    day = client.get("/api/request-log/series?window_hours=24&buckets=24").get_json()
    assert day["bucket_s"] == 3600.0 and day["window_hours"] == 24
    [point] = day["points"]  # the three recent turns share the last hour; the old one is outside
    assert point["turn_count"] == 3 and point["error_count"] == 1 and point["total_tokens"] == 110
    assert point["avg_tokens_per_sec"] == 40.0 and point["max_tokens_per_sec"] == 50.0
    assert point["avg_ttft_ms"] == pytest.approx(300.0)

    everything = client.get("/api/request-log/series?buckets=2").get_json()
    first, last = everything["points"]
    assert first["turn_count"] == 1 and first["avg_tokens_per_sec"] == 10.0
    assert first["at"] == everything["start"] and last["turn_count"] == 3
    one = client.get("/api/request-log/series?inst_id=inst0002&window_hours=24").get_json()
    assert [p["turn_count"] for p in one["points"]] == [1] and one["points"][0]["avg_tokens_per_sec"] is None


def test_per_request_mode_keeps_each_turn_apart(app, admin):
    client, _ = admin
    save_settings(admin, request_recording_mode="per_request")
    record(app, TURNS[0], TURNS[1])
    listed = client.get("/api/request-log/conversations").get_json()
    assert [c["turn_count"] for c in listed] == [1, 1]
    assert all(c["mode"] == "per_request" for c in listed)


def test_mode_off_records_nothing(app, admin):
    client, _ = admin
    record(app, *TURNS)
    assert client.get("/api/request-log/conversations").get_json() == []
    stats = client.get("/api/request-log/stats").get_json()
    assert stats["turn_count"] == 0 and stats["recording"] is False and stats["recording_mode"] == "off"


def test_retention_prunes_old_records(app, admin):
    client, _ = admin
    save_settings(admin, request_recording_mode="per_request")
    record(app, *TURNS)
    recorder = app.extensions["llamaman"].recorder
    assert recorder.prune_expired() == 0  # retention 0 keeps everything
    save_settings(admin, request_recording_retention_days=2)
    assert recorder.prune_expired() == 1
    assert client.get("/api/request-log/stats").get_json()["turn_count"] == 3


@pytest.mark.parametrize("query", [
    "conversations?limit=0", "conversations?limit=501", "conversations?limit=ten",
    "conversations?window_hours=-1", "stats?window_hours=abc", "stats?window_hours=nan",
    "stats?window_hours=inf", "stats?inst_id=../x", "conversations/bad.id",
    "series?buckets=0", "series?buckets=501", "series?window_hours=-2", "series?inst_id=a/b",
])
def test_bad_query_values_are_400(admin, query):
    client, _ = admin
    response = client.get(f"/api/request-log/{query}")
    assert response.status_code == 400 and "error" in response.get_json()


def test_unknown_conversation_is_404(admin):
    client, _ = admin
    assert client.get("/api/request-log/conversations/" + "a" * 32).status_code == 404


def test_request_log_needs_credentials(app, admin):
    assert app.test_client().get("/api/request-log/stats").status_code == 401
    assert app.test_client().get("/api/request-log/series").status_code == 401


def test_metrics_exposes_turns_and_runtime_gauges(app, admin):
    client, _ = admin
    record(app, TURNS[0], TURNS[2])  # recording is off: metrics still count
    text = client.get("/metrics").get_data(as_text=True)
    assert 'llamaman_requests_total{endpoint="/api/chat",model="alpha",status="200"} 1.0' in text
    assert 'llamaman_requests_total{endpoint="/api/chat",model="alpha",status="500"} 1.0' in text
    assert 'llamaman_request_ttft_seconds_sum{model="alpha"} 0.2' in text
    assert 'llamaman_request_duration_seconds_count{model="alpha"} 2.0' in text
    assert 'llamaman_generation_tokens_per_second_bucket{le="35.0",model="alpha"} 1.0' in text
    assert "# TYPE llamaman_scheduler_launches_total counter" in text  # per-model series come with traffic
    assert "# TYPE llamaman_scheduler_evictions_total counter" in text
    assert "llamaman_models_loaded 0.0" in text


def test_metrics_auth_and_the_open_setting(app, admin):
    client, _ = admin
    anonymous = app.test_client()
    assert anonymous.get("/metrics").status_code == 401
    admin_key = create_key(client, admin[1]["X-CSRF-Token"], scope="admin", name="prom")["key"]
    inference_key = create_key(client, admin[1]["X-CSRF-Token"], name="chat")["key"]
    response = anonymous.get("/metrics", headers={"Authorization": f"Bearer {admin_key}"})
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert anonymous.get("/metrics", headers={"Authorization": f"Bearer {inference_key}"}).status_code == 403
    save_settings(admin, metrics_open=True)
    assert anonymous.get("/metrics").status_code == 200
    assert anonymous.get("/api/request-log/stats").status_code == 401
