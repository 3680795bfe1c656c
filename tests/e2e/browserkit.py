"""Headless Chromium for UI tests: pages that fail their test on any console error or failed
request, a signed-in browser context, and screenshots at desktop and phone width."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.e2e.appproc import AppProcess

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PASSWORD = "browser-pass-123"


class PageProblems:
    """Console errors, uncaught exceptions and failed requests seen by one page."""

    def __init__(self, page: Any) -> None:
        self.items: list[str] = []
        self.allowed_statuses: set[int] = set()  # statuses a test provokes on purpose (e.g. 409)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.items.append(f"page error: {error}"))
        page.on("requestfailed", self._on_failed)
        page.on("response", self._on_response)

    def _on_console(self, message: Any) -> None:
        if message.type == "error" and not self._provoked(message.text):
            self.items.append(f"console error: {message.text}")

    def _provoked(self, text: str) -> bool:
        # Chromium logs every 4xx/5xx as "Failed to load resource: … status of N"; the response
        # hook below already judges those by status.
        return "Failed to load resource" in text

    def _on_failed(self, request: Any) -> None:
        failure = request.failure or ""
        if "ERR_ABORTED" in failure:
            return  # navigation away or an EventSource closed on purpose
        self.items.append(f"request failed: {request.method} {request.url} ({failure})")

    def _on_response(self, response: Any) -> None:
        if response.status >= 400 and response.status not in self.allowed_statuses:
            self.items.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def assert_none(self) -> None:
        assert not self.items, "browser problems:\n" + "\n".join(self.items)


@contextmanager
def open_browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, viewport: dict | None = None) -> tuple[Any, PageProblems]:
    """A fresh context and page with problem tracking; its clipboard is writable."""
    context = browser.new_context(viewport=viewport or DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page, PageProblems(page)


def sign_in(page: Any, app: AppProcess, username: str = "admin", password: str = PASSWORD) -> None:
    """Create the admin on first use (the setup page), else log in; ends on the dashboard."""
    page.goto(app.url("/"))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(app.url("/"))


@contextmanager
def signed_in(browser: Any, app: AppProcess, password: str = PASSWORD) -> Iterator[tuple[Any, PageProblems]]:
    """A fresh page signed in as the admin; its context closes afterwards."""
    page, problems = new_page(browser)
    sign_in(page, app, password=password)
    try:
        yield page, problems
    finally:
        page.context.close()


def capture(page: Any, directory: Path, name: str) -> list[Path]:
    """Screenshots of the current page at 1280 px and 390 px wide."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        path = directory / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        paths.append(path)
    page.set_viewport_size(DESKTOP)
    return paths
