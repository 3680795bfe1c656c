"""Solar Host's config ↔ llamaman launch body (our own translation, no server)."""
from __future__ import annotations

import pytest

from llamaman.compat.solar_format import config_view, instance_view, launch_body
from llamaman.errors import Invalid

CONFIG = {"model": "/models/m.gguf", "alias": "llama-3:8b", "threads": 4, "n_gpu_layers": 999,
          "temp": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 1e-05, "ctx_size": 8192,
          "chat_template_file": "/models/templates/llama 3.jinja", "special": True, "host": "0.0.0.0",
          "api_key": "instance-key"}


def record_from(body: dict, **state) -> dict:
    """An instance view as the service returns it for a launch body (settings flattened)."""
    return {"id": "abc123", "name": body["name"], "model_path": body["model_path"], "port": 8001,
            "threads": body.get("threads"), "n_gpu_layers": body.get("n_gpu_layers"),
            "ctx_size": body.get("ctx_size"), "extra_args": body.get("extra_args"), "created_at": 1.0,
            "started_at": None, "error": None, "status": "stopped", **state}


def test_config_maps_to_launch_fields_and_llama_server_flags():
    body = launch_body({"config": CONFIG})
    assert {k: body[k] for k in ("model_path", "name", "threads", "n_gpu_layers", "ctx_size")} == \
        {"model_path": "/models/m.gguf", "name": "llama-3:8b", "threads": 4, "n_gpu_layers": 999, "ctx_size": 8192}
    assert body["extra_args"] == ("--temp 0.7 --top-p 0.9 --top-k 40 --min-p 1e-05 "
                                  "--chat-template-file '/models/templates/llama 3.jinja' --special")
    assert "api_key" not in body and "host" not in body


def test_the_view_gives_back_the_config_it_was_made_from():
    view = config_view(record_from(launch_body({"config": CONFIG})))
    expected = {k: v for k, v in CONFIG.items() if k != "api_key"}
    assert {k: view[k] for k in expected} == expected
    assert view["port"] == 8001 and "extra_args" not in view
    hand_made = record_from({"name": "x", "model_path": "/m.gguf", "extra_args": "--temp 0.5 --flash-attn on"})
    assert config_view(hand_made)["temp"] == 0.5 and config_view(hand_made)["extra_args"] == "--flash-attn on"


@pytest.mark.parametrize(("status", "solar"), [("healthy", "running"), ("starting", "starting"),
                                                ("sleeping", "stopped"), ("stopped", "stopped"),
                                                ("failed", "failed")])
def test_statuses(status, solar):
    view = instance_view(record_from(launch_body({"config": CONFIG}), status=status))
    assert view["status"] == solar and view["llamaman_status"] == status


@pytest.mark.parametrize("change", [{"temp": 2.01}, {"top_p": -0.1}, {"top_k": True}, {"min_p": "0.1"},
                                    {"special": 1}, {"host": "127.0.0.1"}, {"api_key": ["k"]},
                                    {"chat_template_file": 3}, {"alias": " "}, {"model": None}, {"nodes": []}])
def test_bad_config_values_are_refused(change):
    with pytest.raises(Invalid):
        launch_body({"config": {**CONFIG, **change}})


def test_body_must_hold_a_config_object():
    for raw in (None, [], {}, {"config": []}):
        with pytest.raises(Invalid):
            launch_body(raw)
