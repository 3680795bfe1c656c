"""The model cap (LLAMAMAN_MAX_MODELS) against the fake runtime: who may evict whom, and when."""
import pytest

from llamaman.errors import Conflict, Unavailable


def loaded(node, name: str, launcher: str) -> str:
    """Launch the model as `launcher` would and wait until it is healthy; its instance id."""
    node.add_model(name)
    if launcher == "admin":
        instance_id = node.scheduler.admin_launch({"model_path": node.model_path(name)}, confirm=False)["id"]
    else:
        with node.scheduler.serving(name, launcher) as instance_id:  # as a request does
            pass
    node.wait_status(instance_id, "healthy")
    return instance_id


def statuses(node) -> dict[str, str]:
    return {i["model_name"]: i["status"] for i in node.instances.list()}


def test_an_admin_launch_over_the_cap_asks_for_confirmation_and_changes_nothing(make_node) -> None:
    node = make_node(LLAMAMAN_MAX_MODELS="1")
    loaded(node, "m1", "admin")
    node.add_model("m2")
    with pytest.raises(Conflict) as info:
        node.scheduler.admin_launch({"model_path": node.model_path("m2")}, confirm=False)
    assert info.value.extra == {"confirm_required": True}
    assert "LLAMAMAN_MAX_MODELS=1" in info.value.message
    assert statuses(node) == {"m1": "healthy"}
    assert len(node.host.launched_ids()) == 1


def test_a_confirmed_admin_launch_evicts_to_stay_under_the_cap(make_node) -> None:
    node = make_node(LLAMAMAN_MAX_MODELS="1")
    loaded(node, "m1", "admin")
    node.add_model("m2")
    second = node.scheduler.admin_launch({"model_path": node.model_path("m2")}, confirm=True)["id"]
    node.wait_status(second, "healthy")
    assert statuses(node) == {"m1": "stopped", "m2": "healthy"}
    assert [ref.instance_id for ref in node.host.running()] == [second]


def test_the_enforce_setting_evicts_without_confirmation(make_node) -> None:
    node = make_node(LLAMAMAN_MAX_MODELS="1")
    node.settings.save({"admin_ui_enforce_max_models": True})
    loaded(node, "m1", "admin")
    node.add_model("m2")
    node.scheduler.admin_launch({"model_path": node.model_path("m2")}, confirm=False)
    assert statuses(node)["m1"] == "stopped"


def test_the_ollama_api_cannot_evict_an_admin_launched_model(make_node) -> None:
    node = make_node(LLAMAMAN_MAX_MODELS="1")
    loaded(node, "m1", "admin")
    node.add_model("m2")
    with pytest.raises(Unavailable, match="admin-launched models cannot be evicted"):
        node.scheduler.instance_for("m2", "ollama")
    assert statuses(node) == {"m1": "healthy"}


def test_the_override_setting_lets_the_ollama_api_evict_admin_models(make_node) -> None:
    node = make_node(LLAMAMAN_MAX_MODELS="1")
    node.settings.save({"allow_ollama_api_override_admin": True})
    loaded(node, "m1", "admin")
    loaded(node, "m2", "ollama")
    assert statuses(node) == {"m1": "stopped", "m2": "healthy"}


def test_the_openai_api_never_evicts(make_node) -> None:
    node = make_node(LLAMAMAN_MAX_MODELS="1")
    loaded(node, "m1", "ollama")
    node.add_model("m2")
    with pytest.raises(Unavailable, match="the OpenAI API does not evict"):
        node.scheduler.instance_for("m2", "openai")
    assert statuses(node) == {"m1": "healthy"}


def test_the_least_recently_used_api_model_is_evicted(make_node) -> None:
    node = make_node(LLAMAMAN_MAX_MODELS="2")
    first = loaded(node, "m1", "ollama")
    loaded(node, "m2", "ollama")
    node.instances.request_done(first)  # m1 served a request since: m2 is now the older one
    loaded(node, "m3", "ollama")
    assert statuses(node) == {"m1": "healthy", "m2": "stopped", "m3": "healthy"}


def test_an_admin_launch_evicts_api_launched_models_before_admin_ones(make_node) -> None:
    node = make_node(LLAMAMAN_MAX_MODELS="2")
    loaded(node, "m1", "admin")  # the least recently used, but launched by the admin
    loaded(node, "m2", "ollama")
    node.add_model("m3")
    third = node.scheduler.admin_launch({"model_path": node.model_path("m3")}, confirm=True)["id"]
    node.wait_status(third, "healthy")
    assert statuses(node) == {"m1": "healthy", "m2": "stopped", "m3": "healthy"}


def test_an_embedding_model_does_not_count_against_the_cap(make_node) -> None:
    node = make_node(LLAMAMAN_MAX_MODELS="1")
    loaded(node, "m1", "ollama")
    node.add_model("e1")
    embedder = node.scheduler.instance_for("e1", "ollama", embedding=True)
    node.wait_status(embedder, "healthy")
    assert statuses(node) == {"m1": "healthy", "e1": "healthy"}



def test_a_model_with_a_request_in_flight_is_not_evicted(make_node) -> None:
    node = make_node(LLAMAMAN_MAX_MODELS="1", REQUEST_TIMEOUT="1")
    busy = loaded(node, "m1", "ollama")
    node.add_model("m2")
    ticket = node.gates.admit(busy, 1, lambda: False)
    with pytest.raises(Unavailable, match="every model that could be evicted is busy"):
        node.scheduler.instance_for("m2", "ollama")
    assert statuses(node) == {"m1": "healthy"}
    ticket.release()
    loaded(node, "m2", "ollama")
    assert statuses(node) == {"m1": "stopped", "m2": "healthy"}


def test_a_model_a_request_was_routed_to_is_not_evicted_before_admission(make_node) -> None:
    node = make_node(LLAMAMAN_MAX_MODELS="1", REQUEST_TIMEOUT="1")
    node.add_model("m1")
    node.add_model("m2")
    with node.scheduler.serving("m1", "ollama") as busy:
        node.wait_status(busy, "healthy")
        with pytest.raises(Unavailable, match="every model that could be evicted is busy"):
            node.scheduler.instance_for("m2", "ollama")
        assert statuses(node) == {"m1": "healthy"}
    loaded(node, "m2", "ollama")
    assert statuses(node) == {"m1": "stopped", "m2": "healthy"}
