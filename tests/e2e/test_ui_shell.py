"""The header every signed-in page shares, in headless Chromium: host CPU and RAM meters filled
from /api/system-info (checked against the API's own numbers), the explicit no-GPU state on
this GPU-less machine, and the navigation between the three pages."""
from __future__ import annotations

import pytest

from tests.e2e.appproc import admin_session, start_app
from tests.e2e.browserkit import signed_in

pytestmark = pytest.mark.timeout(120)
PASSWORD = "e2e-password-1"  # the one admin_session creates


def fmt_gib_prefix(value: int) -> str:
    """The leading digits the page shows for a byte count over 1 GiB (LM.fmtBytes)."""
    return f"{value / 1024 ** 3:.1f}" if value >= 10 * 1024 ** 3 else f"{value / 1024 ** 3:.2f}"


def test_header_meters_and_navigation(browser, tmp_path):
    app = start_app(tmp_path)
    try:
        api = admin_session(app)
        with signed_in(browser, app, PASSWORD) as (page, problems):
            page.wait_for_function("document.querySelector('#meter-ram .meter-value').textContent.includes('/')")
            ram = page.text_content("#meter-ram .meter-value")
            info = api.get(app.url("/api/system-info")).json()
            total = info["ram_total_bytes"]
            assert total > 0 and ram.split(" / ")[1].startswith(fmt_gib_prefix(total)), (ram, info)
            assert page.text_content("#meter-cpu .meter-value").endswith("%")
            gpus = api.get(app.url("/api/gpu-info")).json()
            assert gpus["gpus"] == [] and gpus["reason"]
            page.wait_for_selector("#no-gpu")
            assert page.text_content("#no-gpu") == "No GPU detected"
            assert page.get_attribute("#no-gpu", "title") == gpus["reason"]
            for link, path in (("Logging", "/logging"), ("Settings", "/settings"), ("Dashboard", "/")):
                page.click(f"nav.links >> text={link}")
                page.wait_for_url(app.url(path) + "*")
                assert page.get_attribute(f"nav.links >> text={link}", "aria-current") == "page"
            problems.assert_none()
    finally:
        app.kill()
