"""docker-compose.yml as the real Compose tool reads it (`docker compose config`, or the Debian
`docker-compose` 1.29 where the plugin is not packaged), checked against the Dockerfile."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV = {"DOCKER_GID": "987", "PATH": os.environ.get("PATH", "")}


def compose_command() -> list[str]:
    """`docker compose` when the plugin answers, else `docker-compose`."""
    docker = shutil.which("docker")
    probe = [docker, "compose", "version"]
    if docker and subprocess.run(probe, check=False, capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    require("Docker Compose", "install it: apt-get install docker-compose (scripts/provision.sh does)")


def compose(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*compose_command(), "-f", str(COMPOSE_FILE), *args], check=False,
                          capture_output=True, text=True, env=ENV if env is None else env, cwd=ROOT,
                          timeout=60)


@pytest.fixture(scope="module")
def config() -> dict:
    done = compose("config")
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def port_pairs(service: dict) -> set[tuple[int, int]]:
    pairs = set()
    for port in service["ports"]:
        if isinstance(port, str):  # short syntax, e.g. "5000:5000"
            published, target = port.split(":")[-2:]
        else:
            published, target = port["published"], port["target"]
        pairs.add((int(published), int(target)))
    return pairs


def exposed_ports() -> set[int]:
    line = next(x for x in (ROOT / "Dockerfile").read_text().splitlines() if x.startswith("EXPOSE"))
    ports: set[int] = set()
    for item in line.split()[1:]:
        low, _, high = item.partition("-")
        ports.update(range(int(low), int(high or low) + 1))
    return ports


def test_ports_reach_the_sidecars_one_to_one(config):
    pairs = port_pairs(config["services"]["llamaman"])
    assert all(published == target for published, target in pairs), pairs
    assert {target for _, target in pairs} == {5000, 42069, *range(8000, 8021)} == exposed_ports()


def test_socket_drm_volumes_and_host_paths(config):
    service = config["services"]["llamaman"]
    volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in service["volumes"]]
    targets = {v.split(":")[1] for v in volumes}
    assert {"/var/run/docker.sock", "/sys/class/drm", "/models", "/data", "/tmp/llama-logs"} <= targets
    assert any(v.startswith("/sys/class/drm:/sys/class/drm:ro") for v in service["volumes"]
               if isinstance(v, str)) or _read_only(service, "/sys/class/drm")
    env = service["environment"]
    assert {"LLAMAMAN_NODE_NAME", "HOST_MODELS_DIR", "HOST_LOGS_DIR", "DATABASE_URL"} <= set(env)
    assert config["networks"]["llamaman-net"]["name"] == "llamaman-net"
    assert "llamaman-net" in service["networks"]


def _read_only(service: dict, target: str) -> bool:
    for volume in service["volumes"]:
        if isinstance(volume, dict) and volume["target"] == target:
            return bool(volume.get("read_only"))
        if isinstance(volume, str) and volume.split(":")[1] == target:
            return volume.endswith(":ro")
    return False


def test_runs_non_root_with_the_socket_group(config):
    service = config["services"]["llamaman"]
    assert service["user"] == "1000:1000"
    assert [str(g) for g in service["group_add"]] == ["987"]


def test_socket_group_is_required():
    done = compose("config", env={"PATH": ENV["PATH"]})
    assert done.returncode != 0 and "DOCKER_GID" in done.stderr


def test_mariadb_is_an_opt_in_profile(config):
    db = config["services"]["db"]
    assert db["profiles"] == ["mariadb"] and "profiles" not in config["services"]["llamaman"]
    assert {"MARIADB_DATABASE": "llamaman", "MARIADB_USER": "llamaman"}.items() <= db["environment"].items()
    assert "llamaman-net" in db["networks"]
    assert "DATABASE_URL=mysql+pymysql://llamaman:<DB_PASSWORD>@db:3306/llamaman" in COMPOSE_FILE.read_text()


def test_open_webui_snippet_is_commented_with_the_readme_env():
    text = COMPOSE_FILE.read_text()
    block = re.search(r"^  # open-webui:\n((?:  #.*\n)+)", text, re.MULTILINE)
    assert block, "the Open WebUI service is offered commented out"
    for line in ("OLLAMA_BASE_URL=http://llamaman:42069", "OPENAI_API_BASE_URLS=http://llamaman:42069/v1",
                 "OPENAI_API_KEYS="):
        assert line in block.group(1)
    assert "#   resources:" in text and "#           capabilities: [utility]" in text
