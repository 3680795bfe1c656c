"""Preset rules and live apply, with in-memory fakes of our own storage and instance service."""
import copy
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from llamaman.errors import Invalid, NotFound
from llamaman.presets.service import PresetService
from llamaman.presets.validate import parse_fields, preset_key


class MemoryCollection:
    """An in-memory Collection fake that stamps the node like the real ones."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def get(self, key):
        return copy.deepcopy(self.rows.get(key))

    def list(self):
        return copy.deepcopy(list(self.rows.values()))

    def delete(self, key):
        return self.rows.pop(key, None) is not None

    def update(self, key, fn):
        new = fn(copy.deepcopy(self.rows.get(key)))
        if new is None:
            self.rows.pop(key, None)
            return None
        self.rows[key] = {**copy.deepcopy(new), "node": "n1"}
        return copy.deepcopy(self.rows[key])


class FakeInstances:
    """Instances as InstanceService.list() shows them; update_options records its calls."""

    def __init__(self, *instances: dict) -> None:
        self.instances = {i["id"]: i for i in instances}
        self.updates: list[tuple[str, dict]] = []

    def list(self):
        return copy.deepcopy(list(self.instances.values()))

    def update_options(self, instance_id, body):
        if instance_id not in self.instances:
            raise NotFound(f"no instance {instance_id}")
        self.updates.append((instance_id, body))
        self.instances[instance_id].update(body)
        return self.instances[instance_id]


def instance(instance_id, model_path, status="healthy", real=None, **fields):
    base = {"id": instance_id, "model_path": str(model_path), "real_model_path": str(real or model_path),
            "status": status, "max_concurrent": 4, "max_queue_depth": 200, "idle_timeout_min": 0.0,
            "ctx_size": 512, "n_gpu_layers": 0, "threads": 2, "parallel": 1, "extra_args": ""}
    return {**base, **fields}


@pytest.fixture
def models(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    (root / "a.gguf").write_bytes(b"GGUF")
    (root / "notes.txt").write_text("x")
    (root / "hf-model").mkdir()
    return root


def service(models, *instances):
    fake = FakeInstances(*instances)
    return PresetService(MemoryCollection(), fake, SimpleNamespace(models_dir=models)), fake


# --- paths ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["a.gguf", "./a.gguf", "sub/../a.gguf", "{models}/a.gguf",
                                 "{models_rel}/a.gguf", "/{models_rel}/a.gguf"])
def test_paths_normalise_to_one_key(models, raw):
    raw = raw.format(models=models, models_rel=str(models).lstrip("/"))
    assert preset_key(models, raw) == str(models / "a.gguf")


@pytest.mark.parametrize("raw", ["later.gguf", "dir/Later-Q4_K_M.GGUF", "hf-model", "Qwen2.5-0.5B-Instruct",
                                 "x-00001-of-00003.gguf"])
def test_missing_models_and_directories_are_accepted(models, raw):
    assert preset_key(models, raw) == os.path.normpath(models / raw)


@pytest.mark.parametrize("raw", ["../a.gguf", "/etc/x.gguf", "{models}", ".", "a/../..", "notes.txt",
                                 "later.json", "", "  ", "a\x00.gguf", 42, None, "x" * 600 + ".gguf",
                                 "y" * 300 + ".gguf", "escape.gguf"])
def test_bad_paths_are_refused_naming_model_path(models, tmp_path, raw):
    (tmp_path / "outside.gguf").write_bytes(b"GGUF")
    os.symlink(tmp_path / "outside.gguf", models / "escape.gguf")
    raw = raw.format(models=models) if isinstance(raw, str) else raw
    with pytest.raises(Invalid) as err:
        preset_key(models, raw)
    assert err.value.extra["field"] == "model_path"


# --- fields --------------------------------------------------------------------------------

def test_fields_are_normalised_like_a_launch():
    fields = parse_fields({"memory_limit": "8192m", "gpu_devices": [0, 1], "extra_args": ["--flash-attn", "on"],
                           "idle_timeout_min": 5, "proxy_sampling_top_k": 7, "threads": None})
    assert fields == {"memory_limit": "8g", "gpu_devices": "0,1", "extra_args": "--flash-attn on",
                      "idle_timeout_min": 5.0, "proxy_sampling_top_k": 7, "threads": None}


@pytest.mark.parametrize("field, value", [
    ("n_gpu_layers", -2), ("ctx_size", "big"), ("parallel", 0), ("threads", 2000), ("memory_limit", "1k"),
    ("gpu_devices", "x"), ("embedding", "yes"), ("spec_decoding", 1), ("draft_n_max", 65),
    ("extra_args", "--api-key x"), ("idle_timeout_min", -1), ("max_concurrent", 1.5),
    ("max_queue_depth", 100_001), ("share_queue", "on"), ("proxy_sampling_override_enabled", 0),
    ("proxy_sampling_temperature", 2.5), ("proxy_sampling_top_k", -1), ("proxy_sampling_top_p", 0.0),
    ("proxy_sampling_presence_penalty", -3), ("proxy_sampling_repeat_penalty", float("nan")),
    ("auto_restart", "true"), ("max_restarts", 101), ("restart_delay", -1), ("port", 8000), ("name", "x"),
    ("bogus", 1),
])
def test_each_bad_field_is_named(field, value):
    with pytest.raises(Invalid) as err:
        parse_fields({"ctx_size": 1024, field: value})
    assert err.value.extra["field"] == field


# --- service -------------------------------------------------------------------------------

def test_save_merges_and_crud(models):
    presets, _ = service(models)
    assert presets.save("a.gguf", {"ctx_size": 1024, "max_concurrent": 2})["preset"] == {
        "model_path": str(models / "a.gguf"), "ctx_size": 1024, "max_concurrent": 2}
    presets.save(str(models / "a.gguf"), {"max_concurrent": 3, "model_path": "a.gguf"})
    assert presets.get("./a.gguf") == {"model_path": str(models / "a.gguf"), "ctx_size": 1024, "max_concurrent": 3}
    assert [p["model_path"] for p in presets.list()] == [str(models / "a.gguf")]
    presets.delete("a.gguf")
    with pytest.raises(NotFound):
        presets.get("a.gguf")
    with pytest.raises(NotFound):
        presets.delete("a.gguf")


def test_body_model_path_must_name_the_same_model(models):
    presets, _ = service(models)
    with pytest.raises(Invalid):
        presets.save("a.gguf", {"model_path": "b.gguf", "ctx_size": 1024})
    assert presets.list() == []


def test_invalid_save_stores_nothing(models):
    presets, _ = service(models)
    presets.save("a.gguf", {"ctx_size": 1024})
    with pytest.raises(Invalid):
        presets.save("a.gguf", {"ctx_size": 2048, "parallel": 0})
    assert presets.get("a.gguf")["ctx_size"] == 1024


def test_merge_missing_keeps_existing_values(models):
    presets, _ = service(models)
    presets.save("a.gguf", {"ctx_size": 1024})
    merged = presets.merge_missing("a.gguf", {"ctx_size": 4096, "threads": 4})
    assert merged["ctx_size"] == 1024 and merged["threads"] == 4


def test_live_fields_apply_and_baked_fields_are_reported(models):
    path = models / "a.gguf"
    presets, fake = service(models, instance("i1", path), instance("i2", path, status="stopped"),
                            instance("i3", models / "other.gguf"), instance("i4", path, status="sleeping",
                                                                            max_concurrent=1))
    result = presets.save("a.gguf", {"max_concurrent": 1, "proxy_sampling_temperature": 0.3,
                                     "ctx_size": 2048, "threads": 2, "n_gpu_layers": 0})
    assert result["applied"] == [{"id": "i1", "fields": ["max_concurrent", "proxy_sampling_temperature"]},
                                 {"id": "i4", "fields": ["proxy_sampling_temperature"]}]
    assert result["needs_relaunch"] == [{"id": "i1", "fields": ["ctx_size"]}, {"id": "i4", "fields": ["ctx_size"]}]
    assert fake.updates == [("i1", {"max_concurrent": 1, "proxy_sampling_temperature": 0.3}),
                            ("i4", {"proxy_sampling_temperature": 0.3})]


def test_instances_match_by_real_model_path(models):
    link = models / "link.gguf"
    os.symlink(models / "a.gguf", link)
    presets, _fake = service(models, instance("i1", link, real=models / "a.gguf"))
    assert presets.save("a.gguf", {"max_queue_depth": 5})["applied"] == [{"id": "i1", "fields": ["max_queue_depth"]}]
    assert presets.save("link.gguf", {"max_queue_depth": 6})["applied"] == [{"id": "i1", "fields": ["max_queue_depth"]}]


def test_unchanged_values_report_nothing(models):
    presets, fake = service(models, instance("i1", models / "a.gguf"))
    result = presets.save("a.gguf", {"max_concurrent": 4, "ctx_size": 512})
    assert result["applied"] == [] and result["needs_relaunch"] == [] and fake.updates == []


def test_instance_gone_meanwhile_is_skipped(models):
    presets, fake = service(models, instance("i1", models / "a.gguf"))
    fake.list = lambda: [instance("gone", models / "a.gguf")]
    assert presets.save("a.gguf", {"max_concurrent": 1})["applied"] == []
    assert presets.get("a.gguf")["max_concurrent"] == 1


def test_launch_body_puts_explicit_fields_over_the_full_preset(models):
    presets, _ = service(models)
    full = {"ctx_size": 2048, "threads": 4, "max_concurrent": 2, "proxy_sampling_override_enabled": True,
            "proxy_sampling_temperature": 0.2, "extra_args": "--flash-attn on", "auto_restart": False}
    presets.save("a.gguf", full)
    body = presets.launch_body(str(models / "a.gguf"), {"threads": None, "max_concurrent": 8, "port": 8001})
    assert body == {**full, "threads": None, "max_concurrent": 8, "port": 8001,
                    "model_path": str(models / "a.gguf")}
    assert presets.launch_body(Path("./a.gguf"), {})["model_path"] == "a.gguf"
    assert presets.launch_body("a.gguf", {"model_path": "x.gguf"})["model_path"] == "x.gguf"


def test_launch_body_without_preset_or_with_a_bad_path_is_the_overrides(models):
    presets, _ = service(models)
    assert presets.launch_body("later.gguf", {"ctx_size": 1}) == {"ctx_size": 1, "model_path": "later.gguf"}
    assert presets.launch_body("../x.gguf", {}) == {"model_path": "../x.gguf"}


def test_launch_body_finds_the_preset_of_a_symlink_target(models):
    os.symlink(models / "a.gguf", models / "link.gguf")
    presets, _ = service(models)
    presets.save("a.gguf", {"ctx_size": 2048})
    assert presets.launch_body("link.gguf", {})["ctx_size"] == 2048
