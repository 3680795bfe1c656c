"""Launch settings: parsing the launch body, memory sizes, range checks, round trip."""

from __future__ import annotations

import pytest

from llamaman.errors import Invalid
from llamaman.runtime.launch_settings import (
    LaunchSettings,
    format_memory_limit,
    parse_memory_limit,
)

GIB = 1024**3
MIB = 1024**2


@pytest.mark.parametrize(
    "text, size",
    [
        ("32g", 32 * GIB),
        ("8192m", 8192 * MIB),
        ("8192M", 8192 * MIB),
        ("1.5g", int(1.5 * GIB)),
        ("512MiB", 512 * MIB),
        ("2gb", 2 * GIB),
        ("1t", 1024 * GIB),
        ("65536k", 64 * MIB),
        ("104857600", 100 * MIB),
        (" 64m ", 64 * MIB),
        (100 * MIB, 100 * MIB),
    ],
)
def test_memory_limit_sizes(text: object, size: int) -> None:
    assert parse_memory_limit(text) == size


@pytest.mark.parametrize("empty", [None, "", "  "])
def test_memory_limit_empty_means_unlimited(empty: object) -> None:
    assert parse_memory_limit(empty) is None


@pytest.mark.parametrize("bad", ["32x", "g", "-1g", "1 0m", "lots", "1e9", True, 1.5, "5m", 1024])
def test_memory_limit_rejects_bad_values(bad: object) -> None:
    with pytest.raises(Invalid, match="memory_limit"):
        parse_memory_limit(bad)


@pytest.mark.parametrize(
    "size, text",
    [(32 * GIB, "32g"), (8192 * MIB + MIB, "8193m"), (10752 * 1024, "10752k"), (None, None)],
)
def test_format_memory_limit_is_exact(size: int | None, text: str | None) -> None:
    assert format_memory_limit(size) == text
    assert parse_memory_limit(text) == size


def test_from_body_reads_the_readme_launch_body() -> None:
    body = {
        "model_path": "/models/my-model.gguf",
        "port": 8000,
        "n_gpu_layers": -1,
        "ctx_size": 4096,
        "threads": None,
        "memory_limit": None,
        "parallel": None,
        "extra_args": "--flash-attn",
        "gpu_devices": "",
        "idle_timeout_min": 0,
        "max_concurrent": 0,
    }
    assert LaunchSettings.from_body(body) == LaunchSettings(extra_args=("--flash-attn",))


def test_from_body_parses_strings() -> None:
    settings = LaunchSettings.from_body(
        {"threads": "4", "memory_limit": "8g", "gpu_devices": "0, 1", "extra_args": "--temp '0.5'"}
    )
    assert settings.threads == 4
    assert settings.memory_limit == 8 * GIB
    assert settings.gpu_devices == (0, 1)
    assert settings.extra_args == ("--temp", "0.5")


@pytest.mark.parametrize("value", ["all", "ALL", "", None])
def test_gpu_devices_all_or_empty_mean_the_default(value: object) -> None:
    assert LaunchSettings.from_body({"gpu_devices": value}).gpu_devices is None


@pytest.mark.parametrize(
    "body, field",
    [
        ({"ctx_size": -1}, "ctx_size"),
        ({"ctx_size": None}, "ctx_size"),
        ({"n_gpu_layers": -2}, "n_gpu_layers"),
        ({"threads": 0}, "threads"),
        ({"threads": 100000}, "threads"),
        ({"threads": "two"}, "threads"),
        ({"threads": 2.5}, "threads"),
        ({"threads": True}, "threads"),
        ({"parallel": 0}, "parallel"),
        ({"draft_n_max": 0}, "draft_n_max"),
        ({"embedding": "yes"}, "embedding"),
        ({"gpu_devices": "0,0"}, "gpu_devices"),
        ({"gpu_devices": "gpu1"}, "gpu_devices"),
        ({"extra_args": "--port 1"}, "extra_args"),
        ({"extra_args": "'unclosed"}, "extra_args"),
        ({"extra_args": 5}, "extra_args"),
    ],
)
def test_from_body_rejects_out_of_range_values(body: dict, field: str) -> None:
    with pytest.raises(Invalid) as info:
        LaunchSettings.from_body(body)
    assert info.value.extra["field"] == field
    assert field in info.value.message


def test_to_body_round_trips() -> None:
    settings = LaunchSettings(
        n_gpu_layers=20,
        ctx_size=2048,
        parallel=2,
        threads=3,
        memory_limit=6 * GIB,
        gpu_devices=(1, 3),
        embedding=True,
        spec_decoding=True,
        draft_n_max=4,
        extra_args=("--chat-template", "a b"),
    )
    body = settings.to_body()
    assert body["memory_limit"] == "6g"
    assert body["gpu_devices"] == "1,3"
    assert body["extra_args"] == "--chat-template 'a b'"
    assert LaunchSettings.from_body(body) == settings


def test_defaults_round_trip() -> None:
    assert LaunchSettings.from_body(LaunchSettings().to_body()) == LaunchSettings()
