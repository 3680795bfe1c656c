"""Dashboard downloads in headless Chromium, from the local Hub server: the real gemma GGUF through
the dialog (progress reaches 100 %, the model lands in the library), pause/resume/cancel/remove
from the list, the job's log, llamactl `org/model:tag`, and names with HTML rendered as text."""
from __future__ import annotations

import pytest

from tests.e2e.browserkit import capture, signed_in
from tests.e2e.instancekit import runtime_env, start_manager
from tests.hubkit import HubKit
from tests.modelkit import write_gguf

pytestmark = pytest.mark.timeout(300)
PASSWORD = "e2e-password-1"  # the one admin_session creates
GEMMA_REPO = "unsloth/gemma-3-270m-it-GGUF"
SECRET = "hf_UiDownloadSecret_0123456789"
XSS = "<img src=x onerror=window.__xss=1>"


@pytest.fixture(scope="module")
def hub():
    with HubKit() as kit:
        yield kit


@pytest.fixture(scope="module")
def manager(request, tmp_path_factory, hub):
    base = tmp_path_factory.mktemp("ui-downloads")
    (base / "models").mkdir()
    env = runtime_env("process", request, base / "models", ports=36800)
    manager = start_manager(base / "app", {**env, "HF_ENDPOINT": hub.url})
    request.addfinalizer(manager.app.kill)
    return manager


@pytest.fixture
def page(browser, manager):
    with signed_in(browser, manager.app, PASSWORD) as (page, problems):
        page.wait_for_selector("#download-open")
        yield page, problems


def open_dialog(page, repo: str, filename: str = "", token: str = "", speed: str = "") -> None:
    page.click("#download-open")
    page.fill("#dl-repo", repo)
    page.fill("#dl-file", filename)
    if token:
        page.fill("#dl-token", token)
    if speed:
        page.fill("#dl-speed", speed)


def item(page, text: str):
    return page.locator(".download", has=page.locator(".dl-title", has_text=text))


def wait_status(entry, status: str, timeout: float = 60_000) -> None:
    entry.locator(f".badge.{status}").wait_for(timeout=timeout)


def test_real_gemma_downloads_through_the_dialog_to_100_percent(page, manager, hub, model_path, tmp_path):
    page, problems = page
    hub.add_repo(GEMMA_REPO, {model_path.name: model_path, "README.md": b"# gemma"}, token=SECRET)
    open_dialog(page, GEMMA_REPO, model_path.name, token=SECRET)
    assert page.get_attribute("#dl-token", "type") == "password"
    page.click("#dl-submit")
    page.wait_for_selector("#download-dialog", state="detached")  # success closes the dialog
    entry = item(page, model_path.name)
    entry.wait_for()
    wait_status(entry, "completed", timeout=240_000)
    assert entry.locator("[role=progressbar]").get_attribute("aria-valuenow") == "100"
    assert "100%" in entry.locator(".dl-progress").text_content()
    assert "Saved to" in entry.locator(".dl-detail").text_content()
    entry.locator(".dl-log summary").click()
    entry.locator(".dl-log-view", has_text="completed").wait_for()
    assert SECRET not in page.content()
    capture(page, tmp_path, "dashboard-downloads")

    page.reload()  # the library lists the model that landed
    page.locator("#library", has_text=model_path.stem).wait_for()
    [model] = [m for m in manager.api.get(manager.url("/api/models")).json() if m["path"].endswith(model_path.name)]
    assert model["repo_id"] == GEMMA_REPO
    entry.locator(".dl-remove").click()
    page.click("#confirm-ok")
    entry.wait_for(state="detached")
    problems.assert_none()


def test_pause_resume_cancel_and_remove_from_the_list(page, manager, hub, tmp_path):
    page, problems = page
    hub.add_repo("acme/slow-GGUF", {"slow.bin": b"s" * 4_000_000})
    hub.rate = 150_000  # bytes/s per response: slow enough to act on while it runs
    try:
        open_dialog(page, "acme/slow-GGUF", "slow.bin", speed="8")
        page.click("#dl-submit")
        entry = item(page, "slow.bin")
        wait_status(entry, "downloading")
        selector = f".download[data-id='{entry.get_attribute('data-id')}'] [role=progressbar]"
        page.wait_for_function("(s) => Number(document.querySelector(s).getAttribute('aria-valuenow')) > 0",
                               arg=selector)
        assert "ETA" in entry.locator(".dl-progress").text_content()
        capture(page, tmp_path, "dashboard-download-running")
        entry.locator(".dl-pause").click()
        wait_status(entry, "paused")
        entry.locator(".dl-resume").click()
        wait_status(entry, "downloading")
        entry.locator(".dl-cancel").click()
        page.click("#confirm-cancel")  # asked first: nothing happens without a yes
        assert entry.locator(".badge.downloading").count() == 1 or entry.locator(".badge.queued").count() == 1
        entry.locator(".dl-cancel").click()
        page.click("#confirm-ok")
        wait_status(entry, "cancelled")
        entry.locator(".dl-log summary").click()
        log = entry.locator(".dl-log-view")
        log.filter(has_text="cancel").wait_for()
        assert "paused" in log.text_content() and "resumed" in log.text_content()
        entry.locator(".dl-remove").click()
        page.click("#confirm-ok")
        entry.wait_for(state="detached")
    finally:
        hub.rate = 0.0
    assert all(job["filename"] != "slow.bin" for job in manager.api.get(manager.url("/api/downloads")).json())
    problems.assert_none()


def test_llamactl_tag_download_from_the_dialog(page, manager, hub, tmp_path):
    page, problems = page
    tiny = write_gguf(tmp_path / "tiny.gguf", arch="llama", layers=3).read_bytes()
    hub.add_repo("acme/tag-GGUF", {"tag-Q4_K_M.gguf": tiny, "tag-Q8_0.gguf": tiny + b"\0"})
    page.click("#download-open")
    page.click("#dl-kind-tag")
    page.fill("#dl-ref", "acme/tag-GGUF:Q8_0")
    page.keyboard.press("Enter")
    entry = item(page, "acme/tag-GGUF:Q8_0")
    wait_status(entry, "completed")
    assert entry.locator("[role=progressbar]").get_attribute("aria-valuenow") == "100"
    cached = manager.api.get(manager.url("/api/v1/backends/llama-cpp/models")).json()
    assert [(m["repo"], m["tag"]) for m in cached] == [("acme/tag-GGUF", "Q8_0")]
    problems.assert_none()


def test_names_with_html_render_as_text(page, manager, hub, tmp_path):
    page, problems = page
    problems.allowed_statuses.add(400)  # the bad repo id below, shown inline
    open_dialog(page, XSS)
    page.click("#dl-submit")
    page.wait_for_selector("#dl-error:not([hidden])")
    assert XSS in page.text_content("#dl-error") and "invalid repo_id" in page.text_content("#dl-error")
    page.keyboard.press("Escape")
    hub.add_repo("acme/xss-GGUF", {"real.gguf": b"GGUF"})
    open_dialog(page, "acme/xss-GGUF", XSS + ".gguf")
    page.click("#dl-submit")
    entry = item(page, XSS)
    wait_status(entry, "failed")
    assert XSS in entry.locator(".dl-title").text_content()
    assert entry.locator(".dl-error").is_visible() and entry.locator("img").count() == 0
    assert page.evaluate("window.__xss") is None
    capture(page, tmp_path, "dashboard-download-failed")
    problems.assert_none()
