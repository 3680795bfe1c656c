"""The instance lifecycle emits its port events in order: a fake runtime and an in-memory
collection (our own interfaces) stand in for llama-server and storage."""
import time

import pytest

from llamaman.instances import claims
from llamaman.instances.events import (
    CLOSING,
    REMOVED,
    SERVING,
    STOPPED,
    LifecycleEvents,
)
from llamaman.instances.logs import InstanceLogs
from llamaman.instances.registry import InstanceRegistry
from llamaman.instances.service import InstanceService
from llamaman.proxy.gate import Gates
from llamaman.runtime import RuntimeRef, RuntimeState
from tests.appkit import make_config


class MemoryCollection:
    def __init__(self):
        self.rows = {}

    def get(self, key):
        return self.rows.get(key)

    def list(self):
        return list(self.rows.values())

    def put(self, key, record):
        self.rows[key] = record

    def delete(self, key):
        return self.rows.pop(key, None) is not None


class FakeRuntime:
    kind = "process"

    def __init__(self):
        self.running = set()
        self.listener = None

    def launch(self, spec):
        ref = RuntimeRef("process", spec.instance_id, spec.node, f"h-{spec.instance_id}", "fake",
                         spec.internal_port, time.time(), str(spec.log_path))
        self.running.add(ref.handle)
        return ref

    def stop(self, ref, grace_s=10.0):
        self.running.discard(ref.handle)
        return RuntimeState("exited", 0)

    def state(self, ref):
        return RuntimeState("running" if ref.handle in self.running else "exited")

    def upstream(self, ref):
        return "127.0.0.1", ref.internal_port

    def stats(self, ref):
        return None

    def discover(self):
        return []

    def adopt(self, ref):
        pass

    def set_exit_listener(self, listener):
        self.listener = listener

    def close(self):
        pass


class InstantHealth:
    def wait(self, ref, cancelled):
        return None


@pytest.fixture
def service(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "port_is_free", lambda port, host: True)
    config = make_config(tmp_path)
    config.models_dir.mkdir(parents=True)
    (config.models_dir / "m.gguf").write_bytes(b"GGUF")
    events = LifecycleEvents()
    svc = InstanceService(config, InstanceRegistry(MemoryCollection()), InstanceLogs(tmp_path / "logs"),
                          Gates(), events)
    seen = []
    events.subscribe(lambda event: seen.append((event.kind, event.instance_id, event.port)))
    svc.start(FakeRuntime())
    svc.attempts.waiter = InstantHealth()
    yield svc, seen
    svc.close()


def settled(svc, instance_id, status):
    record = svc.registry.wait_until(instance_id, lambda r: r["status"] == status, 5)
    assert record is not None, f"{instance_id} never became {status}"


def test_launch_stop_remove_emit_serving_stopped_removed(service):
    svc, seen = service
    launched = svc.launch({"model_path": "m.gguf"})
    instance_id, port = launched["id"], launched["port"]
    settled(svc, instance_id, "healthy")
    svc.stop(instance_id)
    svc.remove(instance_id)
    svc.close()
    assert seen == [(SERVING, instance_id, port), (STOPPED, instance_id, port),
                    (REMOVED, instance_id, 0), (CLOSING, "", 0)]


def test_a_port_that_cannot_be_served_abandons_the_launch(service):
    svc, _ = service

    def refuse(event):
        if event.kind == SERVING:
            raise OSError("port taken")
    svc.events.subscribe(refuse)
    with pytest.raises(OSError):
        svc.launch({"model_path": "m.gguf"})
    assert svc.list() == []


def test_a_crash_without_restart_fails_the_instance_and_closes_its_port(service):
    svc, seen = service
    launched = svc.launch({"model_path": "m.gguf", "auto_restart": False})
    settled(svc, launched["id"], "healthy")
    ref = RuntimeRef.from_dict(svc.registry.snapshot(launched["id"])["runtime"])
    svc.runtime.primary.listener(ref, RuntimeState("exited", 1, "boom"))
    settled(svc, launched["id"], "failed")
    assert [kind for kind, *_ in seen] == [SERVING, STOPPED]


def test_sleep_keeps_the_port_and_a_request_wakes_it(service):
    svc, seen = service
    launched = svc.launch({"model_path": "m.gguf"})
    settled(svc, launched["id"], "healthy")
    assert svc.sleep(launched["id"])
    target = svc.ensure_running(launched["id"], 5)
    assert target.port == svc.registry.snapshot(launched["id"])["internal_port"]
    assert [kind for kind, *_ in seen] == [SERVING], "sleeping and waking keep serving the port"
