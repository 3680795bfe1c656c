"""Docker-only launch failures: a missing image names the image and how to get it."""
import pytest

from tests.e2e.instancekit import remove_product_containers, runtime_env, start_manager

pytestmark = pytest.mark.timeout(120)


def test_missing_image_fails_with_a_clear_reason(request, tmp_path, models_dir, model_path, docker_client):
    env = {**runtime_env("docker", request, models_dir, ports=23800),
           "LLAMA_IMAGE": "ghcr.io/ggml-org/llama.cpp:does-not-exist"}
    manager = start_manager(tmp_path, env)
    try:
        failed = manager.wait_status(manager.launch(model_path)["id"], "failed", timeout=60)
        assert "does-not-exist" in failed["error"] and "docker pull" in failed["error"]
    finally:
        manager.app.kill()
        remove_product_containers(docker_client)
