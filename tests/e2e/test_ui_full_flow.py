"""The whole manager in one browser session, as a new user meets it: first-run setup → download
the real gemma GGUF through the dialog from the local Hub server (the bar reaches 100 %, the
library lists it without a reload) → launch it from the library with a preset saved in the
dialog → the card turns healthy → the logs viewer shows new server lines → a chat on the public
port → the Stats modal shows the request → the Logging page shows the conversation → stop →
restart → remove. Every step goes through the UI; the API is only read to check it."""
from __future__ import annotations

import pytest
import requests

from tests.e2e.appproc import start_app
from tests.e2e.browserkit import new_page
from tests.e2e.instancekit import SMALL, runtime_env
from tests.e2e.test_ui_dashboard import (
    card,
    run_action,
    wait_card_status,
    wait_recorded,
)
from tests.hubkit import HubKit

pytestmark = pytest.mark.timeout(300)
REPO = "unsloth/gemma-3-270m-it-GGUF"
PASSWORD = "full-flow-pass-1"


def test_setup_download_launch_chat_stats_logging_and_lifecycle(request, tmp_path, browser, model_path):
    (tmp_path / "models").mkdir()
    with HubKit() as hub:
        hub.add_repo(REPO, {model_path.name: model_path})
        env = runtime_env("process", request, tmp_path / "models", ports=37300)
        app = start_app(tmp_path / "app", HF_ENDPOINT=hub.url, **env)
        request.addfinalizer(app.kill)
        page, problems = new_page(browser)

        page.goto(app.url("/"))
        assert page.url.endswith("/setup")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(app.url("/"))
        api = requests.Session()  # reads only, with an admin key made in the Settings page
        api.headers["Authorization"] = "Bearer " + create_key(page, app, "admin")
        inference_key = create_key(page, app, "inference")
        page.goto(app.url("/settings#application"))
        page.wait_for_selector("#settings-page[data-loaded='1']")
        page.select_option("#recording-mode", "per_conversation")
        page.click("#save-recording")
        assert_setting(api, app, "request_recording_mode", "per_conversation")

        page.goto(app.url("/"))
        page.click("#download-open")
        page.fill("#dl-repo", REPO)
        page.fill("#dl-file", model_path.name)
        page.click("#dl-submit")
        entry = page.locator(".download", has=page.locator(".dl-title", has_text=model_path.name))
        entry.locator(".badge.completed").wait_for(timeout=240_000)
        assert entry.locator("[role=progressbar]").get_attribute("aria-valuenow") == "100"
        model = page.locator("#model-list li", has=page.locator(".model-name", has_text=model_path.stem.lower()))
        model.wait_for(timeout=15_000)  # no reload: the dashboard refreshes its library on completion

        model.locator("button").click()
        page.wait_for_selector("#launch-form")
        for name, value in SMALL.items():
            page.fill(f"#launch-{name}", str(value))
        page.fill("#launch-ctx_size", "640")
        page.click("#preset-save")
        page.wait_for_selector("#preset-note:has-text('Preset saved')")
        page.fill("#launch-name", "first")
        page.click("#launch-submit")
        wait_card_status(page, "first", "healthy")
        [instance] = api.get(app.url("/api/instances")).json()
        assert instance["ctx_size"] == 640 and instance["model_path"].endswith(model_path.name)

        first = card(page, "first")
        first.locator("[data-action=logs]").click()
        page.wait_for_function("document.querySelector('#log-view').textContent.length > 0")
        shown = len(page.text_content("#log-view"))
        answer = requests.post(f"http://127.0.0.1:{instance['port']}/v1/chat/completions", timeout=120,
                               headers={"Authorization": f"Bearer {inference_key}"},
                               json={"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8})
        assert answer.status_code == 200, answer.text
        page.wait_for_function("(n) => document.querySelector('#log-view').textContent.length > n", arg=shown)
        page.keyboard.press("Escape")

        wait_recorded(api_manager(api, app), instance["id"])
        first.locator("[data-action=stats]").click()
        page.wait_for_selector("#stats-tiles")
        assert page.text_content("[data-stat=requests]") == "1"
        assert float(page.text_content("[data-stat=avg_tps]")) > 0
        page.keyboard.press("Escape")

        page.click("nav.links >> text=Logging")
        conversation = page.locator(".conversation", has_text="Name a colour.")
        conversation.wait_for()
        conversation.locator("button").click()
        page.locator("#conversation-detail .say.prompt", has_text="Name a colour.").wait_for()
        page.keyboard.press("Escape")

        page.click("nav.links >> text=Dashboard")
        first = card(page, "first")
        run_action(page, first, "stop", "stopped", name="first")
        run_action(page, first, "restart", "healthy", confirm=False, name="first")
        run_action(page, first, "stop", "stopped", name="first")
        first.locator("[data-action=remove]").click()
        page.click("#confirm-ok")
        first.wait_for(state="detached")
        assert api.get(app.url("/api/instances")).json() == []
        problems.assert_none()


def create_key(page, app, scope: str) -> str:
    """Create an API key in the Settings page and return it as the page shows it (once)."""
    page.goto(app.url("/settings#api-keys"))
    page.reload()  # a fresh tab: no key from an earlier creation is still shown
    page.fill("#key-name", f"flow-{scope}")
    page.select_option("#key-scope", scope)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#new-key:not([hidden])")
    key = page.text_content("#new-key").split(": ", 1)[1].strip()
    assert key.startswith("llm-")
    return key


def assert_setting(api, app, key: str, value) -> None:
    import time
    deadline = time.monotonic() + 10
    while api.get(app.url("/api/settings")).json()[key] != value:
        assert time.monotonic() < deadline, f"{key} never became {value}"
        time.sleep(0.1)


class api_manager:
    def __init__(self, api, app) -> None:
        self.api, self.app = api, app

    def url(self, path: str) -> str:
        return self.app.url(path)
