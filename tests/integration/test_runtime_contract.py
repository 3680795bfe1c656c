"""The Runtime contract, run against every runtime: Docker (real engine), process (real
llama-server) and the fake of tests/fakes (which unit tests may trust because it passes here).

Each runtime comes with a driver that does what the outside world does: ask /health, send a
request, kill the server from outside, check that nothing of it is left.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from llamaman.config import Config
from llamaman.runtime.base import LaunchSpec, Runtime, RuntimeRef
from llamaman.runtime.docker import DockerRuntime
from llamaman.runtime.process import ProcessRuntime
from tests.fakes.runtime import FakeHost, FakeRuntime
from tests.helpers import TEST_LABELS, make_spec
from tests.runtimekit import Exits, read_text, wait_for_text, wait_until

NODE = "rt-contract"
NETWORK = "llamaman-rtc-test"
PREFIX = "llamaman-rtc-"
LOAD_TIMEOUT_S = 90  # a hang guard for loading the model on a busy machine
SIGKILL_CODE = 137
SAME_START_S = 0.05  # a pid with another start time is another process


def make_config(tmp: Path, models: Path, **env: str) -> Config:
    logs = tmp / "logs"
    logs.mkdir(exist_ok=True)
    return Config.from_env({
        "LLAMAMAN_NODE_NAME": NODE, "MODELS_DIR": str(models), "HOST_MODELS_DIR": str(models),
        "LOGS_DIR": str(logs), "HOST_LOGS_DIR": str(logs), "DATA_DIR": str(tmp / "data"),
        "LLAMA_NETWORK": NETWORK, "LLAMA_CONTAINER_PREFIX": PREFIX, "LLAMAMAN_IN_DOCKER": "false",
        **env,
    })


class Driver:
    """What the outside world does to one kind of runtime's llama-servers."""

    adopted_kill_code: int | None = SIGKILL_CODE  # the exit code seen after killing an adopted one

    def __init__(self, config: Config, model: Path) -> None:
        self.config = config
        self.model = model

    def new_runtime(self) -> Runtime:
        raise NotImplementedError

    def spec(self, instance_id: str) -> LaunchSpec:
        return make_spec(self.config, self.model, instance_id, threads=1, ctx_size=256, parallel=1)

    def health(self, runtime: Runtime, ref: RuntimeRef) -> int | None:
        """The status /health answers, None when nothing answers."""
        return self._get(runtime, ref, "/health", {})

    def request(self, runtime: Runtime, ref: RuntimeRef, key: str | None) -> int | None:
        """GET /v1/models with key as bearer token (or none); the status code."""
        return self._get(runtime, ref, "/v1/models", {"Authorization": f"Bearer {key}"} if key else {})

    def models(self, runtime: Runtime, ref: RuntimeRef, key: str) -> list[Any]:
        """The model list /v1/models answers with the key."""
        host, port = runtime.upstream(ref)
        return requests.get(f"http://{host}:{port}/v1/models", headers={"Authorization": f"Bearer {key}"},
                            timeout=10).json()["data"]

    def kill(self, ref: RuntimeRef) -> None:
        raise NotImplementedError

    def gone(self, ref: RuntimeRef) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        """Remove whatever the tests left on the node."""
        runtime = self.new_runtime()
        for found in runtime.discover():
            runtime.stop(found.ref, grace_s=0)
        runtime.close()

    @staticmethod
    def _get(runtime: Runtime, ref: RuntimeRef, path: str, headers: dict[str, str]) -> int | None:
        host, port = runtime.upstream(ref)
        try:
            return requests.get(f"http://{host}:{port}{path}", headers=headers, timeout=10).status_code
        except requests.ConnectionError:
            return None


class ProcessDriver(Driver):
    # An adopted process is not our child: its exit code cannot be read, only that it is gone.
    adopted_kill_code = None

    def new_runtime(self) -> Runtime:
        return ProcessRuntime(self.config)

    def kill(self, ref: RuntimeRef) -> None:
        os.kill(int(ref.handle), signal.SIGKILL)

    def gone(self, ref: RuntimeRef) -> bool:
        try:
            return abs(psutil.Process(int(ref.handle)).create_time() - ref.started_at) > SAME_START_S
        except psutil.NoSuchProcess:
            return True


class DockerDriver(Driver):
    def __init__(self, config: Config, model: Path, client: Any) -> None:
        super().__init__(config, model)
        self.client = client

    def new_runtime(self) -> Runtime:
        return DockerRuntime(self.config, extra_labels=TEST_LABELS)

    def kill(self, ref: RuntimeRef) -> None:
        self.client.containers.get(ref.handle).kill()

    def gone(self, ref: RuntimeRef) -> bool:
        return not self.client.containers.list(all=True, filters={"id": ref.handle})

    def close(self) -> None:
        super().close()
        for network in self.client.networks.list(names=[NETWORK]):
            if network.name == NETWORK:
                network.remove()


class FakeDriver(Driver):
    def __init__(self, config: Config, model: Path) -> None:
        super().__init__(config, model)
        self.host = FakeHost()

    def new_runtime(self) -> Runtime:
        return FakeRuntime(self.host, self.config.node_name)

    def health(self, runtime: Runtime, ref: RuntimeRef) -> int | None:
        return 200 if self.host.healthy(ref) else None

    def request(self, runtime: Runtime, ref: RuntimeRef, key: str | None) -> int | None:
        return self.host.request(ref, key or "")

    def models(self, runtime: Runtime, ref: RuntimeRef, key: str) -> list[Any]:
        return self.host.models(ref, key)

    def kill(self, ref: RuntimeRef) -> None:
        self.host.kill(ref)

    def gone(self, ref: RuntimeRef) -> bool:
        return self.host.server(ref) is None


def build_driver(kind: str, request: pytest.FixtureRequest, tmp: Path) -> Driver:
    if kind == "fake":
        models = tmp / "models"
        models.mkdir()
        (models / "fake.gguf").write_bytes(b"GGUF")
        return FakeDriver(make_config(tmp, models), models / "fake.gguf")
    model: Path = request.getfixturevalue("model_path")
    if kind == "process":
        binary = request.getfixturevalue("llama_server_bin")
        config = make_config(tmp, model.parent, LLAMA_SERVER_BIN=binary, LLAMAMAN_RUNTIME="process")
        return ProcessDriver(config, model)
    client = request.getfixturevalue("docker_client")
    image = request.getfixturevalue("llama_image")
    config = make_config(tmp, model.parent, LLAMA_IMAGE=image, LLAMAMAN_RUNTIME="docker")
    return DockerDriver(config, model, client)


@pytest.fixture(scope="module", params=["fake", "process", "docker"])
def driver(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    built = build_driver(request.param, request, tmp_path_factory.mktemp(f"contract-{request.param}"))
    yield built
    built.close()


@pytest.fixture(scope="module")
def runtime(driver: Driver) -> Iterator[Runtime]:
    runtime = driver.new_runtime()
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def served(driver: Driver, runtime: Runtime) -> Iterator[tuple[RuntimeRef, LaunchSpec]]:
    spec = driver.spec("served")
    ref = runtime.launch(spec)
    wait_healthy(driver, runtime, ref)
    yield ref, spec
    runtime.stop(ref, grace_s=2)


def wait_healthy(driver: Driver, runtime: Runtime, ref: RuntimeRef) -> None:
    wait_until(lambda: driver.health(runtime, ref) == 200 or not runtime.state(ref).running,
               LOAD_TIMEOUT_S, "llama-server neither became healthy nor exited")
    assert driver.health(runtime, ref) == 200, f"llama-server exited while loading: {runtime.state(ref)}"


@pytest.fixture
def exits(runtime: Runtime) -> Iterator[Exits]:
    exits = Exits()
    runtime.set_exit_listener(exits)
    yield exits
    runtime.set_exit_listener(None)


# -- launch, health, logs, stats, discovery: one server, loaded once per runtime


@pytest.mark.timeout(120)
def test_launch_returns_a_ref_that_finds_the_server(runtime: Runtime, served) -> None:
    ref, spec = served
    assert (ref.kind, ref.instance_id, ref.node) == (runtime.kind, "served", NODE)
    assert (ref.internal_port, ref.log_path) == (spec.internal_port, str(spec.log_path))
    assert RuntimeRef.from_dict(ref.to_dict()) == ref
    assert runtime.upstream(ref) == ("127.0.0.1", spec.internal_port)
    assert runtime.state(ref).running


@pytest.mark.timeout(60)
def test_healthy_server_serves_only_the_internal_key(driver: Driver, runtime: Runtime, served) -> None:
    ref, spec = served
    assert driver.health(runtime, ref) == 200
    assert driver.request(runtime, ref, None) == 401
    assert driver.request(runtime, ref, "wrong") == 401
    assert driver.request(runtime, ref, spec.api_key) == 200
    assert driver.models(runtime, ref, spec.api_key)


@pytest.mark.timeout(60)
def test_server_output_reaches_the_instance_log(served) -> None:
    _, spec = served
    wait_for_text(spec.log_path, "listening")
    assert "model loaded" in read_text(spec.log_path)


@pytest.mark.timeout(60)
def test_stats_are_numbers_of_the_right_kind(runtime: Runtime, served) -> None:
    ref, _ = served
    samples = []

    def sampled_cpu() -> bool:
        samples.append(runtime.stats(ref))
        return samples[-1] is not None and samples[-1].cpu_percent is not None

    wait_until(sampled_cpu, 10, f"no CPU figure in {samples[-1:]}")
    stats = samples[-1]
    assert isinstance(stats.cpu_percent, float) and stats.cpu_percent >= 0
    assert isinstance(stats.mem_used, int) and stats.mem_used > 0
    assert stats.mem_limit is None or (isinstance(stats.mem_limit, int) and stats.mem_limit >= stats.mem_used)
    assert stats.cpu_quota is None or stats.cpu_quota > 0


@pytest.mark.timeout(60)
def test_discover_finds_the_running_server(runtime: Runtime, served) -> None:
    ref, _ = served
    found = {d.ref.instance_id: d for d in runtime.discover()}
    assert found["served"].ref == ref
    assert found["served"].state.running


# -- stop, crash, adoption: a server of their own each


@pytest.mark.timeout(120)
def test_stop_ends_the_server_quietly_and_twice_is_harmless(driver: Driver, runtime: Runtime, exits) -> None:
    ref = runtime.launch(driver.spec("stopped"))
    wait_healthy(driver, runtime, ref)
    final = runtime.stop(ref, grace_s=5)
    assert (final.status, final.exit_code) == ("exited", 0), final
    assert runtime.state(ref).status == "missing"
    wait_until(lambda: driver.gone(ref), 10, "the stopped server left something behind")
    assert runtime.stop(ref, grace_s=0).status == "missing"
    assert runtime.stats(ref) is None
    assert not exits.arrived.wait(0.3), "stop() must not be reported as a crash"


@pytest.mark.timeout(120)
def test_a_kill_from_outside_is_reported_with_code_and_reason(driver: Driver, runtime: Runtime, exits) -> None:
    ref = runtime.launch(driver.spec("killed"))
    wait_healthy(driver, runtime, ref)
    driver.kill(ref)
    reported, state = exits.wait(30)
    assert reported == ref
    assert (state.status, state.exit_code) == ("exited", SIGKILL_CODE), state
    assert "SIGKILL" in state.reason
    assert runtime.state(ref) == state
    assert runtime.stop(ref, grace_s=0).exit_code == SIGKILL_CODE
    assert runtime.state(ref).status == "missing"
    wait_until(lambda: driver.gone(ref), 10, "the killed server left something behind")


@pytest.mark.timeout(150)
def test_a_new_runtime_adopts_the_server_then_sees_it_die_and_removes_it(driver: Driver) -> None:
    first = driver.new_runtime()
    spec = driver.spec("adopted")
    ref = first.launch(spec)
    wait_healthy(driver, first, ref)
    wait_for_text(spec.log_path, "listening")
    first.close()  # the manager dies; llama-server keeps running
    second = driver.new_runtime()
    exits = Exits()
    second.set_exit_listener(exits)
    found = {d.ref.instance_id: d for d in second.discover()}
    assert found["adopted"].ref == ref and found["adopted"].state.running
    second.adopt(ref)
    assert driver.request(second, ref, "wrong") == 401
    wait_for_text(spec.log_path, "Invalid API Key")  # written after adoption: still logged
    assert read_text(spec.log_path).count("model loaded") == 1, "adoption must not repeat old lines"
    driver.kill(ref)
    reported, state = exits.wait(30)
    assert reported == ref and not state.running
    assert state.exit_code == driver.adopted_kill_code, state
    if driver.adopted_kill_code == SIGKILL_CODE:
        assert "SIGKILL" in state.reason
    assert second.state(ref) == state
    assert second.stop(ref, grace_s=1).exit_code == driver.adopted_kill_code
    assert second.state(ref).status == "missing"
    wait_until(lambda: driver.gone(ref), 10, "the adopted server left something behind")
    second.close()
