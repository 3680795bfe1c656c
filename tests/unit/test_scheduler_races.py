"""Scheduler races against the fake runtime: a burst for one model starts or wakes it once."""
import threading

THREADS = 8


def burst(node, name: str, launcher: str = "ollama") -> list[str]:
    """THREADS concurrent requests for the model; the instance ids they were routed to."""
    barrier = threading.Barrier(THREADS)
    routed: list[str] = []

    def ask() -> None:
        barrier.wait()
        with node.scheduler.serving(name, launcher) as instance_id:
            routed.append(instance_id)

    threads = [threading.Thread(target=ask) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return routed


def test_concurrent_requests_for_a_cold_model_launch_it_once(make_node) -> None:
    node = make_node(autoload=False)  # still loading while the burst arrives
    node.add_model("m1")
    routed = burst(node, "m1")
    assert len(routed) == THREADS and len(set(routed)) == 1
    node.host.finish_loading(node.ref(routed[0]))  # the launch runs in the background: wait for it
    node.wait_status(routed[0], "healthy")
    assert node.host.launched_ids() == routed[:1]
    assert node.scheduler.events.snapshot()["launches"] == {("m1", "ollama"): 1}


def test_concurrent_requests_for_a_sleeping_model_wake_it_once(make_node) -> None:
    node = make_node()
    node.add_model("m1")
    with node.scheduler.serving("m1", "ollama") as instance_id:
        pass
    node.wait_status(instance_id, "healthy")
    assert node.instances.sleep(instance_id)
    node.host.autoload = False  # the wake is still loading while the burst arrives
    routed = burst(node, "m1")
    assert set(routed) == {instance_id}
    node.host.finish_loading(node.ref(instance_id))
    node.wait_status(instance_id, "healthy")
    assert node.host.launched_ids() == [instance_id, instance_id]
    assert node.scheduler.events.snapshot()["wakes"] == {("m1", instance_id): 1}


def test_requests_for_different_models_launch_one_each(make_node) -> None:
    node = make_node()
    names = [node.add_model(f"m{i}") for i in range(3)]
    routed = {}
    for name in names:
        with node.scheduler.serving(name, "openai") as instance_id:
            routed[name] = instance_id
    assert len(set(routed.values())) == 3
    for instance_id in routed.values():
        node.wait_status(instance_id, "healthy")
    assert sorted(node.host.launched_ids()) == sorted(routed.values())
