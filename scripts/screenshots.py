"""Regenerate docs/screenshots/<screen>-{desktop,phone}.png: starts the app with the process
runtime and the real gemma model, launches an instance, sends a chat, and captures each main
screen in headless Chromium at 1280 px and 390 px.

Usage (after scripts/provision.sh):
    source /var/lib/llamaman-test/test-env.sh && .venv/bin/python scripts/screenshots.py
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.library import write_models
from tests.e2e.appproc import start_app
from tests.e2e.browserkit import capture, new_page, open_browser, sign_in
from tests.e2e.instancekit import Manager, chat

OUT = ROOT / "docs" / "screenshots"
PASSWORD = "e2e-password-1"


def component(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set: source /var/lib/llamaman-test/test-env.sh (written by scripts/provision.sh)")
    return value


def make_library(models: Path) -> Path:
    """The real gemma model under a readable name, a few small GGUFs, and one broken file."""
    gemma = Path(component("LLAMAMAN_TEST_MODELS_DIR")) / component("LLAMAMAN_TEST_MODEL")
    folder = models / "unsloth" / "gemma-3-270m-it-GGUF"
    folder.mkdir(parents=True)
    target = folder / "gemma-3-270m-it-Q4_K_M.gguf"
    try:
        os.link(gemma, target)
    except OSError:
        target.symlink_to(gemma)  # outside MODELS_DIR: listed, not launchable
    write_models(models / "samples", 4)
    (models / "broken-Q8_0.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 32)
    return target


def prepare(manager: Manager, model: Path) -> dict:
    """One healthy instance with a recorded chat, and one stopped instance."""
    api, url = manager.api, manager.url
    api.post(url("/api/settings"), json={"request_recording_mode": "per_conversation"}).raise_for_status()
    instance = manager.wait_status(manager.launch(model, name="gemma-chat")["id"], "healthy")
    for _ in range(2):
        chat(instance["port"], manager.key, stream=False, max_tokens=24).raise_for_status()
    other = manager.launch(model, name="gemma-batch", max_concurrent=2)
    manager.wait_status(other["id"], "healthy")
    api.delete(url(f"/api/instances/{other['id']}")).raise_for_status()
    time.sleep(1.5)  # records are written off the request thread
    return instance


def dashboard_screens(page, app, out: Path, instance: dict) -> None:
    page.goto(app.url("/"))
    page.wait_for_selector(f"#inst-{instance['id']}[data-status='healthy'] [data-fact=cpu] .bar", timeout=20_000)
    capture(page, out, "dashboard")
    page.click('#model-list li[data-path$="gemma-3-270m-it-Q4_K_M.gguf"] button')
    page.wait_for_function("document.querySelector('#layers-total').textContent.startsWith('/ ')")
    capture(page, out, "launch")
    page.keyboard.press("Escape")
    card = page.locator(f"#inst-{instance['id']}")
    card.locator("[data-action=logs]").click()
    page.wait_for_function("document.querySelector('#log-view').textContent.length > 0")
    time.sleep(0.5)
    capture(page, out, "logs")
    page.keyboard.press("Escape")
    card.locator("[data-action=stats]").click()
    page.wait_for_selector("#stats-tiles")
    capture(page, out, "stats")
    page.keyboard.press("Escape")
    card.locator("[data-action=edit]").click()
    page.wait_for_selector("#edit-form")
    capture(page, out, "edit")
    page.keyboard.press("Escape")


def other_screens(page, app, out: Path) -> None:
    """Downloads, logging and settings, when those pages have been built."""
    page.goto(app.url("/"))
    if page.locator("#download-open").count():
        page.click("#download-open")
        capture(page, out, "downloads")
        page.keyboard.press("Escape")
    page.goto(app.url("/logging"))
    time.sleep(1.5)
    capture(page, out, "logging")
    page.goto(app.url("/settings"))
    time.sleep(1)
    tabs = page.locator("#settings-page [role=tab]")
    if not tabs.count():
        capture(page, out, "settings")
    for index in range(tabs.count()):
        tab = tabs.nth(index)
        tab.click()
        time.sleep(0.5)
        capture(page, out, "settings-" + re.sub(r"[^a-z0-9]+", "-", tab.text_content().lower()).strip("-"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        model = make_library(models)
        env = {"LLAMAMAN_RUNTIME": "process", "LLAMA_SERVER_BIN": component("LLAMA_SERVER_BIN"),
               "MODELS_DIR": str(models), "LLAMAMAN_NODE_NAME": "srv1",
               "PORT_RANGE_START": "36700", "PORT_RANGE_END": "36719",
               "INTERNAL_PORT_RANGE_START": "36800", "INTERNAL_PORT_RANGE_END": "36819"}
        manager = Manager(start_app(Path(tmp) / "app", **env))
        try:
            instance = prepare(manager, model)
            with open_browser(component("LLAMAMAN_TEST_CHROMIUM")) as browser:
                page, _ = new_page(browser)
                sign_in(page, manager.app, password=PASSWORD)
                dashboard_screens(page, manager.app, args.out, instance)
                other_screens(page, manager.app, args.out)
        finally:
            for item in manager.api.get(manager.url("/api/instances")).json():
                manager.api.delete(manager.url(f"/api/instances/{item['id']}"))
            manager.app.terminate()
    for path in sorted(args.out.glob("*.png")):
        print(path)


if __name__ == "__main__":
    main()
