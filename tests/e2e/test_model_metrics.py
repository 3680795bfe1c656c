"""Per-model /metrics series seen above zero with real traffic through real llama-servers: an admin
launch, a queued request, an API launch, a wake on an instance port and the eviction it causes."""
from __future__ import annotations

import re
import threading
import time

import ollama
import pytest
import requests

from tests.e2e.instancekit import chat
from tests.e2e.test_compat_chat import link_models, make_manager

pytestmark = pytest.mark.timeout(300)
PORTS = 36700


@pytest.fixture
def models(tmp_path, model_path):
    return link_models(tmp_path / "models", model_path, ("alpha", "beta"))


def scrape(manager) -> str:
    response = manager.api.get(manager.url("/metrics"))
    response.raise_for_status()
    return response.text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series (labels matched exactly, in any order), None when absent."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or "")) == labels:
            return float(match.group(2))
    return None


def wait_for(manager, name: str, value: float, timeout: float = 60, **labels: str) -> str:
    """Scrape until the series has `value`; return that scrape."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        text = scrape(manager)
        seen = sample(text, name, **labels)
        if seen == value:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{name}{labels} stayed {seen}, never {value}")


def test_every_per_model_series_moves_with_real_traffic(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models, ports=PORTS, LLAMAMAN_MAX_MODELS="1")
    manager.api.post(manager.url("/api/settings"), json={"allow_ollama_api_override_admin": True}).raise_for_status()
    alpha = manager.wait_status(manager.launch(models / "alpha.gguf", max_concurrent=1,
                                               idle_timeout_min=0.05)["id"], "healthy")
    text = scrape(manager)
    assert sample(text, "llamaman_scheduler_launches_total", model="alpha", launcher="admin") == 1
    assert sample(text, "llamaman_model_loaded_instances", model="alpha") == 1
    assert sample(text, "llamaman_models_loaded") == 1

    # one long request holds the gate (max_concurrent=1): the next one waits in its queue. Keep the
    # line iterator referenced: a discarded one is closed at once, and urllib3 then drops the
    # connection, which ends the held request a token later (the cause of a flaky failure).
    held = chat(alpha["port"], manager.key, max_tokens=450, ignore_eos=True)
    assert held.status_code == 200
    held_lines = held.iter_lines()
    assert next(held_lines)
    queued = threading.Thread(target=chat, args=(alpha["port"], manager.key, False, 2))
    queued.start()
    wait_for(manager, "llamaman_model_queued_requests", 1, model="alpha")
    held.close()
    queued.join(120)
    assert not queued.is_alive()
    manager.wait_status(alpha["id"], "sleeping", timeout=60)
    assert sample(scrape(manager), "llamaman_model_loaded_instances", model="alpha") == 0

    # an Ollama request loads beta (alpha sleeps, so nothing is evicted yet)
    client = ollama.Client(host=f"http://127.0.0.1:{manager.app.proxy_port}",
                           headers={"Authorization": f"Bearer {manager.key}"})
    client.chat(model="beta", messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 2})
    beta = next(i for i in manager.api.get(manager.url("/api/instances")).json() if i["model_name"] == "beta")

    # a request on alpha's port wakes it, and the cap of one evicts beta
    woke = requests.post(f"http://127.0.0.1:{alpha['port']}/v1/chat/completions",
                         headers={"Authorization": f"Bearer {manager.key}"},
                         json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}, timeout=120)
    assert woke.status_code == 200, woke.text
    text = scrape(manager)
    assert sample(text, "llamaman_scheduler_launches_total", model="beta", launcher="ollama") == 1
    assert sample(text, "llamaman_scheduler_wakes_total", model="alpha", instance=alpha["id"]) == 1
    assert sample(text, "llamaman_scheduler_evictions_total", model="beta", instance=beta["id"]) == 1
    assert sample(text, "llamaman_scheduler_evictions_total", model="alpha", instance=alpha["id"]) is None
    assert sample(text, "llamaman_model_loaded_instances", model="alpha") == 1
    assert sample(text, "llamaman_model_loaded_instances", model="beta") is None  # stopped: no series
    assert sample(text, "llamaman_models_loaded") == 1
