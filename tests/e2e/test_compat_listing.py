"""Model listings through the real `ollama` and `openai` client libraries, on :42069."""
import ollama
import openai
import pytest
import requests

from tests.e2e.instancekit import runtime_env, start_manager

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def manager(request, tmp_path, models_dir):
    manager = start_manager(tmp_path, runtime_env("process", request, models_dir, ports=32200))
    yield manager
    for instance in manager.api.get(manager.url("/api/instances")).json():
        manager.api.delete(manager.url(f"/api/instances/{instance['id']}"))
    manager.app.kill()


def api_url(manager) -> str:
    return f"http://127.0.0.1:{manager.app.proxy_port}"


def test_ollama_and_openai_clients_list_the_library(manager, model_path):
    name = model_path.name.removesuffix(".gguf").lower()
    client = ollama.Client(host=api_url(manager), headers={"Authorization": f"Bearer {manager.key}"})
    listed = {m.model: m for m in client.list().models}
    assert f"{name}:latest" in listed
    model = listed[f"{name}:latest"]
    assert model.details.quantization_level == "Q4_K_M" and model.details.family == "gemma3"
    assert model.size == model_path.stat().st_size and len(model.digest) == 64
    openai_client = openai.OpenAI(base_url=api_url(manager) + "/v1", api_key=manager.key)
    assert f"{name}:latest" in [m.id for m in openai_client.models.list()]  # the names /api/tags lists
    version = requests.get(api_url(manager) + "/api/version",
                           headers={"Authorization": f"Bearer {manager.key}"}).json()["version"]
    assert all(part.isdigit() for part in version.split("."))


def test_ps_shows_running_models_with_their_runtime_context(manager, model_path):
    client = ollama.Client(host=api_url(manager), headers={"Authorization": f"Bearer {manager.key}"})
    assert client.ps().models == []
    instance = manager.wait_status(manager.launch(model_path, ctx_size=768, idle_timeout_min=5)["id"], "healthy")
    running = client.ps().models
    assert [m.model for m in running] == [f"{instance['model_name']}:latest"]
    assert running[0].context_length == 768 and running[0].size_vram == 0
    assert running[0].expires_at.year < 9999, "an idle timeout gives a real expiry"


def test_listings_need_a_key_when_auth_is_on(manager):
    client = ollama.Client(host=api_url(manager))
    with pytest.raises(ollama.ResponseError) as err:
        client.list()
    assert err.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=api_url(manager) + "/v1", api_key="llm-wrong").models.list()
