"""The Logging page in headless Chromium after real traffic: recording on, two chat turns through
a real llama-server (process runtime) → the conversation, its drill-down (prompts and responses
first, metrics collapsed), tiles and chart; the window selector scopes every figure; the empty
state while recording is off; a prompt with HTML rendered as text."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.browserkit import capture, signed_in
from tests.e2e.instancekit import chat, runtime_env, start_manager, stop_all
from tests.e2e.test_compat_chat import link_models

pytestmark = pytest.mark.timeout(300)
PASSWORD = "e2e-password-1"  # the one admin_session creates
XSS = "<img src=x onerror=window.__xss=1>"
SYSTEM = {"role": "system", "content": "You answer in one short sentence."}
DAY = 86400


@pytest.fixture(scope="module")
def manager(request, tmp_path_factory, model_path):
    base = tmp_path_factory.mktemp("ui-logging")
    folder = link_models(base / "models", model_path, ("alpha",))
    manager = start_manager(base / "app", runtime_env("process", request, folder, ports=36700))
    request.addfinalizer(lambda: stop_all(manager))
    return manager


@pytest.fixture
def page(browser, manager):
    with signed_in(browser, manager.app, PASSWORD) as (page, problems):
        yield page, problems


def set_mode(manager, mode: str) -> None:
    saved = manager.api.post(manager.url("/api/settings"), json={"request_recording_mode": mode})
    assert saved.status_code == 200, saved.text


def wait_turns(manager, count: int, timeout: float = 15) -> list[dict]:
    """Recorded conversations once one has `count` turns (records are written off the request thread)."""
    deadline = time.monotonic() + timeout
    listed: list = []
    while time.monotonic() < deadline:
        listed = manager.api.get(manager.url("/api/request-log/conversations")).json()
        if any(c["turn_count"] >= count for c in listed):
            return listed
        time.sleep(0.1)
    raise AssertionError(f"no conversation with {count} turns: {listed}")


def seed_old_turn(manager, days: float) -> None:
    """A turn `days` old in the JSON store: real traffic cannot be backdated, so one is written
    in the store's own line format next to the real ones."""
    folder = manager.app.data_dir / "request_log"
    [real] = [json.loads(line) for p in folder.glob("*.jsonl") for line in p.read_text().splitlines()][:1]
    record = {**real, "id": uuid.uuid4().hex, "conversation_id": "seeded" + uuid.uuid4().hex[:8],
              "ts": time.time() - days * DAY, "title": "an old question", "gen_tps": 1.0, "completion_tokens": 1000}
    (folder / f"{record['conversation_id']}.jsonl").write_text(json.dumps(record) + "\n")


def tile(page, key: str) -> str:
    return page.text_content(f".tile[data-key={key}] .tile-value")


def choose_window(page, label: str, hours: int) -> None:
    with page.expect_response(lambda r: "/api/request-log/stats" in r.url):
        page.click(f"#window-select button:has-text('{label}')")
    page.wait_for_selector(f"#logging-page[data-window='{hours}']")


def test_empty_state_while_recording_is_off(page, manager, tmp_path):
    page, problems = page
    set_mode(manager, "off")
    page.goto(manager.url("/logging"))
    page.wait_for_selector("#recording-off")
    text = page.text_content("#recording-off")
    assert "Request recording is off" in text and "request_recording_mode" in text
    assert page.get_attribute("#recording-off a", "href") == "/settings#application"
    assert tile(page, "requests") == "0"
    assert "No conversations recorded" in page.text_content("#conversations")
    capture(page, tmp_path, "logging-empty")
    problems.assert_none()


def test_recorded_conversation_drilldown_and_window_scope(page, manager, tmp_path):
    page, problems = page
    set_mode(manager, "per_conversation")
    instance = manager.wait_status(manager.launch(Path(manager.app.env["MODELS_DIR"]) / "alpha.gguf")["id"], "healthy")
    messages = [SYSTEM, {"role": "user", "content": XSS + " What colour is the sky?"}]
    first = chat(instance["port"], manager.key, stream=False, max_tokens=12, messages=messages, temperature=0)
    assert first.status_code == 200, first.text
    reply = first.json()["choices"][0]["message"]["content"]
    messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And at night?"}]
    second = chat(instance["port"], manager.key, stream=True, max_tokens=12, messages=messages, temperature=0)
    assert second.status_code == 200 and b"[DONE]" in second.content
    [conversation] = wait_turns(manager, 2)
    seed_old_turn(manager, days=3)

    page.goto(manager.url("/logging"))
    item = page.locator(f".conversation[data-id='{conversation['conversation_id']}']")
    item.wait_for()
    assert XSS in item.text_content() and "2 turns" in item.text_content()
    assert tile(page, "requests") == "2" and tile(page, "streamed") == "1" and tile(page, "errors") == "0"
    assert float(tile(page, "avg-tps")) > 0
    assert page.locator("#chart .series.tps .marker").count() >= 1
    assert page.locator("#chart .series.ttft .marker").count() >= 1
    assert page.locator(".conversation").count() == 1  # the 3-day-old one is outside 24 h
    capture(page, tmp_path, "logging")

    item.locator("button").click()
    detail = page.locator("#conversation-detail")
    detail.wait_for()
    turns = detail.locator(".turn")
    assert turns.count() == 2
    assert turns.nth(0).locator(".say.prompt").text_content() == XSS + " What colour is the sky?"
    assert turns.nth(0).locator(".say.response").text_content() == reply
    assert turns.nth(1).locator(".say.prompt").text_content() == "And at night?"
    metrics = turns.nth(0).locator("details.turn-metrics")
    assert metrics.get_attribute("open") is None and not metrics.locator("dl").is_visible()
    metrics.locator("summary").click()
    assert "Tokens/s" in metrics.locator("dl").text_content() and metrics.locator("dl").is_visible()
    assert page.evaluate("window.__xss") is None and detail.locator("img").count() == 0
    capture(page, tmp_path, "logging-conversation")
    page.keyboard.press("Escape")

    choose_window(page, "7d", 168)  # the old turn joins every figure
    assert tile(page, "requests") == "3" and page.locator(".conversation").count() == 2
    seven_day_tokens = tile(page, "tokens")
    choose_window(page, "24h", 24)
    assert tile(page, "requests") == "2" and tile(page, "tokens") != seven_day_tokens
    choose_window(page, "All", 0)
    assert tile(page, "requests") == "3" and tile(page, "peak-tps") != "—"
    page.reload()  # the window is kept in the address
    page.wait_for_selector("#logging-page[data-window='0']")
    assert page.get_attribute("#window-select button:has-text('All')", "aria-pressed") == "true"
    set_mode(manager, "off")
    problems.assert_none()
