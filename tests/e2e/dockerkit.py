"""The manager image built from this checkout (offline: a local base image and a wheelhouse),
and the manager container run the way the README's compose file runs it."""
from __future__ import annotations

import io
import os
import re
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.helpers import LOOPBACK, TEST_LABELS, parse_chat_stream, wait_http

ROOT = Path(__file__).resolve().parents[2]
CONTEXT_FILES = ("Dockerfile", "requirements.txt", "app.py", "gunicorn.conf.py")
CONTEXT_DIRS = ("llamaman", "templates", "static")
MANAGER_IMAGE = "llamaman-test/manager:e2e"  # one stable tag, so warm builds reuse the layer cache
MANAGER_LABEL = "llamaman.test.manager"
APP_UID = 1000  # the Dockerfile's default user
SOCKET_IN_CONTAINER = "/var/run/docker.sock"
PASSWORD = "in-docker-password-1"


def build_context(wheelhouse: Path) -> io.BytesIO:
    """A tar build context: the files the Dockerfile copies, plus the wheels as wheels/."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in CONTEXT_FILES:
            tar.add(ROOT / name, arcname=name, filter=_normalise)
        for name in CONTEXT_DIRS:
            tar.add(ROOT / name, arcname=name, filter=_normalise)
        tar.add(wheelhouse, arcname="wheels", recursive=False, filter=_normalise)
        for wheel in sorted(wheelhouse.glob("*.whl")):
            tar.add(wheel, arcname=f"wheels/{wheel.name}", filter=_normalise)
    buf.seek(0)
    return buf


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if "__pycache__" in info.name or info.name.endswith(".pyc"):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build_manager_image(client: Any, base_image: str, wheelhouse: Path) -> str:
    """Build MANAGER_IMAGE from BASE_IMAGE with --no-index installs; return its id."""
    log: list[str] = []
    stream = client.api.build(
        fileobj=build_context(wheelhouse), custom_context=True, tag=MANAGER_IMAGE,
        buildargs={"BASE_IMAGE": base_image}, pull=False, rm=True, forcerm=True, decode=True,
        labels={MANAGER_LABEL: "1"}, network_mode="none",
    )
    for chunk in stream:
        log.append(chunk.get("stream") or chunk.get("status") or "")
        if "error" in chunk:
            raise AssertionError(f"image build failed: {chunk['error']}\n{''.join(log[-40:])}")
    client.images.prune(filters={"dangling": True, "label": f"{MANAGER_LABEL}=1"})  # earlier builds
    return client.images.get(MANAGER_IMAGE).id


@dataclass
class ManagerSetup:
    """Host-side resources of one in-Docker manager: network, node, dirs, socket."""

    image: str
    llama_image: str
    models_dir: Path
    data_dir: Path
    logs_dir: Path
    socket_path: Path
    public_ports: tuple[int, ...] = (8000, 8001, 8002, 8003)
    tag: str = ""

    def __post_init__(self) -> None:
        self.tag = self.tag or uuid.uuid4().hex[:8]
        for path in (self.data_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, APP_UID, APP_UID)

    @property
    def network(self) -> str:
        return f"llamaman-dk-{self.tag}"

    @property
    def node(self) -> str:
        return f"dk-{self.tag}"

    @property
    def prefix(self) -> str:
        return f"llamaman-dk{self.tag}-"

    def environment(self) -> dict[str, str]:
        """What a user sets in docker-compose.yml; mode and runtime are left to detection."""
        return {
            "LLAMAMAN_NODE_NAME": self.node,
            "HOST_MODELS_DIR": str(self.models_dir),
            "HOST_LOGS_DIR": str(self.logs_dir),
            "LLAMA_IMAGE": self.llama_image,
            "LLAMA_NETWORK": self.network,
            "LLAMA_CONTAINER_PREFIX": self.prefix,
            "PORT_RANGE_START": str(self.public_ports[0]),
            "PORT_RANGE_END": str(self.public_ports[-1]),
        }

    def run_kwargs(self) -> dict[str, Any]:
        """`containers.run` arguments mirroring the compose service, published on 127.0.0.1."""
        ports = {f"{port}/tcp": (LOOPBACK, None) for port in (5000, 42069, *self.public_ports)}
        return {
            "image": self.image, "name": f"llamaman-dk-{self.tag}-manager", "detach": True,
            "network": self.network, "environment": self.environment(), "ports": ports,
            "group_add": [str(self.socket_path.stat().st_gid)],
            "volumes": {
                str(self.socket_path): {"bind": SOCKET_IN_CONTAINER, "mode": "rw"},
                str(self.models_dir): {"bind": "/models", "mode": "ro"},
                str(self.data_dir): {"bind": "/data", "mode": "rw"},
                str(self.logs_dir): {"bind": "/tmp/llama-logs", "mode": "rw"},
            },
            "labels": dict(TEST_LABELS),
        }


def published(container: Any, port: int) -> int:
    """Host port on 127.0.0.1 that the container's PORT is published on."""
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []
    for binding in bindings:
        if binding["HostIp"] == LOOPBACK:
            return int(binding["HostPort"])
    raise AssertionError(f"port {port} is not published on {LOOPBACK}: {bindings}")


def wait_manager(container: Any, timeout: float = 90) -> int:
    """Wait until the manager's UI port answers /health; return that host port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            raise AssertionError(f"manager exited:\n{container.logs().decode(errors='replace')}")
        try:
            port = published(container, 5000)
            wait_http(f"http://{LOOPBACK}:{port}/health", timeout=2)
            return port
        except (AssertionError, TimeoutError, KeyError):
            time.sleep(0.3)
    raise AssertionError(f"manager never answered:\n{container.logs().decode(errors='replace')}")


def wait_health_status(container: Any, want: str = "healthy", timeout: float = 60) -> str:
    """Wait for Docker's HEALTHCHECK verdict; return the last status seen."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        container.reload()
        status = (container.attrs["State"].get("Health") or {}).get("Status")
        if status == want:
            break
        time.sleep(1)
    return status


def remove_node_containers(client: Any, node: str) -> None:
    """Remove the sibling llama-server containers a manager of NODE spawned."""
    for container in client.containers.list(all=True, filters={"label": f"llamaman.node={node}"}):
        container.remove(force=True)


class Client:
    """The admin session and an inference key, over the manager's published ports."""

    def __init__(self, ui_port: int) -> None:
        self.ui_port = ui_port
        self.api = requests.Session()
        page = self.api.get(self.url("/setup"), timeout=10)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        done = self.api.post(self.url("/setup"), data={"username": "admin", "password": PASSWORD,
                                                       "csrf_token": token}, allow_redirects=False)
        assert done.status_code == 302, done.text
        self.api.headers["X-CSRF-Token"] = token
        created = self.api.post(self.url("/api/api-keys"), json={"name": "dk", "scope": "inference"})
        assert created.status_code == 201, created.text
        self.key = created.json()["key"]

    def url(self, path: str, port: int | None = None) -> str:
        return f"http://{LOOPBACK}:{port or self.ui_port}{path}"

    def instances(self) -> list[dict]:
        response = self.api.get(self.url("/api/instances"), timeout=10)
        response.raise_for_status()
        return response.json()

    def wait_status(self, instance_id: str, status: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.api.get(self.url(f"/api/instances/{instance_id}"), timeout=10).json()
            if seen.get("status") == status:
                return seen
            time.sleep(0.2)
        raise AssertionError(f"instance never became {status}: {seen}")


def first_token(port: int, key: str) -> tuple[float, str]:
    """Stream a chat from a public instance port; return (time of the first token, the text)."""
    body = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16, "stream": True}
    response = requests.post(f"http://{LOOPBACK}:{port}/v1/chat/completions", json=body, stream=True,
                             headers={"Authorization": f"Bearer {key}"}, timeout=120)
    assert response.status_code == 200, response.text
    at = None
    lines = []
    for line in response.iter_lines():
        lines.append(line)
        if at is None and b'"content"' in line:
            at = time.monotonic()
    chunks, done = parse_chat_stream(lines)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert done and text and at is not None
    return at, text
