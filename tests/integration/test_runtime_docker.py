"""DockerRuntime against the real engine, the local llama.cpp image and the real gemma GGUF."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llamaman.config import Config
from llamaman.runtime.base import LaunchFailed, LaunchSpec, RuntimeRef
from llamaman.runtime.docker import DockerRuntime
from llamaman.runtime.docker_spec import (
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_PORT,
)
from tests.helpers import (
    TEST_LABELS,
    assert_serves_chat,
    make_spec,
    wait_http,
)
from tests.runtimekit import Exits

NODE = "rt-docker-node"
NETWORK = "llamaman-rt-test"
PREFIX = "llamaman-rt-"
GIB = 1024**3


def make_config(tmp: Path, models: Path, image: str, **env: str) -> Config:
    logs = tmp / "logs"
    logs.mkdir(exist_ok=True)
    return Config.from_env(
        {
            "LLAMAMAN_NODE_NAME": NODE,
            "MODELS_DIR": str(models),
            "HOST_MODELS_DIR": str(models),
            "LOGS_DIR": str(logs),
            "HOST_LOGS_DIR": str(logs),
            "DATA_DIR": str(tmp / "data"),
            "LLAMA_IMAGE": image,
            "LLAMA_NETWORK": NETWORK,
            "LLAMA_CONTAINER_PREFIX": PREFIX,
            "LLAMAMAN_IN_DOCKER": "false",
            "LLAMAMAN_RUNTIME": "docker",
            **env,
        }
    )


def new_runtime(config: Config) -> DockerRuntime:
    return DockerRuntime(config, extra_labels=TEST_LABELS)


def wait_healthy(runtime: DockerRuntime, ref: RuntimeRef, timeout: float = 60) -> None:
    host, port = runtime.upstream(ref)
    try:
        wait_http(f"http://{host}:{port}/health", timeout=timeout, interval=0.05)
    except TimeoutError:
        pytest.fail(f"llama-server did not become healthy: {runtime.state(ref)}")


@pytest.fixture(scope="module")
def env(
    docker_client: Any, llama_image: str, model_path: Path, tmp_path_factory
) -> Iterator[Config]:
    config = make_config(tmp_path_factory.mktemp("docker"), model_path.parent, llama_image)
    yield config
    for container in docker_client.containers.list(
        all=True, filters={"label": f"{LABEL_NODE}={NODE}"}
    ):
        container.remove(force=True)
    for network in docker_client.networks.list(names=[NETWORK]):
        if network.name == NETWORK:
            network.remove()


@pytest.fixture(scope="module")
def runtime(env: Config) -> Iterator[DockerRuntime]:
    runtime = new_runtime(env)
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def served(
    runtime: DockerRuntime, env: Config, model_path: Path
) -> Iterator[tuple[RuntimeRef, LaunchSpec, str]]:
    spec = make_spec(
        env, model_path, "served", threads=2, ctx_size=512, parallel=1, memory_limit="1g"
    )
    ref = runtime.launch(spec)
    wait_healthy(runtime, ref)
    host, port = runtime.upstream(ref)
    yield ref, spec, f"http://{host}:{port}"
    runtime.stop(ref, grace_s=2)


@pytest.mark.timeout(60)
def test_served_answers_a_chat_completion(served) -> None:
    _, spec, url = served
    assert_serves_chat(url, spec)


@pytest.mark.timeout(60)
def test_container_matches_the_spec(docker_client: Any, served, env: Config) -> None:
    ref, spec, _ = served
    attrs = docker_client.containers.get(ref.handle).attrs
    assert attrs["Name"] == f"/{PREFIX}served"
    labels = attrs["Config"]["Labels"]
    assert labels[LABEL_MANAGED] == "1" and labels[LABEL_NODE] == NODE
    assert labels[LABEL_INSTANCE] == "served" and labels[LABEL_PORT] == str(spec.internal_port)
    assert labels["llamaman.test"] == "1"
    host_config = attrs["HostConfig"]
    assert host_config["NanoCpus"] == 2 * 10**9
    assert host_config["Memory"] == GIB
    assert f"{env.host_models_dir}:/models:ro" in host_config["Binds"]
    assert f"{env.host_logs_dir}:/logs:rw" in host_config["Binds"]
    assert not host_config.get("DeviceRequests") and not host_config.get("Devices")
    assert host_config["PortBindings"] == {
        f"{spec.internal_port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(spec.internal_port)}]
    }
    published = attrs["NetworkSettings"]["Ports"][f"{spec.internal_port}/tcp"]
    assert {p["HostIp"] for p in published} == {"127.0.0.1"}
    assert NETWORK in attrs["NetworkSettings"]["Networks"]
    command = attrs["Config"]["Cmd"]
    assert command[:6] == [
        "--model",
        f"/models/{spec.model_path.name}",
        "--host",
        "0.0.0.0",
        "--port",
        str(spec.internal_port),
    ]
    assert command[command.index("--threads") + 1] == "2"
    assert spec.api_key not in command
    assert f"LLAMA_API_KEY={spec.api_key}" in attrs["Config"]["Env"]


@pytest.mark.timeout(60)
def test_stats_are_sane(runtime: DockerRuntime, served) -> None:
    ref, _, _ = served
    first = runtime.stats(ref)
    time.sleep(1.1)  # the engine samples about once a second
    second = runtime.stats(ref)
    assert first is not None and second is not None
    assert second.cpu_percent is not None and 0 <= second.cpu_percent <= 400
    assert second.cpu_quota == 2.0
    assert second.mem_limit == GIB
    assert 20 * 1024**2 < second.mem_used < GIB


@pytest.mark.timeout(60)
def test_discover_finds_this_node_only(
    docker_client: Any, runtime: DockerRuntime, served, llama_image: str
) -> None:
    ref, _, _ = served
    other = docker_client.containers.create(
        llama_image,
        command=["--version"],
        name=f"{PREFIX}other-node-x",
        labels={
            **TEST_LABELS,
            LABEL_MANAGED: "1",
            LABEL_NODE: "other-node",
            LABEL_INSTANCE: "x",
            LABEL_PORT: "1",
        },
    )
    try:
        found = {d.ref.instance_id: d for d in runtime.discover()}
        assert "x" not in found
        assert found["served"].ref == ref
        assert found["served"].state.running
    finally:
        other.remove(force=True)


@pytest.mark.timeout(60)
def test_missing_image_is_a_clear_error(env: Config, model_path: Path, tmp_path: Path) -> None:
    config = make_config(tmp_path, model_path.parent, "llamaman-test/no-such-image:0")
    with pytest.raises(LaunchFailed) as info:
        new_runtime(config).launch(make_spec(config, model_path, "noimage"))
    assert "Docker image not found: llamaman-test/no-such-image:0" in info.value.message
    assert "docker pull llamaman-test/no-such-image:0" in info.value.message


@pytest.mark.timeout(60)
def test_taken_port_fails_cleanly(
    docker_client: Any, runtime: DockerRuntime, env: Config, model_path: Path
) -> None:
    spec = make_spec(env, model_path, "porttaken")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", spec.internal_port))
        blocker.listen()
        with pytest.raises(LaunchFailed, match="cannot start"):
            runtime.launch(spec)
    assert not docker_client.containers.list(all=True, filters={"name": f"{PREFIX}porttaken"})


@pytest.mark.timeout(60)
def test_bad_model_exits_with_the_log_as_reason(llama_image: str, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken.gguf").write_bytes(b"this is not a gguf file" * 100)
    config = make_config(tmp_path, models, llama_image)
    runtime = new_runtime(config)
    exits = Exits()
    runtime.set_exit_listener(exits)
    ref = runtime.launch(make_spec(config, models / "broken.gguf", "broken", threads=1))
    _, state = exits.wait(30)
    assert state.status == "exited" and state.exit_code not in (0, None), state
    assert "model" in state.reason.lower()
    assert len(state.reason.splitlines()) > 1
    runtime.stop(ref, grace_s=0)
    runtime.close()


@pytest.mark.timeout(60)
def test_in_docker_mode_publishes_nothing(
    docker_client: Any, llama_image: str, model_path: Path, tmp_path: Path
) -> None:
    config = make_config(tmp_path, model_path.parent, llama_image, LLAMAMAN_IN_DOCKER="true")
    runtime = new_runtime(config)
    spec = make_spec(config, model_path, "indocker", threads=1)
    ref = runtime.launch(spec)
    try:
        attrs = docker_client.containers.get(ref.handle).attrs
        assert not attrs["HostConfig"]["PortBindings"]
        assert NETWORK in attrs["NetworkSettings"]["Networks"]
        assert runtime.upstream(ref) == (f"{PREFIX}indocker", spec.internal_port)
    finally:
        runtime.stop(ref, grace_s=0)
        runtime.close()
