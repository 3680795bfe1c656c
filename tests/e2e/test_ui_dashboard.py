"""The dashboard in headless Chromium against the app with the process runtime and the real
gemma model: library → launch dialog with a saved preset → card healthy → live logs → a chat →
stats → stop/restart/remove; the model-cap confirmation; HTML in names rendered as text."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.e2e.browserkit import capture, new_page, sign_in, signed_in
from tests.e2e.instancekit import (
    SMALL,
    chat,
    runtime_env,
    start_manager,
    stop_all,
)

pytestmark = pytest.mark.timeout(300)
XSS = "<img src=x onerror=window.__xss=1>"
PASSWORD = "e2e-password-1"  # the one admin_session creates


def link_models(folder: Path, model_path: Path, names: tuple[str, ...]) -> Path:
    """Model files backed by the one real GGUF (hard links, else copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        try:
            os.link(model_path, folder / f"{name}.gguf")
        except OSError:
            import shutil
            shutil.copyfile(model_path, folder / f"{name}.gguf")
    return folder


@pytest.fixture(scope="module")
def manager(request, tmp_path_factory, model_path):
    base = tmp_path_factory.mktemp("ui-dash")
    folder = link_models(base / "models", model_path, ("alpha", XSS))
    manager = start_manager(base / "app", runtime_env("process", request, folder, ports=36100))
    request.addfinalizer(lambda: stop_all(manager))
    return manager


@pytest.fixture
def page(browser, manager):
    with signed_in(browser, manager.app, PASSWORD) as (page, problems):
        yield page, problems


def fill_small(page) -> None:
    for name, value in SMALL.items():
        page.fill(f"#launch-{name}", str(value))


def card(page, name: str):
    return page.locator("article.inst-card").filter(has=page.locator("h3.inst-name", has_text=name))


def test_launch_logs_chat_stats_and_lifecycle(page, manager, tmp_path):
    page, problems = page
    assert manager.api.post(manager.url("/api/settings"), json={"request_recording_mode": "per_request"}).ok
    page.click('#model-list li[data-path$="/alpha.gguf"] button')
    page.wait_for_selector("#launch-form")
    page.wait_for_function("document.querySelector('#layers-total').textContent.startsWith('/ ')")
    fill_small(page)
    page.fill("#launch-ctx_size", "768")
    page.click("#preset-save")
    page.wait_for_selector("#preset-note:has-text('Preset saved')")
    presets = manager.api.get(manager.url("/api/presets")).json()  # keyed by model path
    preset = [p for path, p in presets.items() if path.endswith("/alpha.gguf") and p["model_path"] == path]
    assert preset and preset[0]["ctx_size"] == 768 and preset[0]["threads"] == 2
    page.fill("#launch-name", "flow")
    capture(page, tmp_path, "launch")
    page.click("#launch-submit")

    flow = card(page, "flow")
    wait_card_status(page, "flow", "healthy")
    assert flow.locator(".badge").text_content() == "healthy"
    instance = next(i for i in manager.api.get(manager.url("/api/instances")).json() if i["name"] == "flow")
    assert instance["ctx_size"] == 768  # the saved preset's value launched
    assert flow.locator(".inst-url").text_content().endswith(f":{instance['port']}")
    capture(page, tmp_path, "dashboard")

    flow.locator("[data-action=logs]").click()
    page.wait_for_function("document.querySelector('#log-view').textContent.length > 0")
    before = page.text_content("#log-view")
    response = chat(instance["port"], manager.key, stream=False)
    assert response.status_code == 200, response.text
    page.wait_for_function("(n) => document.querySelector('#log-view').textContent.length > n", arg=len(before))
    assert_log_matches_file(page, manager, instance["id"])
    capture(page, tmp_path, "logs")
    page.keyboard.press("Escape")

    wait_recorded(manager, instance["id"])
    flow.locator("[data-action=stats]").click()
    page.wait_for_selector("#stats-tiles")
    assert page.text_content("[data-stat=requests]") == "1"
    assert float(page.text_content("[data-stat=avg_tps]")) > 0
    capture(page, tmp_path, "stats")
    page.keyboard.press("Escape")

    run_action(page, flow, "stop", "stopped")
    run_action(page, flow, "restart", "healthy", confirm=False)
    run_action(page, flow, "stop", "stopped")
    flow.locator("[data-action=remove]").click()
    page.click("#confirm-ok")
    flow.wait_for(state="detached")
    assert all(i["name"] != "flow" for i in manager.api.get(manager.url("/api/instances")).json())
    problems.assert_none()


def assert_log_matches_file(page, manager, instance_id: str) -> None:
    """The viewer's lines are the log's last lines: no gap, no duplicate."""
    deadline = time.monotonic() + 15
    while True:
        shown = page.text_content("#log-view").rstrip("\n").split("\n")
        tail = manager.api.get(manager.url(f"/api/instances/{instance_id}/logs?lines={len(shown)}")).json()["lines"]
        if shown == tail or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert shown == tail


def wait_recorded(manager, instance_id: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = manager.api.get(manager.url(f"/api/request-log/stats?inst_id={instance_id}")).json()
        if stats["turn_count"]:
            return
        time.sleep(0.1)
    raise AssertionError(f"no request recorded: {stats}")


def run_action(page, flow, action: str, status: str, confirm: bool = True, name: str = "flow") -> None:
    flow.locator(f"[data-action={action}]").click()
    if confirm:
        page.click("#confirm-ok")
    wait_card_status(page, name, status)


def wait_card_status(page, name: str, status: str) -> None:
    try:
        page.wait_for_function(
            "([name, status]) => [...document.querySelectorAll('article.inst-card')].some((c) =>"
            " c.querySelector('h3').textContent === name && c.dataset.status === status)",
            arg=[name, status], timeout=90_000)
    except Exception as error:
        shown = page.eval_on_selector_all("article.inst-card", "cs => cs.map(c => [c.querySelector('h3')"
                                          ".textContent, c.dataset.status])")
        raise AssertionError(f"card {name!r} never showed {status!r}; cards: {shown}") from error


def test_html_in_model_and_instance_names_renders_as_text(page, manager, tmp_path):
    page, problems = page
    xss_path = next(m["path"] for m in manager.api.get(manager.url("/api/models")).json() if XSS in m["path"])
    created = manager.api.post(manager.url("/api/instances"), json={"model_path": xss_path, "name": XSS, **SMALL})
    assert created.status_code == 201, created.text
    page.reload()
    entry = page.locator("#model-list .model-name", has_text=XSS.lower())
    entry.wait_for()
    xss_card = card(page, XSS)
    xss_card.wait_for()
    assert xss_card.locator(".inst-model").text_content() == XSS.lower()
    xss_card.locator("[data-action=logs]").click()
    page.wait_for_selector(f"[role=dialog][aria-label='Logs · {XSS}']")
    page.keyboard.press("Escape")
    xss_card.locator("[data-action=stats]").click()
    page.wait_for_selector("#stats-empty, #stats-tiles")
    page.keyboard.press("Escape")
    xss_card.locator("[data-action=edit]").click()
    page.wait_for_selector("#edit-form")
    assert page.input_value("#edit-name") == XSS
    page.keyboard.press("Escape")
    page.locator("#model-list li button", has=page.locator(".model-name", has_text=XSS.lower())).click()
    assert XSS.lower() in page.locator("#launch-model_path option:checked").text_content()
    page.keyboard.press("Escape")
    assert page.evaluate("window.__xss") is None
    assert page.locator("img[src=x]").count() == 0
    manager.api.delete(manager.url(f"/api/instances/{created.json()['id']}"))
    problems.assert_none()


def test_parse_command_and_import(page, manager):
    page, problems = page
    page.click("#launch-open")
    page.click("#parse-open")
    page.fill("#parse-command", "llama-server -m /models/x.gguf -c 2048 -ngl 0 --host 0.0.0.0 --flash-attn on")
    page.click("#parse-apply")
    page.wait_for_selector("#preset-note:has-text('Filled from the command')")
    assert page.input_value("#launch-ctx_size") == "2048" and page.input_value("#launch-n_gpu_layers") == "0"
    assert page.input_value("#launch-extra_args") == "--flash-attn on"
    page.keyboard.press("Escape")

    alpha = next(m["path"] for m in manager.api.get(manager.url("/api/models")).json() if m["name"] == "alpha")
    page.click("#import-open")
    page.fill("#import-json", json.dumps({"model_path": alpha, "name": "imported", **SMALL}))
    page.click("#import-submit")
    imported = card(page, "imported")
    imported.wait_for()
    instance = next(i for i in manager.api.get(manager.url("/api/instances")).json() if i["name"] == "imported")
    assert instance["ctx_size"] == SMALL["ctx_size"]
    manager.api.delete(manager.url(f"/api/instances/{instance['id']}"))
    problems.assert_none()


@pytest.fixture
def capped(request, tmp_path, model_path):
    folder = link_models(tmp_path / "models", model_path, ("first", "second"))
    env = {**runtime_env("process", request, folder, ports=36300), "LLAMAMAN_MAX_MODELS": "1"}
    manager = start_manager(tmp_path / "app", env)
    request.addfinalizer(lambda: stop_all(manager))
    return manager


def test_model_cap_asks_before_evicting(browser, capped, tmp_path):
    first = capped.launch(tmp_path / "models" / "first.gguf")
    page, problems = new_page(browser)
    problems.allowed_statuses.add(409)  # the cap answer the dialog is about
    sign_in(page, capped.app, password=PASSWORD)
    launch_second(page)
    page.wait_for_selector("#confirm-cancel")
    assert "LLAMAMAN_MAX_MODELS=1" in page.text_content("[role=dialog][aria-label='Model limit reached']")
    page.click("#confirm-cancel")
    listed = capped.api.get(capped.url("/api/instances")).json()
    assert [i["id"] for i in listed] == [first["id"]] and listed[0]["status"] in ("starting", "healthy")

    page.click("#launch-submit")  # the launch dialog stays open after a cancel
    page.click("#confirm-ok")
    second = card(page, "second")
    second.wait_for()
    assert capped.instance(first["id"])["status"] == "stopped"
    page.wait_for_selector(f"#inst-{first['id']}[data-status='stopped']")
    problems.assert_none()
    page.context.close()


def launch_second(page) -> None:
    page.click('#model-list li[data-path$="/second.gguf"] button')
    page.wait_for_selector("#launch-form")
    fill_small(page)
    page.click("#launch-submit")



def test_polled_lists_answer_304_when_unchanged(manager):
    for path in ("/api/instances", "/api/models"):
        first = manager.api.get(manager.url(path))
        again = manager.api.get(manager.url(path), headers={"If-None-Match": first.headers["ETag"]})
        assert (first.status_code, again.status_code, again.content) == (200, 304, b"")


def test_log_viewer_resumes_after_a_dropped_connection_without_gaps_or_duplicates(page, manager):
    page, problems = page
    alpha = Path(manager.app.env["MODELS_DIR"]) / "alpha.gguf"
    instance = manager.wait_status(manager.launch(alpha, name="tail")["id"], "healthy")
    streams = []
    page.on("request", lambda r: streams.append(resume_point(r)) if "/logs/stream" in r.url else None)
    page.reload()
    card(page, "tail").locator("[data-action=logs]").click()
    page.wait_for_selector("#log-state:has-text('live')")
    assert_log_matches_file(page, manager, instance["id"])
    cut_browser_connections(manager.app.ui_port)  # the stream drops...
    for _ in range(2):  # ...while the server writes new lines
        assert chat(instance["port"], manager.key, stream=False, max_tokens=2).status_code == 200
    deadline = time.monotonic() + 30
    while len(streams) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert len(streams) >= 2 and streams[0] is None and streams[-1], f"no resumed stream request: {streams}"
    assert_log_matches_file(page, manager, instance["id"])  # resumed after the last line shown
    problems.items = [p for p in problems.items if "request failed" not in p]  # the cut, provoked above
    manager.api.delete(manager.url(f"/api/instances/{instance['id']}"))
    problems.assert_none()


def resume_point(request) -> str | None:
    """Where a log stream request asks to resume: the Last-Event-ID header or the page's own
    `last_event_id` query argument (used when the browser gave the EventSource up)."""
    header = request.all_headers().get("last-event-id")
    query = parse_qs(urlparse(request.url).query).get("last_event_id", [None])[0]
    return header or query


def cut_browser_connections(port: int) -> None:
    """Abort every TCP connection to the app's UI port, as a network drop would (ss -K, root)."""
    import subprocess
    subprocess.run(["ss", "-K", "dst", "127.0.0.1", "dport", "=", f":{port}"], check=True, capture_output=True)
