"""ProcessRuntime with real child processes: a stub server for process mechanics, and the
real llama-server binary with the real gemma GGUF for the serving contract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from llamaman.config import Config
from llamaman.runtime.base import LaunchSpec, RuntimeRef
from llamaman.runtime.process import ProcessRuntime
from tests.helpers import assert_serves_chat, make_spec, wait_http
from tests.runtimekit import Exits

NODE = "rt-proc-node"
STUB_NODE = "rt-proc-stub"  # apart from NODE: stub teardowns stop what their node runs
REPO = Path(__file__).resolve().parents[2]
STUB = textwrap.dedent(
    """\
    #!{python}
    import json, os, resource, signal, subprocess, sys, time
    args = sys.argv[1:]
    mode = args[args.index("--stub-mode") + 1] if "--stub-mode" in args else ""
    env = {{k: v for k, v in os.environ.items() if k.startswith(("LLAMA", "CUDA", "SECRET"))}}
    info = {{"argv": args, "pgid": os.getpgid(0), "sid": os.getsid(0), "env": env,
            "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0]}}
    print("stub start " + json.dumps(info), flush=True)
    print("stub says hello on stderr", file=sys.stderr, flush=True)
    if "ignore-term" in mode:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "grandchild" in mode:
        child = subprocess.Popen(["sleep", "60"])
        print("grandchild", child.pid, flush=True)
    if "exit3" in mode:
        print("fatal: stub gives up", flush=True)
        sys.exit(3)
    time.sleep(60)
    """
)


def make_config(tmp: Path, binary: str, models: Path, node: str = NODE) -> Config:
    return Config.from_env(
        {
            "LLAMAMAN_NODE_NAME": node,
            "MODELS_DIR": str(models),
            "LOGS_DIR": str(tmp / "logs"),
            "DATA_DIR": str(tmp / "data"),
            "LLAMA_SERVER_BIN": binary,
            "LLAMAMAN_RUNTIME": "process",
        }
    )


def stub_info(log_path: Path, timeout: float = 10.0) -> dict:
    """Wait for the stub's start line in the log and return its JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines() if log_path.exists() else []:
            if line.startswith("stub start "):
                return json.loads(line[len("stub start ") :])
        time.sleep(0.02)
    raise AssertionError(
        f"stub did not start; log: {log_path.read_text() if log_path.exists() else ''}"
    )


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still runs")


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[tuple[ProcessRuntime, Config, Path]]:
    binary = tmp_path / "bin" / "llama-server"
    binary.parent.mkdir()
    binary.write_text(STUB.format(python=sys.executable))
    binary.chmod(0o755)
    models = tmp_path / "models"
    models.mkdir()
    (models / "m.gguf").write_bytes(b"GGUF")
    config = make_config(tmp_path, str(binary), models, node=STUB_NODE)
    runtime = ProcessRuntime(config)
    yield runtime, config, models / "m.gguf"
    for found in runtime.discover():
        runtime.stop(found.ref, grace_s=0)
    runtime.close()


# -- process mechanics, with a stub server (always runs)


@pytest.mark.timeout(30)
def test_child_gets_args_identity_key_and_own_session(
    stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, config, model = stub
    monkeypatch.setenv("SECRET_KEY", "manager-secret")
    spec = make_spec(config, model, "stub1", threads=2, memory_limit="512m")
    ref = runtime.launch(spec)
    info = stub_info(spec.log_path)
    argv = info["argv"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == str(spec.internal_port)
    assert argv[argv.index("--threads") + 1] == "2"
    assert spec.api_key not in argv
    assert info["env"]["LLAMA_API_KEY"] == spec.api_key
    assert "SECRET_KEY" not in info["env"]
    assert info["pgid"] == info["sid"] == int(ref.handle)
    assert info["rlimit_as"] == 512 * 1024**2
    assert runtime.state(ref).running
    assert runtime.upstream(ref) == ("127.0.0.1", spec.internal_port)
    assert "stub says hello on stderr" in spec.log_path.read_text()


@pytest.mark.timeout(30)
def test_stop_escalates_to_sigkill_and_kills_the_group(stub) -> None:
    runtime, config, model = stub
    exits = Exits()
    runtime.set_exit_listener(exits)
    spec = make_spec(config, model, "stub2", extra_args=("--stub-mode", "ignore-term,grandchild"))
    ref = runtime.launch(spec)
    stub_info(spec.log_path)
    grandchild = _grandchild_pid(spec.log_path)
    started = time.monotonic()
    final = runtime.stop(ref, grace_s=0.5)
    assert time.monotonic() - started >= 0.5
    assert (final.status, final.exit_code) == ("exited", 137)
    wait_gone(grandchild)
    assert not exits.arrived.wait(0.3), "stop() must not be reported as a crash"


@pytest.mark.timeout(30)
def test_exit_is_reported_with_code_and_log_tail(stub) -> None:
    runtime, config, model = stub
    exits = Exits()
    runtime.set_exit_listener(exits)
    spec = make_spec(config, model, "stub3", extra_args=("--stub-mode", "exit3"))
    ref = runtime.launch(spec)
    reported_ref, state = exits.wait()
    assert reported_ref == ref
    assert (state.status, state.exit_code) == ("exited", 3)
    assert "exited with code 3" in state.reason
    assert "fatal: stub gives up" in state.reason
    assert runtime.state(ref) == state


@pytest.mark.timeout(30)
def test_a_reused_pid_is_not_mistaken_for_the_instance(stub) -> None:
    runtime, config, model = stub
    ref = runtime.launch(make_spec(config, model, "stub4"))
    other_runtime = ProcessRuntime(config)  # a restarted manager: not the parent
    impostor = RuntimeRef(**{**ref.to_dict(), "started_at": ref.started_at - 100})
    assert other_runtime.state(impostor).status == "missing"
    assert other_runtime.stop(impostor, grace_s=0).status == "missing"
    assert runtime.state(ref).running, "stopping a stale ref must not kill the new owner of the pid"


@pytest.mark.timeout(60)
def test_restarted_manager_discovers_adopts_and_sees_the_kill(stub, tmp_path: Path) -> None:
    runtime, config, model = stub
    ref = _launch_from_a_manager_that_exits(config, model, "stub5")
    foreign_config = make_config(
        tmp_path / "other", config.llama_server_bin, config.models_dir, node="other-node"
    )
    foreign = ProcessRuntime(foreign_config).launch(make_spec(foreign_config, model, "stub6"))
    try:
        found = {d.ref.instance_id: d for d in runtime.discover()}
        assert "stub6" not in found, "another node's process must be left alone"
        assert found["stub5"].ref == ref
        assert found["stub5"].state.running
        exits = Exits()
        runtime.set_exit_listener(exits)
        runtime.adopt(ref)
        os.kill(int(ref.handle), signal.SIGKILL)
        reported, state = exits.wait()
        assert reported == ref
        assert not state.running
    finally:
        os.killpg(int(foreign.handle), signal.SIGKILL)


def _launch_from_a_manager_that_exits(config: Config, model: Path, instance_id: str) -> RuntimeRef:
    """Launch through a separate manager process that then exits, as before a restart."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from llamaman.config import Config
        from llamaman.runtime.process import ProcessRuntime
        from tests.integration.test_runtime_process import make_spec
        config = Config.from_env(json.loads(sys.argv[1]))
        spec = make_spec(config, Path({str(model)!r}), {instance_id!r})
        ref = ProcessRuntime(config).launch(spec)
        print(json.dumps(ref.to_dict()))
        """
    )
    env = {
        "LLAMAMAN_NODE_NAME": config.node_name,
        "MODELS_DIR": str(config.models_dir),
        "LOGS_DIR": str(config.logs_dir),
        "DATA_DIR": str(config.data_dir),
        "LLAMA_SERVER_BIN": config.llama_server_bin,
    }
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(env)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return RuntimeRef.from_dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _grandchild_pid(log_path: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_path.read_text().splitlines():
            if line.startswith("grandchild "):
                return int(line.split()[1])
        time.sleep(0.02)
    raise AssertionError("the stub did not start its grandchild")


# -- the real llama-server with the real model


@pytest.fixture(scope="module")
def real(
    llama_server_bin: str, model_path: Path, tmp_path_factory
) -> Iterator[tuple[ProcessRuntime, Config]]:
    config = make_config(tmp_path_factory.mktemp("proc"), llama_server_bin, model_path.parent)
    runtime = ProcessRuntime(config)
    yield runtime, config
    for found in runtime.discover():
        runtime.stop(found.ref, grace_s=2)
    runtime.close()


@pytest.fixture(scope="module")
def served(real, model_path: Path) -> Iterator[tuple[RuntimeRef, LaunchSpec, str]]:
    runtime, config = real
    spec = make_spec(
        config, model_path, "served", threads=2, ctx_size=512, parallel=1, memory_limit="4g"
    )
    ref = runtime.launch(spec)
    host, port = runtime.upstream(ref)
    try:
        wait_http(f"http://{host}:{port}/health", timeout=60, interval=0.05)
    except TimeoutError:
        pytest.fail(
            f"llama-server did not become healthy: {runtime.state(ref)}\n"
            + spec.log_path.read_text()
        )
    yield ref, spec, f"http://{host}:{port}"
    runtime.stop(ref, grace_s=5)


@pytest.mark.timeout(60)
def test_real_server_answers_a_chat_completion(served) -> None:
    _, spec, url = served
    assert_serves_chat(url, spec)


@pytest.mark.timeout(60)
def test_real_server_process_shape_and_stats(real, served) -> None:
    runtime, _ = real
    ref, spec, _ = served
    proc = psutil.Process(int(ref.handle))
    assert os.getpgid(proc.pid) == proc.pid, "llama-server leads its own process group"
    assert spec.api_key not in " ".join(proc.cmdline())
    assert proc.rlimit(psutil.RLIMIT_AS)[0] == 4 * 1024**3
    listening = {c.laddr for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", spec.internal_port)}
    first = runtime.stats(ref)
    time.sleep(0.2)
    second = runtime.stats(ref)
    assert first is not None and second is not None
    assert first.cpu_percent is None and second.cpu_percent is not None and second.cpu_percent >= 0
    assert 50 * 1024**2 < second.mem_used < 4 * 1024**3
    assert second.mem_limit == 4 * 1024**3
    assert second.cpu_quota is None
    assert "llama" in spec.log_path.read_text(errors="replace").lower()


@pytest.mark.timeout(60)
def test_real_server_with_too_small_memory_limit_fails_with_a_reason(
    real, model_path: Path
) -> None:
    runtime, config = real
    exits = Exits()
    runtime.set_exit_listener(exits)
    ref = runtime.launch(
        make_spec(config, model_path, "tiny", threads=1, ctx_size=256, memory_limit="64m")
    )
    _, state = exits.wait(30)
    runtime.set_exit_listener(None)
    assert state.status == "exited" and state.exit_code != 0, state
    assert len(state.reason.splitlines()) > 1, "the reason carries the last log lines"
    assert "Memory Limit 64m is enforced as RLIMIT_AS" in state.reason
    assert runtime.state(ref) == state

