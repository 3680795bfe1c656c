"""Proof that the real test environment works: llama-server natively and in a container.

Each server must answer /health and stream an OpenAI chat completion over SSE with the
real gemma model. Assertions are on the protocol, never on the (tiny model's) wording.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import (
    LOOPBACK,
    TEST_LABEL_KEY,
    assert_loopback,
    parse_chat_stream,
    run_llama_container,
    start_llama_process,
    wait_http,
)

HEALTH_TIMEOUT = 30.0


def stream_chat(base_url: str) -> tuple[requests.Response, list[dict[str, Any]], bool]:
    """POST a streamed chat completion; return (response, parsed chunks, saw [DONE])."""
    url = f"{base_url}/v1/chat/completions"
    assert_loopback(url)
    body = {
        "messages": [{"role": "user", "content": "Count from one to twenty in words."}],
        "stream": True,
        "max_tokens": 16,
        "temperature": 0,
    }
    with requests.post(url, json=body, stream=True, timeout=60) as resp:
        chunks, done = parse_chat_stream(resp.iter_lines()) if resp.ok else ([], False)
    return resp, chunks, done


def assert_chat_stream(base_url: str) -> None:
    """Assert the server streams chat-completion chunks with content and a proper end."""
    resp, chunks, done = stream_chat(base_url)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert done, "stream did not end with data: [DONE]"
    assert chunks, "no data: events before [DONE]"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c.get("choices")]
    assert any(deltas), f"no non-empty content delta in {len(chunks)} chunks"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]
    assert finishes[-1] in ("length", "stop"), f"last finish_reason is {finishes[-1]!r}"
    timings = [c["timings"] for c in chunks if "timings" in c]
    assert timings and timings[-1]["predicted_n"] > 0, "final chunk carries no generation timings"


def test_native_llama_server_streams(llama_server_bin: str, model_path: Path, tmp_path: Path,
                                     request: pytest.FixtureRequest) -> None:
    server = start_llama_process(llama_server_bin, model_path, tmp_path / "llama-server.log")
    request.addfinalizer(server.stop)
    try:
        wait_http(f"{server.base_url}/health", HEALTH_TIMEOUT)
    except TimeoutError as exc:
        pytest.fail(f"{exc}; exit code {server.proc.poll()}; log:\n{server.log_tail()}")
    assert_chat_stream(server.base_url)


def test_container_llama_server_streams(docker_client: Any, llama_image: str, model_path: Path,
                                        request: pytest.FixtureRequest) -> None:
    container, port = run_llama_container(docker_client, llama_image, model_path.parent, model_path.name)
    request.addfinalizer(lambda: container.remove(force=True))
    container.reload()
    bindings = container.attrs["HostConfig"]["PortBindings"]["8080/tcp"]
    assert bindings == [{"HostIp": LOOPBACK, "HostPort": str(port)}]
    assert container.labels[TEST_LABEL_KEY] == "1"
    mounts = container.attrs["Mounts"]
    assert [(m["Destination"], m["RW"]) for m in mounts] == [("/models", False)]
    base_url = f"http://{LOOPBACK}:{port}"
    try:
        wait_http(f"{base_url}/health", HEALTH_TIMEOUT)
    except TimeoutError as exc:
        container.reload()
        logs = container.logs(tail=40).decode(errors="replace")
        pytest.fail(f"{exc}; container {container.status}; logs:\n{logs}")
    assert_chat_stream(base_url)
