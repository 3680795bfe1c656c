"""Instance lifecycle against the fake runtime: launch, health, failure, stop, restart, wake."""
import threading

import pytest

from llamaman.errors import Unavailable

THREADS = 8


def test_a_launch_becomes_healthy_and_serves_its_port(make_node) -> None:
    node = make_node()
    instance_id = node.launch()
    record = node.wait_status(instance_id, "healthy")
    assert node.host.launched_ids() == [instance_id]
    assert node.ports.served == {instance_id: record["port"]}
    target = node.instances.target(instance_id)
    assert (target.host, target.port) == ("127.0.0.1", record["internal_port"])
    assert record["load_time_s"] is not None and record["error"] is None


def test_an_instance_stays_starting_until_the_model_loaded(make_node) -> None:
    node = make_node(autoload=False)
    instance_id = node.launch()
    assert node.instances.get(instance_id)["status"] == "starting"
    with pytest.raises(Unavailable):
        node.instances.target(instance_id)
    node.host.finish_loading(node.ref(instance_id))
    node.wait_status(instance_id, "healthy")


def test_a_refused_launch_fails_with_the_runtime_reason_and_frees_the_port(make_node) -> None:
    node = make_node()
    node.host.refuse_next_launch("Docker image not found: x")
    instance_id = node.launch()
    record = node.wait_status(instance_id, "failed")
    assert record["error"] == "Docker image not found: x"
    assert instance_id not in node.ports.served
    assert node.host.running() == []


def test_a_server_that_dies_while_loading_fails_with_its_last_log_lines(make_node) -> None:
    node = make_node(autoload=False)
    instance_id = node.launch()
    node.host.kill(node.ref(instance_id), code=1, last_words="error: unknown model architecture")
    record = node.wait_status(instance_id, "failed")
    assert record["error"].startswith("exited with code 1")
    assert "unknown model architecture" in record["error"]
    assert node.host.launched_ids() == [instance_id], "a failed load is not retried"


def test_stop_ends_the_server_and_frees_the_port(make_node) -> None:
    node = make_node()
    instance_id = node.launch()
    node.wait_status(instance_id, "healthy")
    assert node.instances.stop(instance_id)["status"] == "stopped"
    assert node.host.running() == []
    assert instance_id not in node.ports.served
    with pytest.raises(Unavailable):
        node.instances.target(instance_id)


def test_stop_while_loading_abandons_the_launch(make_node) -> None:
    node = make_node(autoload=False)
    instance_id = node.launch()
    node.instances.stop(instance_id)
    assert node.wait_status(instance_id, "stopped")["error"] is None
    assert node.host.running() == []
    assert node.host.launched_ids() == [instance_id]


def test_restart_replaces_the_server(make_node) -> None:
    node = make_node()
    instance_id = node.launch()
    node.wait_status(instance_id, "healthy")
    old = node.ref(instance_id)
    node.instances.restart(instance_id)
    node.wait_status(instance_id, "healthy")
    assert node.ref(instance_id).handle != old.handle
    assert node.host.running() == [node.ref(instance_id)]


def test_concurrent_wakes_start_one_server(make_node) -> None:
    node = make_node(autoload=False)
    instance_id = node.launch()
    node.host.finish_loading(node.ref(instance_id))
    node.wait_status(instance_id, "healthy")
    assert node.instances.sleep(instance_id)
    assert node.host.running() == [] and node.ports.served.get(instance_id), "asleep, port kept"
    barrier = threading.Barrier(THREADS)
    targets = []

    def wake() -> None:
        barrier.wait()
        targets.append(node.instances.ensure_running(instance_id, timeout=5))

    threads = [threading.Thread(target=wake) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    node.wait_for(lambda: len(node.host.launched_ids()) == 2, "the wake launched nothing")
    node.host.finish_loading(node.ref(instance_id))
    for thread in threads:
        thread.join()
    assert node.host.launched_ids() == [instance_id, instance_id], "one start for all the wakes"
    assert len(targets) == THREADS and len(set(targets)) == 1
