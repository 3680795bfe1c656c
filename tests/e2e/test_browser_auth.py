"""First-run setup, login, API key creation and logout in real headless Chromium."""
import pytest

from tests.e2e.appproc import start_app

pytestmark = pytest.mark.timeout(120)

@pytest.fixture
def running(tmp_path):
    app = start_app(tmp_path)
    yield app
    app.kill()


def test_setup_login_and_key_creation_in_a_browser(browser, running, tmp_path):
    page = browser.new_page()
    page.goto(running.url("/"))
    assert page.url.endswith("/setup")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "browser-pass-123")
    page.click("button[type=submit]")
    page.wait_for_url(running.url("/"))

    page.goto(running.url("/settings#api-keys"))
    page.fill("#key-name", "open-webui")
    page.click("#key-form button")
    page.wait_for_selector("#new-key:not([hidden])")
    shown = page.text_content("#new-key")
    assert "llm-" in shown
    token = shown.split(": ", 1)[1].strip()
    page.wait_for_selector("#key-list tr")
    row = page.text_content("#key-list tr")
    assert "open-webui" in row and "inference" in row and token not in row
    page.screenshot(path=str(tmp_path / "dashboard.png"))

    page.goto(running.url("/logout"))
    assert page.url.endswith("/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "wrong-password")
    page.click("button[type=submit]")
    assert "Invalid username or password" in page.text_content("[role=alert]").capitalize()
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "browser-pass-123")
    page.click("button[type=submit]")
    page.wait_for_url(running.url("/"))
    page.goto(running.url("/settings"))
    # The toggle is filled in by the page's script once /api/settings answers.
    page.wait_for_selector("#require-auth:checked", timeout=10_000)
    assert page.is_checked("#require-auth")
