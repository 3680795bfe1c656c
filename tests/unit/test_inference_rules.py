import json

import pytest

from llamaman.errors import Invalid, NotFound
from llamaman.instances.records import LIVE_DEFAULTS
from llamaman.proxy.inference import (
    INVALID,
    apply_overrides,
    check_model,
    model_matches,
    overrides,
    parse,
)

LOADED = "qwen2.5-0.5b-instruct-q2_k"


@pytest.mark.parametrize("requested, ok", [
    ("qwen2.5-0.5b-instruct-q2_k", True), ("Qwen2.5-0.5B-Instruct-Q2_K", True),
    ("qwen2.5-0.5b-instruct-q2", True), ("qwen2.5-0.5b-instruct-q2_k:latest", True),
    ("qwen2.5-0.5b-instruct-q2_k.gguf", True), ("llama3", False), ("qwen2.5-0.5b-instruct-q4", False),
    ("", False), (":latest", False),
])
def test_model_matching_follows_the_prefix_rule(requested, ok):
    assert model_matches(requested, LOADED) is ok


def test_check_model():
    check_model({"model": LOADED}, LOADED)
    check_model({"messages": []}, LOADED)
    check_model(INVALID, LOADED)
    with pytest.raises(NotFound, match="model 'wrong' is not loaded on this port"):
        check_model({"model": "wrong"}, LOADED)


def test_overrides_only_when_enabled_and_repeat_penalty_zero_is_not_injected():
    assert overrides(LIVE_DEFAULTS) == {}
    forced = overrides({**LIVE_DEFAULTS, "proxy_sampling_override_enabled": True})
    assert forced == {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "presence_penalty": 0.0}
    forced = overrides({**LIVE_DEFAULTS, "proxy_sampling_override_enabled": True,
                        "proxy_sampling_repeat_penalty": 1.1})
    assert forced["repeat_penalty"] == 1.1


def test_apply_overrides_rewrites_only_when_needed():
    raw = b'{"temperature": 1.9, "messages": []}'
    on = {**LIVE_DEFAULTS, "proxy_sampling_override_enabled": True, "proxy_sampling_temperature": 0.2}
    assert apply_overrides(raw, parse(raw), LIVE_DEFAULTS) is raw
    assert json.loads(apply_overrides(raw, parse(raw), on))["temperature"] == 0.2
    with pytest.raises(Invalid):
        apply_overrides(b"{nope", parse(b"{nope"), on)
    assert apply_overrides(b"{nope", parse(b"{nope"), LIVE_DEFAULTS) == b"{nope"
