"""The one factory of the unit tests of the lifecycle and the scheduler: a real InstanceService
and Scheduler over JSON storage in a temp dir, with the fake runtime, fake health checks and
public ports that only record what they were asked (no sockets, no processes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamaman.config import Config
from llamaman.instances.logs import InstanceLogs
from llamaman.instances.registry import InstanceRegistry
from llamaman.instances.service import InstanceService
from llamaman.models.library import ModelLibrary
from llamaman.presets.service import PresetService
from llamaman.proxy.gate import Gates
from llamaman.runtime.base import RuntimeRef
from llamaman.scheduler import Scheduler
from llamaman.services import port_follower
from llamaman.settings.service import SettingsService
from llamaman.storage import open_storage
from tests.fakes.runtime import FakeHealth, FakeHost, FakeRuntime
from tests.modelkit import write_gguf

NODE = "unit-node"
SETTLE_S = 5.0  # a hang guard for waits on background threads, never a timing goal


class FakePorts:
    """Public-port serving as InstanceService sees it: records which ports are served."""

    def __init__(self) -> None:
        self.served: dict[str, int] = {}

    def serve(self, instance_id: str, port: int) -> None:
        self.served[instance_id] = port

    def release(self, instance_id: str) -> None:
        self.served.pop(instance_id, None)

    def close(self) -> None:
        self.served.clear()


@dataclass
class Node:
    """Everything one test needs, wired like build_services does."""

    config: Config
    host: FakeHost
    runtime: FakeRuntime
    instances: InstanceService
    scheduler: Scheduler
    library: ModelLibrary
    settings: SettingsService
    gates: Gates
    ports: FakePorts
    models_dir: Path
    storage: Any

    def add_model(self, name: str) -> str:
        """Write a small GGUF into MODELS_DIR and return the name the APIs know it by."""
        write_gguf(self.models_dir / f"{name}.gguf")
        self.library.refresh()
        return name

    def launch(self, name: str = "m1", **options: Any) -> str:
        """Add the model and launch it as the admin REST API does (no cap check); its id."""
        self.add_model(name)
        return self.instances.launch({"model_path": self.model_path(name), **options})["id"]

    def model_path(self, name: str) -> str:
        return str(self.models_dir / f"{name}.gguf")

    def wait_status(self, instance_id: str, *statuses: str) -> dict[str, Any]:
        """Wait until the instance reaches one of the statuses; its record then."""
        record = self.instances.registry.wait_until(
            instance_id, lambda r: r["status"] in statuses, SETTLE_S)
        assert record is not None and record["status"] in statuses, (
            f"{instance_id} never became {'/'.join(statuses)}: {self.instances.registry.find(instance_id)}")
        return record

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        """Wait until condition holds after a change on the fake host."""
        assert self.host.wait_for(condition, SETTLE_S), what

    def ref(self, instance_id: str) -> RuntimeRef:
        """The runtime ref of the instance, once its launch reached the runtime."""
        record = self.instances.registry.wait_until(instance_id, lambda r: bool(r.get("runtime")), SETTLE_S)
        assert record is not None and record.get("runtime"), f"{instance_id} was never launched"
        return RuntimeRef.from_dict(record["runtime"])

    def close(self) -> None:
        self.instances.close()
        self.library.stop()
        self.storage.close()


def make_node(tmp_path: Path, autoload: bool = True, **env: str) -> Node:
    """Build and start a node; env adds configuration (e.g. LLAMAMAN_MAX_MODELS="1")."""
    models = tmp_path / "models"
    models.mkdir(parents=True, exist_ok=True)
    config = Config.from_env({
        "LLAMAMAN_NODE_NAME": NODE, "MODELS_DIR": str(models), "LOGS_DIR": str(tmp_path / "logs"),
        "DATA_DIR": str(tmp_path / "data"), "LLAMAMAN_RUNTIME": "process",
        "REQUEST_TIMEOUT": "10",  # how long the scheduler waits for a busy model: a hang guard here
        **env,
    })
    storage = open_storage(node=NODE, data_dir=config.data_dir)
    storage.open()
    settings = SettingsService(storage.settings, NODE)
    gates, ports, host = Gates(), FakePorts(), FakeHost(autoload=autoload)
    instances = InstanceService(config, InstanceRegistry(storage.instances), InstanceLogs(config.logs_dir), gates)
    instances.events.subscribe(port_follower(ports))  # type: ignore[arg-type] - FakePorts serves like PublicPorts
    for allocator in (instances.claims.public, instances.claims.internal):
        allocator.is_free = lambda port: True  # no bind probes: the fake runtime listens nowhere
    library = ModelLibrary(models, poll_s=3600)
    scheduler = Scheduler(config, instances, library, PresetService(storage.presets, instances, config),
                          settings)
    instances.waker = scheduler.wake
    runtime = FakeRuntime(host, NODE)
    instances.start(runtime)
    instances.attempts.waiter = FakeHealth(host, runtime)
    return Node(config, host, runtime, instances, scheduler, library, settings, gates, ports, models, storage)
