"""The Settings page in headless Chromium against the app as users start it (process runtime):
tabs that save and survive a reload, API keys shown once with a copy button and revoked, the
theme switch, require-auth taking effect on the API, backup download and restore report, the
HuggingFace token kept masked, and the Docker images tab's honest empty state."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.e2e.browserkit import capture, new_page, sign_in, signed_in
from tests.e2e.instancekit import runtime_env, start_manager
from tests.modelkit import write_gguf

pytestmark = pytest.mark.timeout(180)
PASSWORD = "e2e-password-1"  # the one admin_session creates
TOKEN = "hf_SettingsUiToken_0123456789abcd"


@pytest.fixture(scope="module")
def manager(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("ui-settings")
    (base / "models").mkdir()
    manager = start_manager(base / "app", runtime_env("process", request, base / "models", ports=36500))
    request.addfinalizer(manager.app.kill)
    return manager


@pytest.fixture
def page(browser, manager):
    with signed_in(browser, manager.app, PASSWORD) as (page, problems):
        yield page, problems


def settings(manager) -> dict:
    return manager.api.get(manager.url("/api/settings")).json()


def open_tab(page, manager, tab: str) -> None:
    page.goto(manager.url(f"/settings#{tab}"))
    page.wait_for_selector(f"#tab-{tab}[aria-selected=true]")
    page.wait_for_selector("#settings-page[data-loaded='1']")  # /api/settings filled the forms in


def save(page, section: str) -> None:
    """Click a section's Save and wait for the server's answer to show."""
    with page.expect_response(lambda r: r.url.endswith("/api/settings") and r.request.method == "POST") as answer:
        page.click(f"#save-{section}")
    assert answer.value.status == 200
    page.wait_for_selector(f"#section-{section} [role=alert][hidden]", state="attached")


def test_api_key_is_shown_once_copied_and_revoked(page, manager, tmp_path):
    page, problems = page
    open_tab(page, manager, "api-keys")
    page.fill("#key-name", "<img src=x onerror=window.__xss=1>")
    page.select_option("#key-scope", "admin")
    page.keyboard.press("Enter")  # the form submits from the keyboard
    page.wait_for_selector("#new-key:not([hidden])")
    key = page.text_content("#new-key").split(": ", 1)[1].strip()
    assert key.startswith("llm-")
    page.click("#copy-key")
    assert page.evaluate("navigator.clipboard.readText()") == key
    row = page.locator("#key-list tr", has_text="<img src=x")
    assert "admin" in row.text_content() and key not in row.text_content()
    assert page.evaluate("window.__xss") is None
    bearer = {"Authorization": f"Bearer {key}"}
    assert requests.get(manager.url("/api/models"), headers=bearer, timeout=10).status_code == 200
    capture(page, tmp_path, "settings-api-keys")

    page.reload()
    page.wait_for_selector("#key-list tr")
    assert key not in page.content()  # shown once: a reload shows the prefix only
    row.locator(".key-revoke").click()
    page.click("#confirm-ok")
    page.wait_for_selector(".toast-ok:has-text('Key revoked')")
    assert row.count() == 0
    assert requests.get(manager.url("/api/models"), headers=bearer, timeout=10).status_code == 401
    problems.assert_none()


def test_theme_switch_survives_a_reload(page, manager):
    page, problems = page
    page.goto(manager.url("/settings"))
    before = page.get_attribute("html", "data-theme")
    page.click("#theme-toggle")
    after = "light" if before == "dark" else "dark"
    assert page.get_attribute("html", "data-theme") == after
    page.reload()
    assert page.get_attribute("html", "data-theme") == after
    page.goto(manager.url("/logging"))
    assert page.get_attribute("html", "data-theme") == after
    page.click("#theme-toggle")
    problems.assert_none()


def test_require_auth_toggle_takes_effect_through_the_api(page, manager):
    page, problems = page
    tags = manager.app.url("/api/tags", manager.app.proxy_port)
    assert requests.get(tags, timeout=10).status_code == 401
    open_tab(page, manager, "application")
    page.wait_for_selector("#require-auth:checked")
    page.uncheck("#require-auth")
    page.click("#save-access")
    page.click("#confirm-cancel")  # asked first; cancelling saves nothing
    assert settings(manager)["require_auth"] is True
    with page.expect_response(lambda r: r.url.endswith("/api/settings") and r.request.method == "POST"):
        page.click("#save-access")
        page.click("#confirm-ok")
    assert requests.get(tags, timeout=10).status_code == 200
    page.check("#require-auth")
    save(page, "access")
    assert requests.get(tags, timeout=10).status_code == 401
    problems.assert_none()


def test_tabs_save_and_survive_a_reload(page, manager, tmp_path):
    page, problems = page
    problems.allowed_statuses.add(400)  # the bad retry count below, answered inline
    open_tab(page, manager, "downloads")
    page.fill("#retry-count", "0")
    page.click("#save-downloads")
    page.wait_for_selector("#section-downloads [role=alert]:not([hidden])")
    assert "retry_count_per_failed_download" in page.text_content("#section-downloads [role=alert]")
    page.check("#auto-retry")
    page.fill("#retry-count", "7")
    page.fill("#speed-limit", "12.5")
    save(page, "downloads")

    page.click("#tab-downloads")
    page.keyboard.press("ArrowRight")  # keyboard moves between tabs
    assert page.get_attribute("#tab-hf-token", "aria-selected") == "true"
    page.fill("#hf-token", TOKEN)
    save(page, "hf-token")
    masked = settings(manager)["hf_token"]
    assert masked.startswith("hf_") and TOKEN not in masked
    assert masked in page.text_content("#hf-token-state")
    save(page, "hf-token")  # the masked value sent back keeps the token

    open_tab(page, manager, "application")
    page.select_option("#recording-mode", "per_request")
    page.fill("#retention-days", "9")
    save(page, "recording")
    page.check("#enforce-max-models")
    save(page, "eviction")
    open_tab(page, manager, "cleanup")
    page.uncheck("#cleanup-downloads")
    page.fill("#cleanup-instances-hours", "72")
    save(page, "cleanup")
    capture(page, tmp_path, "settings-cleanup")

    page.reload()  # the hash keeps the tab; every value comes back from the server
    page.wait_for_function("document.querySelector('#cleanup-instances-hours').value === '72'")
    assert page.get_attribute("#tab-cleanup", "aria-selected") == "true"
    assert not page.is_checked("#cleanup-downloads")
    assert "Last run:" in page.text_content("#section-cleanup")
    open_tab(page, manager, "downloads")
    assert page.is_checked("#auto-retry") and page.input_value("#retry-count") == "7"
    assert page.input_value("#speed-limit") == "12.5"
    capture(page, tmp_path, "settings-downloads")
    open_tab(page, manager, "application")
    assert page.input_value("#recording-mode") == "per_request" and page.input_value("#retention-days") == "9"
    assert page.is_checked("#enforce-max-models")
    capture(page, tmp_path, "settings-application")
    open_tab(page, manager, "hf-token")
    capture(page, tmp_path, "settings-hf-token")

    stored = settings(manager)
    assert stored["hf_token"] == masked and stored["retry_count_per_failed_download"] == 7
    assert stored["cleanup"]["instances_max_age_hours"] == 72 and stored["cleanup"]["downloads_enabled"] is False
    assert stored["request_recording_mode"] == "per_request" and stored["admin_ui_enforce_max_models"] is True
    assert manager.api.post(manager.url("/api/settings"), json={"request_recording_mode": "off", "hf_token": "",
                                                               "admin_ui_enforce_max_models": False}).ok
    problems.assert_none()


def test_backup_download_and_restore_report(page, manager, tmp_path):
    page, problems = page
    models = manager.app.env["MODELS_DIR"]
    model = write_gguf(Path(models) / "backup-me.gguf")
    assert manager.api.put(manager.url(f"/api/presets{model}"), json={"ctx_size": 1024}).ok
    open_tab(page, manager, "application")
    with page.expect_download() as info:
        page.click("#backup-download")
    document = json.loads(Path(info.value.path()).read_text())
    assert document["format"] == "llamaman-models"
    [entry] = [m for m in document["models"] if m["path"] == "backup-me.gguf"]
    assert entry["preset"]["ctx_size"] == 1024
    document["models"].append({"path": "gone/<img src=x onerror=window.__xss=1>.gguf", "present": False})
    upload = tmp_path / "restore.json"
    upload.write_text(json.dumps(document))
    page.set_input_files("#restore-file", str(upload))
    page.click("#restore-submit")
    page.wait_for_selector("#restore-report .report-group")
    report = page.text_content("#restore-report")
    assert "Merged: 1" in report and "Unrestorable: 1" in report and "Queued: 0" in report and "Failed: 0" in report
    assert "<img src=x onerror=window.__xss=1>.gguf: no known HuggingFace source" in report
    assert page.evaluate("window.__xss") is None
    capture(page, tmp_path, "settings-backup")
    manager.api.delete(manager.url(f"/api/presets{model}"))
    problems.assert_none()


def test_images_tab_says_it_needs_docker(page, manager, tmp_path):
    page, problems = page
    problems.allowed_statuses.add(409)  # GET /api/images on the process runtime, shown as the empty state
    open_tab(page, manager, "images")
    page.wait_for_selector("#images-empty")
    assert "Docker runtime" in page.text_content("#images-empty")
    capture(page, tmp_path, "settings-images")
    problems.assert_none()


@pytest.fixture
def docker_manager(request, tmp_path):
    env = runtime_env("docker", request, tmp_path / "models", ports=36540)
    (tmp_path / "models").mkdir()
    manager = start_manager(tmp_path / "app", env)
    yield manager
    manager.app.kill()


def test_images_tab_pulls_lists_and_deletes_on_docker(browser, docker_manager, docker_client, registry,
                                                      llama_image, tmp_path):
    from tests.imagekit import RegistryKit
    kit = RegistryKit(docker_client, registry, llama_image)
    try:
        fresh = kit.repo("ui") + ":v1"
        kit.push(kit.variant(fresh, layer_bytes=1024 * 1024), fresh)
        docker_client.images.remove(fresh)  # in the registry only: the pull has a layer to fetch
        page, problems = new_page(browser)
        sign_in(page, docker_manager.app, password=PASSWORD)
        page.goto(docker_manager.url("/settings#images"))
        page.wait_for_selector(f"tr.image[data-name='{llama_image}'] .badge:has-text('active')")
        assert page.is_disabled(f"tr.image[data-name='{llama_image}'] .image-delete")
        page.fill("#image-name", fresh)
        page.click("#image-pull")
        page.wait_for_selector(".pull-job[data-status=done]", timeout=60_000)
        assert page.get_attribute(".pull-job [role=progressbar]", "aria-valuenow") == "100"
        row = page.locator(f"tr.image[data-name='{fresh}']")
        row.wait_for()
        page.check("#image-auto-update")
        page.fill("#image-interval", "6")
        with page.expect_response(lambda r: r.url.endswith("/api/images/settings")) as answer:
            page.click("#save-images-auto")
        assert answer.value.status == 200
        capture(page, tmp_path, "settings-images-docker")
        row.locator(".image-delete").click()
        page.click("#confirm-ok")
        row.wait_for(state="detached")
        page.reload()
        page.wait_for_selector("#image-auto-update")
        assert page.is_checked("#image-auto-update") and page.input_value("#image-interval") == "6"
        assert not [i for i in docker_client.images.list() if fresh in i.tags]
        problems.assert_none()
        page.context.close()
    finally:
        kit.cleanup()
