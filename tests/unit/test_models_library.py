"""ModelLibrary over real files in a temp MODELS_DIR: entries, shards, mmproj, HF, changes, find."""
from __future__ import annotations

import json
import os
import time

import pytest

from llamaman.errors import Invalid, NotFound
from llamaman.models.library import ModelLibrary
from llamaman.models.source_file import sidecar_path, write_sidecar
from tests.modelkit import TEMPLATE, write_gguf, write_hf_dir, write_shards


def by_name(lib: ModelLibrary) -> dict[str, dict]:
    return {entry["name"]: entry for entry in lib.list()}


def test_gguf_entry_fields(models, library):
    path = write_gguf(models / "Tiny-Llama-Q4_K_M.gguf", layers=6, context=4096, file_type=15,
                      size_label="1.1B")
    library.start()
    [entry] = library.list()
    assert entry == {
        "path": str(path), "name": "tiny-llama-q4_k_m", "type": "gguf", "size": path.stat().st_size,
        "modified": path.stat().st_mtime_ns / 1e9, "quant": "Q4_K_M", "architecture": "llama",
        "parameter_size": "1.1B", "layers": 6, "context_length": 4096, "has_chat_template": True,
        "shards": 1, "repo_id": None, "mmproj": None, "unreadable": False,
        "size_bytes": path.stat().st_size, "size_display": "0 MB",  # LlamaMan 1.2.1's names
    }


def test_quant_and_parameter_size_fallbacks(models, library):
    write_gguf(models / "a" / "phi-IQ2_XXS.gguf", file_type=None, template=None, tensors=2)
    write_gguf(models / "b.gguf", file_type=1, arch="qwen2", layers=28)
    library.start()
    entries = by_name(library)
    phi = entries["phi-iq2_xxs"]
    assert phi["quant"] == "IQ2_XXS" and phi["parameter_size"] == "64"
    assert phi["has_chat_template"] is False
    assert entries["b"]["quant"] == "F16" and entries["b"]["architecture"] == "qwen2"
    assert entries["b"]["layers"] == 28


def test_shards_are_one_model(models, library):
    shards = write_shards(models / "big", "Big-Model-Q8_0", 3)
    library.start()
    [entry] = library.list()
    assert entry["path"] == str(shards[0]) and entry["shards"] == 3
    assert entry["size"] == sum(p.stat().st_size for p in shards)
    assert entry["name"] == "big-model-q8_0-00001-of-00003"
    assert entry["layers"] == 4 and entry["parameter_size"] == "7B" and entry["quant"] == "Q4_K_M"
    assert "incomplete" not in entry
    assert library.lookup(str(shards[2]))["path"] == str(shards[0])
    assert library.metadata(str(shards[0]))["shard_files"] == [str(p) for p in shards]


def test_incomplete_shard_set_is_flagged(models, library):
    shards = write_shards(models, "part", 3, present=[1, 3])
    library.start()
    [entry] = library.list()
    assert entry["shards"] == 2 and entry["incomplete"] is True and entry["path"] == str(shards[0])


def test_mmproj_is_attached_not_listed(models, library):
    model = write_gguf(models / "vision" / "gemma-vl-Q4_K_M.gguf")
    projector = write_gguf(models / "vision" / "mmproj-gemma-F16.gguf", arch="clip", layers=None)
    write_gguf(models / "other.gguf")
    library.start()
    entries = by_name(library)
    assert set(entries) == {"gemma-vl-q4_k_m", "other"}
    assert entries["gemma-vl-q4_k_m"]["mmproj"] == str(projector)
    assert entries["other"]["mmproj"] is None
    assert library.lookup(str(model))["mmproj"] == str(projector)


def test_hf_directory(models, library):
    folder = write_hf_dir(models / "org" / "Llama-HF")
    write_gguf(folder / "inside.gguf")
    write_sidecar(folder, "org/Llama-HF")
    library.start()
    entries = by_name(library)
    hf = entries["llama-hf"]
    assert hf["type"] == "hf" and hf["path"] == str(folder)
    assert hf["architecture"] == "LlamaForCausalLM" and hf["layers"] == 22
    assert hf["context_length"] == 8192 and hf["quant"] == "bfloat16"
    assert hf["has_chat_template"] is True and hf["repo_id"] == "org/Llama-HF"
    assert hf["size"] == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert entries["inside"]["type"] == "gguf"


def test_models_dir_itself_is_never_an_hf_model(models, library):
    (models / "config.json").write_text("{}")
    library.start()
    assert library.list() == []


def test_sidecar_repo_id(models, library):
    path = write_gguf(models / "m.gguf")
    shards = write_shards(models, "s", 2)
    write_sidecar(path, "bartowski/M-GGUF", filename="m.gguf")
    write_sidecar(shards[0], "org/S-GGUF")
    bad = write_gguf(models / "bad.gguf")
    sidecar_path(bad).write_text(json.dumps({"repo_id": "../../etc"}))
    garbage = write_gguf(models / "garbage.gguf")
    sidecar_path(garbage).write_text("{not json")
    library.start()
    entries = by_name(library)
    assert json.loads(sidecar_path(path).read_text()) == {"repo_id": "bartowski/M-GGUF", "filename": "m.gguf"}
    assert entries["m"]["repo_id"] == "bartowski/M-GGUF"
    assert entries["s-00001-of-00002"]["repo_id"] == "org/S-GGUF"
    assert entries["bad"]["repo_id"] is None and entries["garbage"]["repo_id"] is None
    with pytest.raises(Invalid):
        write_sidecar(path, "not a repo")


def test_unreadable_files_are_listed_with_reason(models, library):
    (models / "junk-Q5_K_M.gguf").write_bytes(b"not a gguf at all")
    (models / "empty.gguf").write_bytes(b"")
    good = write_gguf(models / "cut.gguf").read_bytes()
    (models / "cut.gguf").write_bytes(good[:50])
    library.start()
    entries = by_name(library)
    assert entries["junk-q5_k_m"]["unreadable"] is True and "magic" in entries["junk-q5_k_m"]["reason"]
    assert entries["junk-q5_k_m"]["quant"] == "Q5_K_M" and entries["junk-q5_k_m"]["layers"] is None
    assert entries["empty"]["unreadable"] and entries["cut"]["unreadable"]


def test_hidden_dirs_and_escaping_symlinks_are_skipped(models, tmp_path, library):
    write_gguf(models / ".cache" / "partial.gguf")
    outside = write_gguf(tmp_path / "outside.gguf")
    os.symlink(outside, models / "escape.gguf")
    os.symlink(tmp_path, models / "linked-dir")
    inside = write_gguf(models / "real.gguf")
    os.symlink(inside, models / "alias.gguf")
    library.start()
    assert set(by_name(library)) == {"real", "alias"}


def test_list_is_sorted_and_json_matches(models, library):
    for name in ("zeta", "Alpha", "mid"):
        write_gguf(models / f"{name}.gguf")
    library.start()
    names = [e["name"] for e in library.list()]
    assert names == ["alpha", "mid", "zeta"]
    assert json.loads(library.list_json()) == library.list()


def test_find_and_metadata(models, library):
    path = write_gguf(models / "sub" / "Qwen3-8B-Q4_K_M.gguf")
    library.start()
    for key in ("qwen3-8b-q4_k_m", "QWEN3-8B-Q4_K_M:latest", "Qwen3-8B-Q4_K_M.gguf", str(path),
                "sub/Qwen3-8B-Q4_K_M.gguf"):
        assert library.find(key)["path"] == str(path), key
    assert library.find("nope") is None and library.find("") is None
    meta = library.metadata(str(path))
    assert meta["chat_template"] == TEMPLATE and meta["metadata"]["llama.block_count"] == 4
    assert "chat_template" not in library.list()[0]


def test_lookup_errors(models, tmp_path, library):
    write_gguf(models / "m.gguf")
    (models / "notes.txt").write_text("hi")
    (models / "plain-dir").mkdir()
    library.start()
    for raw in ("../outside.gguf", str(tmp_path / "x.gguf"), str(models), ".", "", None, 5, "a\x00b"):
        with pytest.raises(Invalid):
            library.lookup(raw)
    for raw in ("notes.txt", "plain-dir"):
        with pytest.raises(Invalid, match="not a model"):
            library.lookup(raw)
    with pytest.raises(NotFound):
        library.lookup("missing.gguf")
    assert library.layers("m.gguf") == 4


def test_unchanged_files_are_not_parsed_again(models, library):
    write_gguf(models / "a.gguf")
    write_shards(models, "s", 2)
    library.start()
    assert library.parse_count == 3
    library.refresh()
    library.invalidate()
    assert library.parse_count == 3
    write_gguf(models / "b.gguf")
    library.refresh()
    assert library.parse_count == 4 and "b" in by_name(library)
    write_gguf(models / "a.gguf", layers=12)  # rewritten: size/mtime changed
    os.utime(models / "a.gguf", ns=(1, 1))
    library.refresh()
    assert library.parse_count == 5 and by_name(library)["a"]["layers"] == 12


def test_add_and_remove_appear_after_refresh(models, library):
    library.start()
    assert library.list() == []
    path = write_gguf(models / "new" / "fresh.gguf")
    assert library.list() == []  # requests never touch the disk
    library.invalidate()
    assert [e["name"] for e in library.list()] == ["fresh"]
    path.unlink()
    library.invalidate()
    assert library.list() == []


def test_watcher_picks_up_changes(models):
    library = ModelLibrary(models, poll_s=0.05)
    library.start()
    try:
        write_gguf(models / "deep" / "er" / "w.gguf")
        assert wait_for(lambda: [e["name"] for e in library.list()] == ["w"])
        (models / "deep" / "er" / "w.gguf").unlink()
        assert wait_for(lambda: library.list() == [])
        scans = library.scan_count
        time.sleep(0.3)
        assert library.scan_count == scans  # nothing changed: no rescan
    finally:
        library.stop()
    assert library._thread is None


def test_missing_models_dir_then_created(tmp_path):
    root = tmp_path / "later"
    library = ModelLibrary(root, poll_s=0.05)
    library.start()
    try:
        assert library.list() == []
        write_gguf(root / "m.gguf")
        assert wait_for(lambda: len(library.list()) == 1)
    finally:
        library.stop()


def wait_for(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_views_render_once_per_index_change(models, library):
    write_gguf(models / "one.gguf")
    library.refresh()
    calls = []

    def names(entries):
        calls.append(len(entries))
        return sorted(e["name"] for e in entries)

    assert json.loads(library.view("names", names)) == ["one"]
    assert json.loads(library.view("names", names)) == ["one"]
    assert calls == [1]  # the second read reused the rendering
    write_gguf(models / "two.gguf")
    library.invalidate()
    assert json.loads(library.view("names", names)) == ["one", "two"]
    assert calls == [1, 2]
