"""LocalAI's /backend/monitor memory breakdown at llama-server's default verbosity (estimated from the
GGUF) against the figures the same llama-server reports at --log-verbosity 4, real native llama-server."""
import re

import pytest

from tests.e2e.instancekit import runtime_env, start_manager, stop_all

pytestmark = pytest.mark.timeout(600)

MIB = 2**20
LOGGED = re.compile(r"(CPU_Mapped|CPU_REPACK|CPU) +(model|KV) buffer size = +([\d.]+) MiB")
ROUNDING = 0.005 * MIB  # llama-server prints each buffer in MiB with two decimals


@pytest.fixture(scope="module")
def manager(request, tmp_path_factory, models_dir):
    manager = start_manager(tmp_path_factory.mktemp("memory"), runtime_env("process", request, models_dir, ports=27400))
    yield manager
    stop_all(manager)


def monitor(manager, name):
    response = manager.api.post(manager.url("/backend/monitor"), json={"model": name})
    assert response.status_code == 200, response.text
    return response.json()


def logged(manager, instance_id, buffer):
    """The MiB figures of one kind of buffer line the verbose instance logged, REPACK copies aside."""
    found = [LOGGED.search(line) for line in manager.logs(instance_id, 2000).splitlines()]
    return [float(m.group(3)) for m in found if m and m.group(2) == buffer and m.group(1) != "CPU_REPACK"]


def test_default_verbosity_estimate_agrees_with_the_verbose_report(manager, model_path):
    settings = {"extra_args": "--cache-type-k q8_0"}  # a quantised K cache: the estimate must honour it
    quiet = manager.launch(model_path, name="quiet", **settings)
    loud = manager.launch(model_path, name="loud", environment={"LLAMA_ARG_LOG_VERBOSITY": "4"}, **settings)
    manager.wait_status(quiet["id"], "healthy")
    manager.wait_status(loud["id"], "healthy")

    estimated, reported = monitor(manager, "quiet"), monitor(manager, "loud")
    assert estimated["state"] == 2 and set(estimated["memory"]) >= {"total", "breakdown"}
    assert estimated["memory"]["sources"] == {"weights": "estimated", "kv_cache": "estimated"}
    assert estimated["memory"]["total"] == sum(estimated["memory"]["breakdown"].values())
    assert {"weights", "kv_cache", "compute_buffers"} <= set(reported["memory"]["breakdown"])
    assert set(reported["memory"]["sources"].values()) == {"reported"}

    kv_lines, weight_lines = logged(manager, loud["id"], "KV"), logged(manager, loud["id"], "model")
    assert kv_lines and weight_lines
    kv, weights = estimated["memory"]["breakdown"]["kv_cache"], estimated["memory"]["breakdown"]["weights"]
    assert abs(kv - sum(kv_lines) * MIB) <= ROUNDING * len(kv_lines)
    assert abs(reported["memory"]["breakdown"]["kv_cache"] - kv) <= ROUNDING * len(kv_lines)
    assert abs(weights - sum(weight_lines) * MIB) <= ROUNDING * len(weight_lines)
    f16 = manager.launch(model_path, name="f16")  # the same model, f16 cache: K takes 64/34 as much
    manager.wait_status(f16["id"], "healthy")
    assert monitor(manager, "f16")["memory"]["breakdown"]["kv_cache"] > kv
