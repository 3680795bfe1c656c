"""Crash and restart policy against the fake runtime: auto-restart, its budget, failure."""


def crash(node, instance_id: str, restarts_before: int) -> None:
    """Kill the healthy instance's server from outside once its restart count is as expected."""
    record = node.wait_status(instance_id, "healthy")
    assert record["restarts"] == restarts_before
    node.host.kill(node.ref(instance_id), last_words="ggml_abort: out of memory")


def test_a_crash_restarts_the_instance(make_node) -> None:
    node = make_node()
    instance_id = node.launch(restart_delay=0)
    node.wait_status(instance_id, "healthy")
    first = node.ref(instance_id)
    crash(node, instance_id, restarts_before=0)
    node.wait_for(lambda: len(node.host.launched_ids()) == 2, "the crash was not followed by a launch")
    record = node.wait_status(instance_id, "healthy")
    assert record["restarts"] == 1 and record["error"] is None
    assert node.ref(instance_id) != first
    assert node.host.running() == [node.ref(instance_id)]
    assert instance_id in node.ports.served


def test_without_auto_restart_a_crash_fails_with_the_reason(make_node) -> None:
    node = make_node()
    instance_id = node.launch(auto_restart=False)
    crash(node, instance_id, restarts_before=0)
    record = node.wait_status(instance_id, "failed")
    assert "SIGKILL" in record["error"]
    assert "ggml_abort: out of memory" in record["error"], "the reason carries the log tail"
    assert node.host.launched_ids() == [instance_id]
    assert instance_id not in node.ports.served


def test_restarts_stop_after_max_restarts(make_node) -> None:
    node = make_node()
    instance_id = node.launch(restart_delay=0, max_restarts=2)
    for restarts in range(2):
        crash(node, instance_id, restarts_before=restarts)
        node.wait_for(lambda n=restarts: len(node.host.launched_ids()) == n + 2, "no restart")
    crash(node, instance_id, restarts_before=2)
    record = node.wait_status(instance_id, "failed")
    assert "SIGKILL" in record["error"]
    assert node.host.launched_ids() == [instance_id] * 3
    assert node.host.running() == []

