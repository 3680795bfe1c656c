"""llama-server command building, forbidden extra args and "parse command"."""

from __future__ import annotations

import shlex

import pytest

from llamaman.errors import Invalid
from llamaman.runtime.args import build_args, parse_command
from llamaman.runtime.launch_settings import LaunchSettings
from llamaman.runtime.managed_flags import check_extra_args


def args_for(**settings: object) -> list[str]:
    return build_args(
        LaunchSettings(**settings), model="/models/m.gguf", host="127.0.0.1", port=9001
    )


def test_defaults_build_the_readme_flags_in_order() -> None:
    assert args_for() == [
        "--model",
        "/models/m.gguf",
        "--host",
        "127.0.0.1",
        "--port",
        "9001",
        "--n-gpu-layers",
        "-1",
        "--ctx-size",
        "4096",
    ]


def test_every_setting_maps_to_its_flag() -> None:
    args = args_for(
        n_gpu_layers=0,
        ctx_size=8192,
        parallel=4,
        threads=2,
        embedding=True,
        spec_decoding=True,
        draft_n_max=3,
        extra_args=("--flash-attn", "on"),
    )
    assert args[6:] == [
        "--n-gpu-layers",
        "0",
        "--ctx-size",
        "8192",
        "--parallel",
        "4",
        "--threads",
        "2",
        "--embeddings",
        "--spec-type",
        "draft-mtp",
        "--spec-draft-n-max",
        "3",
        "--flash-attn",
        "on",
    ]


def test_api_key_never_appears_on_the_command_line() -> None:
    assert not any("api-key" in a for a in args_for(extra_args=("--temp", "0.1")))


def test_draft_n_max_is_only_used_with_spec_decoding() -> None:
    assert "--spec-draft-n-max" not in args_for(draft_n_max=5)
    assert args_for(spec_decoding=True, draft_n_max=None)[-2:] == ["--spec-type", "draft-mtp"]


def test_memory_limit_and_gpu_devices_are_not_llama_server_flags() -> None:
    assert args_for(memory_limit=2**30, gpu_devices=(0, 1)) == args_for()


@pytest.mark.parametrize(
    "tokens, flag",
    [
        (["--host", "0.0.0.0"], "--host"),
        (["--host=0.0.0.0"], "--host"),
        (["--port", "80"], "--port"),
        (["--port=80"], "--port"),
        (["--api-key", "x"], "--api-key"),
        (["--api-key=x"], "--api-key"),
        (["--api-key-file", "/k"], "--api-key-file"),
        (["--api-key-file=/k"], "--api-key-file"),
        (["-m", "/etc/passwd"], "-m"),
        (["-m=/x.gguf"], "-m"),
        (["--model", "/x.gguf"], "--model"),
        (["--model=/x.gguf"], "--model"),
        (["-hf", "org/repo"], "-hf"),
        (["--hf-repo=org/repo"], "--hf-repo"),
        (["--model-url", "http://x"], "--model-url"),
        (["--flash-attn", "on", "--port", "1"], "--port"),
    ],
)
def test_extra_args_may_not_override_managed_flags(tokens: list[str], flag: str) -> None:
    with pytest.raises(Invalid) as info:
        check_extra_args(tokens)
    assert flag in info.value.message
    assert info.value.extra["flag"] == flag


def test_build_args_rechecks_extra_args() -> None:
    with pytest.raises(Invalid, match="--port"):
        args_for(extra_args=("--port", "1"))


@pytest.mark.parametrize(
    "tokens", [["--portable"], ["-mg", "1"], ["--model-draft", "/d.gguf"], ["--hostname"]]
)
def test_similar_flags_are_allowed(tokens: list[str]) -> None:
    check_extra_args(tokens)


def test_parse_command_reads_settings_and_keeps_unknown_flags() -> None:
    parsed = parse_command(
        "/opt/llama/llama-server -m /models/a.gguf -ngl 99 -c 8192 -np 2 -t 6 --embedding "
        "--port 8080 --host 0.0.0.0 --api-key secret --flash-attn on --temp 0.7 --no-mmap"
    )
    assert parsed == {
        "model_path": "/models/a.gguf",
        "n_gpu_layers": 99,
        "ctx_size": 8192,
        "parallel": 2,
        "threads": 6,
        "embedding": True,
        "port": 8080,
        "extra_args": "--flash-attn on --temp 0.7 --no-mmap",
        "ignored": ["--host", "--api-key"],
    }


def test_parse_command_accepts_equals_spellings_and_long_names() -> None:
    parsed = parse_command("llama-server --model=/m.gguf --gpu-layers=all --ctx-size=0 --threads=3")
    assert parsed["model_path"] == "/m.gguf"
    assert parsed["n_gpu_layers"] == -1
    assert (parsed["ctx_size"], parsed["threads"]) == (0, 3)


def test_parse_command_without_binary_and_with_env_prefix() -> None:
    parsed = parse_command("CUDA_VISIBLE_DEVICES=0,2 HF_TOKEN=x -m /m.gguf")
    assert parsed["gpu_devices"] == "0,2"
    assert parsed["model_path"] == "/m.gguf"
    assert parsed["ignored"] == ["HF_TOKEN"]


def test_parse_command_keeps_negative_values_with_their_flag() -> None:
    parsed = parse_command("llama-server -ngl -1 --seed -1 --n-predict -2")
    assert parsed["n_gpu_layers"] == -1
    assert shlex.split(parsed["extra_args"]) == ["--seed", "-1", "--n-predict", "-2"]


def test_parse_command_maps_only_mtp_drafting() -> None:
    mtp = parse_command("llama-server --spec-type draft-mtp --spec-draft-n-max 4")
    assert (mtp["spec_decoding"], mtp["draft_n_max"]) == (True, 4)
    other = parse_command("llama-server --spec-type ngram-cache --spec-draft-n-max 4")
    assert "spec_decoding" not in other
    assert other["extra_args"] == "--spec-type ngram-cache --spec-draft-n-max 4"


def test_parse_command_keeps_auto_gpu_layers_as_extra() -> None:
    parsed = parse_command("llama-server -ngl auto")
    assert "n_gpu_layers" not in parsed
    assert parsed["extra_args"] == "--n-gpu-layers auto"


def test_parse_command_last_repeated_flag_wins() -> None:
    assert parse_command("llama-server -c 1024 --ctx-size 2048")["ctx_size"] == 2048


@pytest.mark.parametrize(
    "cmdline, message",
    [
        ("llama-server -c", "-c needs a value"),
        ("llama-server -c big", "ctx_size"),
        ("llama-server 'x", "quotation"),
    ],
)
def test_parse_command_rejects_broken_commands(cmdline: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse_command(cmdline)


@pytest.mark.parametrize(
    "settings",
    [
        LaunchSettings(),
        LaunchSettings(n_gpu_layers=0, ctx_size=2048, parallel=3, threads=2),
        LaunchSettings(embedding=True, extra_args=("--pooling", "mean", "--no-mmap")),
        LaunchSettings(spec_decoding=True, draft_n_max=5),
        LaunchSettings(spec_decoding=True, draft_n_max=None),
        LaunchSettings(extra_args=("--chat-template", "a b 'c'", "--seed", "-1")),
    ],
)
def test_settings_survive_build_then_parse(settings: LaunchSettings) -> None:
    args = build_args(settings, model="/models/dir/m 1.gguf", host="127.0.0.1", port=9000)
    parsed = parse_command(shlex.join(["llama-server", *args]))
    assert parsed.pop("model_path") == "/models/dir/m 1.gguf"
    assert parsed.pop("port") == 9000
    assert parsed.pop("ignored") == ["--host"]
    assert LaunchSettings.from_body(parsed) == settings
