"""Downloads through the real app (python app.py) from the local Hub server: the real gemma GGUF
lands, verifies, shows in the library and serves a chat; Ollama's client pulls; logs stream."""
from __future__ import annotations

import json
from pathlib import Path

import ollama
import pytest
import requests

from llamaman.models.gguf_header import read_header
from tests.e2e.instancekit import chat, runtime_env, start_manager
from tests.hubkit import HubKit, files_under, wait_download
from tests.modelkit import write_gguf

pytestmark = pytest.mark.timeout(300)
GEMMA_REPO = "unsloth/gemma-3-270m-it-GGUF"
TINY_REPO = "acme/tiny-GGUF"
SECRET = "hf_E2eSecretTokenValue_0123456789"


@pytest.fixture(scope="module")
def hub():
    with HubKit() as kit:
        yield kit


@pytest.fixture(scope="module")
def manager(request, tmp_path_factory, hub):
    tmp = tmp_path_factory.mktemp("downloads-e2e")
    env = runtime_env("process", request, tmp / "models", ports=30000)
    (tmp / "models").mkdir()
    manager = start_manager(tmp, {**env, "HF_ENDPOINT": hub.url})
    yield manager
    for instance in manager.api.get(manager.url("/api/instances")).json():
        manager.api.delete(manager.url(f"/api/instances/{instance['id']}"))
    manager.app.kill()


def wait(manager, job_id: str, timeout: float = 60) -> dict:
    return wait_download(manager.api, job_id, timeout=timeout, base=manager.url(""))


def start(manager, **body) -> dict:
    response = manager.api.post(manager.url("/api/downloads"), json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_real_gemma_downloads_verifies_lands_in_the_library_and_chats(manager, hub, model_path):
    repo = hub.add_repo(GEMMA_REPO, {model_path.name: model_path, "README.md": b"# gemma"}, token=SECRET)
    job = wait(manager, start(manager, repo_id=GEMMA_REPO, filename=model_path.name, hf_token=SECRET)["id"],
               timeout=240)
    assert job["status"] == "completed", job
    [entry] = job["files"]
    assert entry["sha256"] == repo.files[model_path.name].sha256 and entry["done"]
    dest = manager.app.env["MODELS_DIR"] + f"/unsloth/gemma-3-270m-it-GGUF/{model_path.name}"
    assert entry["dest"] == dest
    header = read_header(model_path).metadata
    [model] = [m for m in manager.api.get(manager.url("/api/models")).json() if m["path"] == dest]
    assert model["repo_id"] == GEMMA_REPO and model["architecture"] == header["general.architecture"] == "gemma3"
    assert model["layers"] == header["gemma3.block_count"] and model["quant"] == "Q4_K_M"
    assert model["context_length"] == header["gemma3.context_length"] and model["unreadable"] is False
    assert model["size"] == model_path.stat().st_size
    instance = manager.wait_status(manager.launch(dest)["id"], "healthy")
    answer = chat(instance["port"], manager.key, stream=False)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
    seen = manager.api.get(manager.url("/api/downloads")).text + manager.app.log()
    seen += manager.api.get(manager.url(f"/api/downloads/{job['id']}/logs")).text
    assert SECRET not in seen


def test_ollama_client_pulls_from_the_hub(manager, hub, tmp_path):
    tiny = write_gguf(tmp_path / "tiny.gguf", arch="llama", layers=3).read_bytes()
    hub.add_repo(TINY_REPO, {"tiny-Q4_K_M.gguf": tiny, "tiny-Q8_0.gguf": tiny + b"\0"})
    created = manager.api.post(manager.url("/api/api-keys"), json={"name": "pull", "scope": "admin"})
    client = ollama.Client(host=f"http://127.0.0.1:{manager.app.proxy_port}",
                           headers={"Authorization": f"Bearer {created.json()['key']}"})
    statuses = [part.status for part in client.pull(f"{TINY_REPO}:Q8_0", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert client.pull(f"{TINY_REPO}:Q4_K_M").status == "success"
    folder = manager.app.env["MODELS_DIR"] + "/acme/tiny-GGUF"
    names = sorted(files_under(Path(folder)))
    assert names == ["tiny-Q4_K_M.gguf", "tiny-Q4_K_M.gguf.llamaman.json", "tiny-Q8_0.gguf",
                     "tiny-Q8_0.gguf.llamaman.json"]
    with pytest.raises(ollama.ResponseError):
        client.pull(f"{TINY_REPO}:Q3_K_S")


def test_download_log_streams_as_server_sent_events(manager, hub, tmp_path):
    hub.add_repo("acme/stream-GGUF", {"a.bin": b"x" * 300_000})
    job = wait(manager, start(manager, repo_id="acme/stream-GGUF", filename="a.bin")["id"])
    assert job["status"] == "completed"
    url = manager.url(f"/api/downloads/{job['id']}/logs/stream")
    events = _events(manager.api.get(url, stream=True, timeout=30), until="completed")
    assert [e for e in events if "queued acme/stream-GGUF" in e[1]] and "completed" in events[-1][1]
    offsets = [int(e[0]) for e in events]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    again = _events(manager.api.get(url, stream=True, timeout=30, headers={"Last-Event-ID": events[-2][0]}),
                    until="completed")
    assert again == events[-1:]


def _events(response: requests.Response, until: str) -> list[tuple[str, str]]:
    """(id, data) of SSE events until one whose data contains `until`."""
    events, current = [], None
    with response:
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("id: "):
                current = line[4:]
            elif line.startswith("data: "):
                events.append((current, line[6:]))
                if until in line:
                    return events
    raise AssertionError(f"stream ended before {until!r}: {json.dumps(events)}")
