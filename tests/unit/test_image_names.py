"""Image reference validation, canonical keys, the docker_images setting and pull-stream folding."""
from __future__ import annotations

import pytest

from llamaman.errors import Invalid
from llamaman.runtime import image_settings
from llamaman.runtime.image_engine import explain_pull_error
from llamaman.runtime.image_names import parse_image
from llamaman.runtime.image_pulls import PullJob

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("name", "canonical"), [
    ("ubuntu", "docker.io/library/ubuntu:latest"),
    ("docker.io/library/ubuntu:latest", "docker.io/library/ubuntu:latest"),
    ("ghcr.io/ggml-org/llama.cpp:server-cuda", "ghcr.io/ggml-org/llama.cpp:server-cuda"),
    ("127.0.0.1:5055/team/llama", "127.0.0.1:5055/team/llama:latest"),
    ("localhost/a__b/c-d.e:v1.2_3", "localhost/a__b/c-d.e:v1.2_3"),
    (f"ghcr.io/x/y@{DIGEST}", f"ghcr.io/x/y@{DIGEST}"),
])
def test_valid_references_have_one_canonical_key(name, canonical):
    assert parse_image(name).key == canonical


@pytest.mark.parametrize("name", [
    "ubuntu; rm -rf /", "$(reboot)", "`id`", "a|b", "a&&b", "x y", "ubuntu:la test", "-x", "x/",
    "/x", "a//b", "UPPER", "x:", "x:-tag", "x@sha256:short", "a:b:c", "x\ny", "ubuntu>out", "a/b?c",
    "x" * 600,
])
def test_malformed_references_are_refused(name):
    with pytest.raises(Invalid):
        parse_image(name)


@pytest.mark.parametrize("name", [
    "user:hunter2pass@ghcr.io/x/y:v1", "hunter2pass@registry.example/x",
    "https://user:hunter2pass@ghcr.io/x/y", "http://ghcr.io/x/y:v1",
])
def test_credentials_and_urls_are_refused_without_echoing_them(name):
    with pytest.raises(Invalid) as refused:
        parse_image(name)
    assert "hunter2pass" not in refused.value.message and "ghcr.io/x" not in refused.value.message
    assert "docker login" in refused.value.message


@pytest.mark.parametrize("value", [None, 5, ["ubuntu"], {"name": "ubuntu"}, True])
def test_non_strings_are_refused(value):
    with pytest.raises(Invalid, match="must be a string"):
        parse_image(value)


def test_pull_stream_is_folded_into_layer_progress():
    job = PullJob(image="r/x:v1", key="r/x:v1")
    for event in (
        {"status": "Pulling from x", "id": "v1"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
        {"status": "Downloading", "progressDetail": {"current": 50, "total": 200}, "id": "aaa"},
        {"status": "Already exists", "progressDetail": {}, "id": "bbb"},
        {"status": "Download complete", "progressDetail": {}, "id": "aaa"},
        {"status": f"Digest: {DIGEST}"},
        {"status": "Status: Downloaded newer image for r/x:v1"},
    ):
        job.apply(event)
    shown = job.to_json()
    assert shown["layers"] == [{"id": "aaa", "status": "Download complete", "current": 200, "total": 200},
                               {"id": "bbb", "status": "Already exists", "current": 0, "total": None}]
    assert shown["progress"] == {"current": 200, "total": 200, "percent": 100.0}
    assert shown["new_digest"] == DIGEST and shown["message"].startswith("Status: Downloaded newer")


def test_pull_errors_say_what_went_wrong():
    ref = parse_image("127.0.0.1:1/x:v1")
    refused = 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused'
    assert explain_pull_error(ref, refused).startswith("registry 127.0.0.1:1 is unreachable: ")
    silent = 'Get "http://127.0.0.1:1/v2/": context deadline exceeded'
    assert explain_pull_error(ref, silent).startswith("registry 127.0.0.1:1 did not answer in time: ")
    assert "was not found in registry" in explain_pull_error(ref, "manifest unknown")
    assert "docker login 127.0.0.1:1" in explain_pull_error(ref, "unauthorized: authentication required")


def test_docker_images_setting_validation_and_merge():
    stored = {"images": [{"name": "ubuntu:latest", "digest": DIGEST}], "auto_update_enabled": False}
    patch = image_settings.validate({"images": ["docker.io/library/ubuntu", "ghcr.io/x/y:v1"],
                                     "auto_update_interval_hours": 6, "auto_update_last_check_at": 1.0})
    merged = image_settings.merge(stored, patch)
    assert merged["images"] == [{"name": "ubuntu:latest", "digest": DIGEST}, {"name": "ghcr.io/x/y:v1"}]
    assert merged["auto_update_interval_hours"] == 6 and merged["auto_update_last_check_at"] is None
    for bad in ({"auto_update_interval_hours": 0}, {"auto_update_interval_hours": "6"},
                {"auto_update_enabled": "true"}, {"images": "ubuntu"}, {"images": ["a;b"]}, {"extra": 1},
                {"images": ["x"] * 101}, []):
        with pytest.raises(Invalid):
            image_settings.validate(bad)
