"""Runtime value types, exit reasons, runtime selection and the pure parts of both runtimes."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaman.config import Config
from llamaman.errors import Invalid
from llamaman.runtime import LaunchFailed, UnavailableRuntime, create_runtime
from llamaman.runtime.base import LaunchSpec, RuntimeRef, exit_reason, tail_lines
from llamaman.runtime.docker import DockerRuntime
from llamaman.runtime.docker_read import started_at, stats_from_sample
from llamaman.runtime.launch_settings import LaunchSettings
from llamaman.runtime.process import ProcessRuntime
from llamaman.runtime.process_env import exited_state as _exited
from llamaman.runtime.process_env import gpu_environment


def make_config(**env: str) -> Config:
    return Config.from_env({"LLAMAMAN_NODE_NAME": "srv1", **env})


def make_spec(tmp_path: Path, **settings: object) -> LaunchSpec:
    return LaunchSpec(
        instance_id="i1",
        node="srv1",
        model_path=tmp_path / "m.gguf",
        internal_port=9000,
        api_key="key",
        settings=LaunchSettings(**settings),
        log_path=tmp_path / "i1.log",
    )


REF = RuntimeRef(
    "process", "i1", "srv1", "123", "/bin/llama-server", 9000, 1700000000.25, "/l/i1.log"
)


def test_ref_round_trips_through_json_types() -> None:
    assert RuntimeRef.from_dict(REF.to_dict()) == REF
    assert RuntimeRef.from_dict({**REF.to_dict(), "internal_port": "9000"}) == REF


@pytest.mark.parametrize(
    "bad", [{"instance_id": "../x"}, {"instance_id": ""}, {"internal_port": 0}, {"api_key": ""}]
)
def test_launch_spec_validates(tmp_path: Path, bad: dict) -> None:
    fields = {
        "instance_id": "i1",
        "node": "n",
        "model_path": tmp_path,
        "internal_port": 9000,
        "api_key": "k",
        "settings": LaunchSettings(),
        "log_path": tmp_path / "l",
        **bad,
    }
    with pytest.raises(Invalid):
        LaunchSpec(**fields)


def test_tail_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail_lines(log, 3) == ["line 97", "line 98", "line 99"]
    assert tail_lines(tmp_path / "missing.log") == []


def test_exit_reason_names_code_signal_and_log() -> None:
    assert exit_reason(1, ["error: bad model"]) == "exited with code 1:\nerror: bad model"
    assert exit_reason(137, []) == "exited with code 137 (killed by signal SIGKILL)"
    assert exit_reason(None, []) == "exited (code unknown)"
    assert exit_reason(137, ["x"], "killed: out of memory").startswith("killed: out of memory:\nx")


def test_popen_signal_codes_are_reported_like_docker(tmp_path: Path) -> None:
    ref = RuntimeRef("process", "i1", "n", "1", "b", 1, 0.0, str(tmp_path / "none.log"))
    assert _exited(-9, ref).exit_code == 137
    assert _exited(3, ref).exit_code == 3
    assert "RLIMIT_AS" not in _exited(3, ref).reason
    limited = _exited(-6, ref, 64 * 1024**2)
    assert limited.reason.startswith(
        "exited with code 134 (killed by signal SIGABRT); Memory Limit 64m"
    )
    assert "RLIMIT_AS" not in _exited(0, ref, 64 * 1024**2).reason


@pytest.mark.parametrize(
    "vendor, devices, env",
    [
        ("cuda", (0, 1), {"CUDA_VISIBLE_DEVICES": "0,1"}),
        ("rocm", (2,), {"ROCR_VISIBLE_DEVICES": "2"}),
        (None, (1,), {"CUDA_VISIBLE_DEVICES": "1", "ROCR_VISIBLE_DEVICES": "1"}),
        ("cuda", None, {}),
    ],
)
def test_process_gpu_environment(vendor: str | None, devices: tuple | None, env: dict) -> None:
    assert gpu_environment(vendor, devices) == env


def test_process_intel_refuses_gpu_devices() -> None:
    with pytest.raises(Invalid, match="Intel Arc"):
        gpu_environment("intel", (0,))


def test_process_environment_carries_identity_and_key_but_not_manager_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_KEY", "s3cret")
    monkeypatch.setenv("DATABASE_URL", "mysql://u:p@h/db")
    monkeypatch.setenv("GGML_CUDA_NO_PINNED", "1")
    runtime = ProcessRuntime(make_config(LLAMA_GPU_DEVICES="1"), vendor_probe=lambda: "cuda")
    env = runtime.environment(make_spec(tmp_path))
    assert env["LLAMAMAN_INSTANCE_ID"] == "i1"
    assert env["LLAMAMAN_NODE"] == "srv1"
    assert env["LLAMAMAN_INTERNAL_PORT"] == "9000"
    assert env["LLAMA_API_KEY"] == "key"
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["GGML_CUDA_NO_PINNED"] == "1"
    assert "SECRET_KEY" not in env and "DATABASE_URL" not in env


def test_process_command_listens_on_loopback_only(tmp_path: Path) -> None:
    command = ProcessRuntime(make_config()).command(make_spec(tmp_path, threads=2))
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--threads") + 1] == "2"
    assert "key" not in command


def test_process_missing_binary_says_how_to_get_it(tmp_path: Path) -> None:
    runtime = ProcessRuntime(
        make_config(LLAMA_SERVER_BIN=str(tmp_path / "nope"), MODELS_DIR=str(tmp_path))
    )
    with pytest.raises(LaunchFailed) as info:
        runtime.launch(make_spec(tmp_path))
    assert "LLAMA_SERVER_BIN" in info.value.message
    assert "llama.cpp" in info.value.message


def test_process_refuses_models_outside_models_dir(tmp_path: Path) -> None:
    runtime = ProcessRuntime(make_config(MODELS_DIR=str(tmp_path / "models")))
    with pytest.raises(Invalid, match="not inside MODELS_DIR"):
        runtime.launch(make_spec(tmp_path))


def test_create_runtime_honours_the_mode(tmp_path: Path) -> None:
    def no_probe() -> str | None:
        raise AssertionError("explicit modes must not probe Docker")

    assert isinstance(
        create_runtime(make_config(LLAMAMAN_RUNTIME="docker"), no_probe), DockerRuntime
    )
    assert isinstance(
        create_runtime(make_config(LLAMAMAN_RUNTIME="process"), no_probe), ProcessRuntime
    )


def test_auto_prefers_docker_then_binary_then_explains(tmp_path: Path) -> None:
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert isinstance(create_runtime(make_config(), lambda: None), DockerRuntime)
    with_bin = make_config(LLAMA_SERVER_BIN=str(binary))
    assert isinstance(create_runtime(with_bin, lambda: "no engine"), ProcessRuntime)
    without = create_runtime(
        make_config(LLAMA_SERVER_BIN=str(tmp_path / "missing")), lambda: "no engine here"
    )
    assert isinstance(without, UnavailableRuntime)
    with pytest.raises(LaunchFailed) as info:
        without.launch(make_spec(tmp_path))
    for hint in ("no engine here", "DOCKER_HOST", "docker pull", "LLAMA_SERVER_BIN"):
        assert hint in info.value.message
    assert without.discover() == []
    assert without.state(REF).status == "missing"


def test_docker_runtime_connects_on_first_use_only() -> None:
    calls = []
    runtime = DockerRuntime(make_config(), connect=lambda: calls.append(1))
    assert calls == []
    runtime.set_exit_listener(None)
    runtime.close()
    assert calls == []


def test_docker_runtime_unreachable_engine_is_a_clear_launch_failure(tmp_path: Path) -> None:
    from docker.errors import DockerException

    def refuse() -> None:
        raise DockerException("Error while fetching server API version: connection refused")

    runtime = DockerRuntime(
        make_config(LLAMAMAN_IN_DOCKER="false", GPU_TYPE="cuda"), connect=refuse
    )
    with pytest.raises(LaunchFailed, match="Docker API error: cannot reach the Docker engine"):
        runtime.client()


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("2024-05-01T10:00:00.5Z", 1714557600.5),
        ("2024-05-01T10:00:00.123456789Z", 1714557600.123456),
        ("2024-05-01T10:00:00Z", 1714557600.0),
        ("0001-01-01T00:00:00Z", 0.0),
        ("", 0.0),
    ],
)
def test_docker_started_at(raw: str, expected: float) -> None:
    assert started_at({"State": {"StartedAt": raw}}) == pytest.approx(expected)


def test_docker_stats_from_samples() -> None:
    host_config = {"NanoCpus": 2_000_000_000, "Memory": 512 * 1024**2}

    def sample(usage: int, system: int) -> dict:
        cpu = {"cpu_usage": {"total_usage": usage}, "system_cpu_usage": system, "online_cpus": 4}
        return {"cpu_stats": cpu, "memory_stats": {"usage": 300, "stats": {"inactive_file": 100}}}

    first = stats_from_sample(sample(1000, 10_000), None, host_config)
    assert first.cpu_percent is None
    assert (first.cpu_quota, first.mem_used, first.mem_limit) == (2.0, 200, 512 * 1024**2)
    second = stats_from_sample(sample(1500, 12_000), (1000, 10_000), host_config)
    assert second.cpu_percent == 100.0  # 500/2000 of 4 cores = one core
    unlimited = stats_from_sample(sample(1, 1), None, {})
    assert (unlimited.cpu_quota, unlimited.mem_limit) == (None, None)
    assert stats_from_sample({}, None, {}).mem_used is None
