"""Pure parts of the other managers' dialects: llamactl bodies and names, execution options,
the runtime set, and llama-server's memory report."""
import pytest

from llamaman.compat import llamactl_format as fmt
from llamaman.compat.localai_memory import parse_breakdown
from llamaman.errors import Invalid
from llamaman.instances.execution import parse_execution
from llamaman.runtime.base import RuntimeRef
from llamaman.runtime.choice import RuntimeSet


@pytest.mark.parametrize("name", ["a", "my-llama_1", "x" * 50])
def test_llamactl_names_accepted(name):
    assert fmt.check_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 51, "with space", "semi;colon", "dot.ted", "ümlaut"])
def test_llamactl_names_refused(name):
    with pytest.raises(Invalid):
        fmt.check_name(name)


def test_create_body_maps_onto_a_launch_body():
    body = fmt.launch_body({
        "backend_type": "llama_cpp",
        "backend_options": {"model": "/m/a.gguf", "threads": 8, "context_size": 4096, "gpu_layers": 32,
                            "flash_attn": "on", "no_webui": True, "mlock": False},
        "auto_restart": True, "max_restarts": 3, "idle_timeout": 10, "on_demand_start": True,
        "docker_enabled": False, "command_override": "/opt/llama-server-dev",
        "environment": {"CUDA_VISIBLE_DEVICES": "0,1"}, "nodes": ["main"]}, "main", create=True)
    assert body == {"model_path": "/m/a.gguf", "threads": 8, "ctx_size": 4096, "n_gpu_layers": 32,
                    "extra_args": "--flash-attn on --no-webui", "auto_restart": True, "max_restarts": 3,
                    "idle_timeout_min": 10, "on_demand_start": True, "runtime_kind": "process",
                    "command_override": "/opt/llama-server-dev",
                    "environment": {"CUDA_VISIBLE_DEVICES": "0,1"}}


@pytest.mark.parametrize("raw", [
    {"backend_type": "vllm", "backend_options": {"model": "x"}},
    {"backend_options": {"threads": 2}},  # no model
    {"backend_options": {"model": "x"}, "nodes": ["worker1"]},
    {"backend_options": {"model": "x"}, "docker_enabled": "yes"},
    {"backend_options": {"model": "x"}, "surprise": 1},
    {"backend_options": {"model": "x", "bad key": 1}},
    {"backend_options": {"model": "x", "tensor_split": [1, 2]}},
])
def test_bad_llamactl_bodies_are_invalid(raw):
    with pytest.raises(Invalid):
        fmt.launch_body(raw, "main", create=True)


def test_update_body_may_omit_the_model():
    assert fmt.launch_body({"backend_options": {"threads": 8}}, "main", create=False) == {"threads": 8}


@pytest.mark.parametrize("body", [
    {"environment": {"1ABC": "x"}}, {"environment": {"A-B": "x"}}, {"environment": {"A B": "x"}},
    {"environment": {"LLAMAMAN_NODE": "x"}}, {"environment": {"LLAMA_API_KEY": "x"}},
    {"environment": {"A": ["x"]}}, {"environment": ["A=x"]},
    {"command_override": "/bin/sh -c id"}, {"command_override": "/bin/x;id"}, {"command_override": "/bin/$X"},
    {"command_override": "/bin/`id`"}, {"command_override": "relative/bin"}, {"command_override": "/a|b"},
    {"runtime_kind": "podman"}, {"on_demand_start": "yes"},
])
def test_bad_execution_options_are_invalid(body):
    with pytest.raises(Invalid):
        parse_execution(body)


def test_execution_options_over_defaults():
    options = parse_execution({"environment": {"HF_HOME": "/x", "N": 3}, "command_override": "/opt/ls-dev",
                               "runtime_kind": "docker", "on_demand_start": True})
    assert options == {"environment": {"HF_HOME": "/x", "N": "3"}, "command_override": "/opt/ls-dev",
                       "runtime_kind": "docker", "on_demand_start": True}
    assert parse_execution({}, base=options) == options


LOG = """[llamaman 2026-01-01T00:00:00] launching /m/a.gguf (attempt 1)
0.01 I load_tensors:   CPU_Mapped model buffer size =   100.00 MiB
0.02 I llama_kv_cache:        CPU KV buffer size =     1.00 MiB
[llamaman 2026-01-01T00:01:00] launching /m/a.gguf (attempt 2)
0.01 I load_tensors:   CPU_Mapped model buffer size =   235.16 MiB
0.01 I load_tensors:   CPU_REPACK model buffer size =    12.66 MiB
0.02 I llama_context:        CPU  output buffer size =     1.00 MiB
0.02 I llama_kv_cache:        CPU KV buffer size =     1.50 MiB
0.02 I llama_kv_cache:        CPU KV buffer size =     7.50 MiB
0.03 I sched_reserve:        CPU compute buffer size =    19.28 MiB
0.04 I load_tensors:      CUDA0 model buffer size =   512 KiB
"""


def test_memory_breakdown_counts_only_the_newest_load_summed_over_devices():
    parts = parse_breakdown(LOG.splitlines())
    mib = 1024**2
    assert parts == {"weights": round(235.16 * mib) + round(12.66 * mib) + 512 * 1024,
                     "output_buffers": mib, "kv_cache": 9 * mib, "compute_buffers": round(19.28 * mib)}
    assert parse_breakdown(["llama-server started", "listening"]) == {}


class FakeRuntime:
    """A Runtime of our own interface that records what it was asked."""

    def __init__(self, kind):
        self.kind = kind
        self.calls = []
        self.listener = None

    def stop(self, ref, grace_s=10.0):
        self.calls.append(("stop", ref.handle))

    def set_exit_listener(self, listener):
        self.listener = listener

    def discover(self):
        return [self.kind]

    def client(self):
        return "docker-client"


def _ref(kind):
    return RuntimeRef(kind, "i1", "n", f"{kind}-handle", "x", 9000, 0.0, "/l")


def test_runtime_set_routes_by_kind_and_checks_availability():
    primary, other = FakeRuntime("docker"), FakeRuntime("process")
    problems = {"process": "no llama-server here"}
    runtimes = RuntimeSet(primary, config=None, build=lambda _c, kind: other,
                          problem=lambda _c, kind: problems.get(kind))
    runtimes.set_exit_listener("listener")
    with pytest.raises(Invalid):
        runtimes.check("process")
    with pytest.raises(Invalid):
        runtimes.check("podman")
    runtimes.check(None)
    runtimes.check("docker")
    problems.clear()
    runtimes.check("process")
    runtimes.stop(_ref("process"))
    runtimes.stop(_ref("docker"))
    assert other.calls == [("stop", "process-handle")] and primary.calls == [("stop", "docker-handle")]
    assert other.listener == "listener"  # created later, told about exits all the same
    assert runtimes.discover() == ["docker", "process"]
    assert runtimes.kind == "docker" and runtimes.client() == "docker-client"
