"""Shared test utilities: ports, HTTP polling, llama-server processes and containers, SSE."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Every container a test creates carries these labels; conftest removes leftovers by them.
# The pid label lets concurrent pytest sessions leave each other's containers alone.
TEST_LABEL_KEY = "llamaman.test"
TEST_PID_LABEL_KEY = "llamaman.test.pid"
TEST_LABELS = {TEST_LABEL_KEY: "1", TEST_PID_LABEL_KEY: str(os.getpid())}
LOOPBACK = "127.0.0.1"
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def assert_loopback(url: str) -> None:
    """Refuse any URL whose host is not the loopback interface (tests talk to 127.0.0.1 only)."""
    host = urllib.parse.urlsplit(url).hostname
    if host not in _LOOPBACK_HOSTS:
        raise AssertionError(f"test traffic must go to 127.0.0.1, not {host!r} ({url})")


def wait_http(url: str, timeout: float = 30.0, status: int = 200, interval: float = 0.1) -> int:
    """Poll URL until it answers with STATUS; return the status or raise TimeoutError."""
    assert_loopback(url)
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=min(5.0, timeout)) as resp:
                last = resp.status
        except urllib.error.HTTPError as exc:
            last = exc.code
        except (OSError, ValueError) as exc:
            last = exc
        if last == status:
            return status
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer {status} within {timeout:.0f}s (last: {last!r})")


def llama_server_args(model: str, host: str, port: int, *extra: str) -> list[str]:
    """Return small, fast llama-server arguments for the test model."""
    return [
        "--model", model, "--host", host, "--port", str(port),
        "--ctx-size", "512", "--threads", "2", "--parallel", "1", *extra,
    ]


@dataclass
class LlamaProcess:
    """A native llama-server child process listening on 127.0.0.1:port."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        """Return the last lines of the server's log (for failure messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server's process group; kill it if it does not exit in time."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)


def start_llama_process(binary: str, model: Path, log_path: Path, *extra: str) -> LlamaProcess:
    """Start llama-server natively on a free 127.0.0.1 port; the caller must stop() it."""
    port = free_port()
    args = [binary, *llama_server_args(str(model), LOOPBACK, port, *extra)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return LlamaProcess(proc, port, log_path)


def run_llama_container(client: Any, image: str, models_dir: Path, model_name: str,
                        *extra: str, **run_kwargs: Any) -> tuple[Any, int]:
    """Run the llama.cpp image with MODELS_DIR mounted read-only at /models.

    The container port is published on 127.0.0.1 only and the container carries
    TEST_LABELS. Returns (container, host_port); the caller removes the container.
    """
    port = free_port()
    labels = {**TEST_LABELS, **run_kwargs.pop("labels", {})}
    container = client.containers.run(
        image,
        command=llama_server_args(f"/models/{model_name}", "0.0.0.0", 8080, *extra),
        name=f"llamaman-test-{uuid.uuid4().hex[:10]}",
        detach=True,
        labels=labels,
        ports={"8080/tcp": (LOOPBACK, port)},
        volumes={str(models_dir): {"bind": "/models", "mode": "ro"}},
        **run_kwargs,
    )
    return container, port


def _pid_alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True


def remove_test_containers(client: Any, *, own: bool = False) -> int:
    """Force-remove test containers left by dead sessions (or, with own=True, this session's).

    Returns how many were removed.
    """
    removed = 0
    for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL_KEY}=1"}):
        pid = container.labels.get(TEST_PID_LABEL_KEY, "")
        mine = pid == str(os.getpid())
        if (own and mine) or (not own and not _pid_alive(pid)):
            container.remove(force=True)
            removed += 1
    return removed


def iter_sse_data(lines: Iterable[bytes]) -> Iterator[str]:
    """Yield the payload of each `data:` field of a server-sent-event stream."""
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line.startswith("data:"):
            yield line[5:].lstrip(" ")


def parse_chat_stream(lines: Iterable[bytes]) -> tuple[list[dict[str, Any]], bool]:
    """Parse an OpenAI chat-completions SSE stream into (chunks, saw_done)."""
    chunks: list[dict[str, Any]] = []
    for data in iter_sse_data(lines):
        if data == "[DONE]":
            return chunks, True
        chunks.append(json.loads(data))
    return chunks, False


def make_spec(config: Any, model: Path, instance_id: str, **settings: object) -> Any:
    """A LaunchSpec for runtime tests: a free internal port, a key named after the instance."""
    from llamaman.runtime import LaunchSettings, LaunchSpec

    return LaunchSpec(
        instance_id=instance_id,
        node=config.node_name,
        model_path=model,
        internal_port=free_port(),
        api_key=f"internal-{instance_id}",
        settings=LaunchSettings.from_body(settings),
        log_path=config.logs_dir / f"{instance_id}.log",
    )


def internal_auth(spec: Any) -> dict[str, str]:
    """The header that carries an instance's internal key."""
    return {"Authorization": f"Bearer {spec.api_key}"}


def assert_serves_chat(url: str, spec: Any) -> None:
    """A non-streamed chat completion with the internal key produces tokens."""
    import requests

    body = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8, "temperature": 0}
    resp = requests.post(f"{url}/v1/chat/completions", json=body, headers=internal_auth(spec), timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["completion_tokens"] > 0
