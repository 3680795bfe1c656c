"""ModelLibrary.delete over real files: shards together, sidecars, and every refusal."""
from __future__ import annotations

import os

import pytest

from llamaman.errors import Conflict, Invalid, NotFound
from llamaman.models.library import ModelLibrary
from llamaman.models.source_file import sidecar_path, write_sidecar
from tests.modelkit import write_gguf, write_hf_dir, write_shards


def names(lib: ModelLibrary) -> set[str]:
    return {entry["name"] for entry in lib.list()}


def test_delete_single_file_and_sidecar(models, library):
    path = write_gguf(models / "m.gguf")
    keep = write_gguf(models / "keep.gguf")
    write_sidecar(path, "org/m")
    library.start()
    result = library.delete(str(path))
    assert result == {"deleted": str(path), "files": [str(path)]}
    assert not path.exists() and not sidecar_path(path).exists() and keep.exists()
    assert names(library) == {"keep"}


@pytest.mark.parametrize("named", [0, 1, 2])
def test_delete_removes_all_shards_together(models, library, named):
    shards = write_shards(models / "split", "big", 3)
    write_sidecar(shards[0], "org/big")
    library.start()
    result = library.delete(str(shards[named]))
    assert result["deleted"] == str(shards[0]) and result["files"] == [str(p) for p in shards]
    assert not any(p.exists() for p in shards) and not sidecar_path(shards[0]).exists()
    assert library.list() == []


def test_delete_relative_path_and_hf_folder(models, library):
    folder = write_hf_dir(models / "org" / "hf-model")
    write_gguf(models / "r.gguf")
    library.start()
    library.delete("r.gguf")
    library.delete("org/hf-model")
    assert not folder.exists() and (models / "org").is_dir() and library.list() == []


def test_delete_refuses_models_dir_traversal_and_outside(models, tmp_path, library):
    victim = write_gguf(tmp_path / "victim.gguf")
    write_gguf(models / "m.gguf")
    (models / "config.json").write_text("{}")
    library.start()
    for raw in (str(models), ".", "", "./", "../victim.gguf", "sub/../../victim.gguf", str(victim),
                "/etc/passwd", None, 3, "x\x00.gguf"):
        with pytest.raises(Invalid):
            library.delete(raw)
    assert victim.exists() and models.is_dir() and names(library) == {"m"}


def test_delete_refuses_symlink_escape(models, tmp_path, library):
    victim = write_gguf(tmp_path / "victim.gguf")
    os.symlink(victim, models / "escape.gguf")
    os.symlink(tmp_path, models / "dirlink")
    library.start()
    for raw in ("escape.gguf", str(models / "escape.gguf"), "dirlink/victim.gguf"):
        with pytest.raises(Invalid, match="outside"):
            library.delete(raw)
    assert victim.exists() and os.path.islink(models / "escape.gguf")


def test_delete_symlink_inside_removes_only_the_link(models, library):
    real = write_gguf(models / "real.gguf")
    os.symlink(real, models / "alias.gguf")
    library.start()
    library.delete("alias.gguf")
    assert real.exists() and not os.path.lexists(models / "alias.gguf")
    assert names(library) == {"real"}


def test_delete_refuses_non_model_files(models, library):
    (models / "notes.txt").write_text("keep me")
    (models / "folder").mkdir()
    library.start()
    for raw in ("notes.txt", "folder"):
        with pytest.raises(Invalid, match="not a model"):
            library.delete(raw)
    assert (models / "notes.txt").exists() and (models / "folder").is_dir()


def test_delete_unknown_is_not_found(models, library):
    library.start()
    with pytest.raises(NotFound):
        library.delete("missing.gguf")


def test_delete_sees_a_file_created_after_the_last_scan(models, library):
    library.start()
    path = write_gguf(models / "late.gguf")
    library.delete("late.gguf")
    assert not path.exists()


def test_delete_refused_while_in_use(models, library):
    path = write_gguf(models / "busy.gguf")
    shards = write_shards(models, "s", 2)
    folder = write_hf_dir(models / "hf")
    os.symlink(path, models / "via-link.gguf")
    library.start()
    with pytest.raises(Conflict):
        library.delete("busy.gguf", busy=[str(path)])
    with pytest.raises(Conflict):
        library.delete("busy.gguf", busy=[str(models / "via-link.gguf")])  # same real file
    with pytest.raises(Conflict):
        library.delete(str(shards[1]), busy=[str(shards[0])])
    with pytest.raises(Conflict):
        library.delete("hf", busy=[str(folder / "model.safetensors")])
    assert path.exists() and all(p.exists() for p in shards) and folder.is_dir()
    library.delete("busy.gguf", busy=[str(shards[0])])
    assert not path.exists()
