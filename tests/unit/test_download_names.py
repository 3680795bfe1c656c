"""Repo ids, paths in a repo, shard expansion, llamactl tags and cache names, file plans."""
from __future__ import annotations

from pathlib import Path

import pytest

from llamaman.downloads import names
from llamaman.downloads.failures import DownloadFailed
from llamaman.downloads.hub import RemoteFile, RepoSnapshot
from llamaman.downloads.plan import plan_files, select_tag_files
from llamaman.errors import Invalid
from llamaman.settings.service import mask_token

SHARDS = [f"m-Q8_0-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]


@pytest.mark.parametrize("repo_id", ["x/.", "../a", "/etc/passwd", "a/b/c", "..%2F..", "a/..", "a/..b",
                                     "a", "", "a/", "/a", "a/b ", "a\\b/c", None, 3, ".a/b", "a/-b"])
def test_bad_repo_ids(repo_id):
    with pytest.raises(Invalid):
        names.check_repo_id(repo_id)


@pytest.mark.parametrize("repo_id", ["bartowski/Llama-3.2-3B-Instruct-GGUF", "a/b", "Org_1/m.v2"])
def test_good_repo_ids(repo_id):
    assert names.check_repo_id(repo_id) == repo_id


@pytest.mark.parametrize("filename", ["../x.gguf", "/etc/passwd", "a/../../b", "a/./b", "a//b", "a/",
                                      "a\\b", "x\x00y", "..", ".", 7, "a" * 1001])
def test_bad_filenames(filename):
    with pytest.raises(Invalid):
        names.check_filename(filename)


def test_blank_filename_means_the_whole_repository():
    assert names.check_filename("") is None and names.check_filename("  ") is None
    assert names.check_filename(None) is None
    assert names.check_filename("Q4_K_M/model.gguf") == "Q4_K_M/model.gguf"


def test_destinations_stay_inside_the_root(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "models" / "link").symlink_to(tmp_path / "outside")
    for bad in ("models", "models/../outside/x.gguf", "models/link/x.gguf", "elsewhere.gguf"):
        with pytest.raises(Invalid):
            names.inside(tmp_path / "models", tmp_path / bad)
    assert names.inside(tmp_path / "models", tmp_path / "models" / "a" / "b.gguf") == tmp_path / "models/a/b.gguf"


def test_a_shard_expands_to_every_shard():
    listing = [*SHARDS, "m-Q4_K_M.gguf", "m-Q8_0-00001-of-00002.gguf"]
    assert names.shard_siblings(SHARDS[1], listing) == SHARDS
    assert names.shard_siblings("m-Q4_K_M.gguf", listing) == ["m-Q4_K_M.gguf"]


def test_upper_case_shards_expand_with_their_own_spelling():
    upper = [f"M-0000{i}-of-00002.GGUF" for i in (1, 2)]
    assert names.shard_siblings(upper[1], [*upper, "M-00001-of-00002.gguf"]) == upper


def test_further_shards_follow_an_explicit_first_destination():
    first = Path("/m/renamed-00001-of-00003.gguf")
    assert names.sibling_shard_path(first, SHARDS[2]) == Path("/m/renamed-00003-of-00003.gguf")
    assert names.sibling_shard_path(Path("/m/x.gguf"), "d/y.gguf") == Path("/m/y.gguf")


@pytest.mark.parametrize(("ref", "expected"), [
    ("bartowski/Llama-GGUF:Q4_K_M", ("bartowski/Llama-GGUF", "Q4_K_M")),
    ("bartowski/Llama-GGUF", ("bartowski/Llama-GGUF", "latest")),
    ("hf.co/org/m:q8_0", ("org/m", "q8_0")),
])
def test_model_references(ref, expected):
    assert names.parse_model_ref(ref) == expected


@pytest.mark.parametrize("ref", ["", "org", "../x:Q4", "org/m:../../x", "org/m:a b", None])
def test_bad_model_references(ref):
    with pytest.raises(Invalid):
        names.parse_model_ref(ref)


def test_tags_match_whole_quantization_words_case_insensitively():
    assert names.matches_tag("Llama-3.2-3B-Instruct-Q4_K_M.gguf", "q4_k_m")
    assert names.matches_tag("Q4_K_M/model-00001-of-00002.gguf", "Q4_K_M") is False  # the file name counts
    assert not names.matches_tag("model-Q4_K_M.gguf", "Q4_K")
    assert not names.matches_tag("model-IQ4_XS.gguf", "Q4_XS")


def test_cache_names_follow_llamactl():
    assert names.cache_name("bartowski/Llama-3.2-3B-Instruct-GGUF", "model-Q4_K_M.gguf") == \
        "bartowski_Llama-3.2-3B-Instruct-GGUF_model-Q4_K_M.gguf"
    assert names.cache_name("o/m", "sub/x.gguf") == "o_m_sub_x.gguf"


def test_tag_selection_takes_all_parts_mmproj_and_preset():
    listing = [*SHARDS, "m-Q4_K_M.gguf", "mmproj-m-f16.gguf", "mmproj-m-Q8_0.gguf", "preset.ini", "README.md"]
    assert select_tag_files(listing, "Q8_0", "o/m") == [*SHARDS, "mmproj-m-Q8_0.gguf", "preset.ini"]
    assert select_tag_files(listing, "latest", "o/m") == ["m-Q4_K_M.gguf", "mmproj-m-f16.gguf", "preset.ini"]
    assert select_tag_files(["b.gguf", "a-Q2_K.gguf"], "latest", "o/m") == ["a-Q2_K.gguf"]
    with pytest.raises(DownloadFailed, match="no GGUF file for tag 'Q5_K_S'"):
        select_tag_files(listing, "Q5_K_S", "o/m")
    with pytest.raises(DownloadFailed, match="no GGUF model files"):
        select_tag_files(["README.md", "mmproj-f16.gguf"], "latest", "o/m")


def snapshot(*files: str) -> RepoSnapshot:
    return RepoSnapshot("o/m", "c" * 40, {f: RemoteFile(f, 10, None) for f in files})


def test_plans_place_files_under_the_repo_folder(tmp_path):
    job = {"kind": "file", "layout": "repo", "repo_id": "o/m", "filename": None}
    planned = plan_files(job, snapshot("a.gguf", "d/b.txt", "../evil", "d/../../evil2"), tmp_path, tmp_path / "c")
    assert [(f["name"], f["dest"]) for f in planned] == [
        ("a.gguf", str(tmp_path / "o/m/a.gguf")), ("d/b.txt", str(tmp_path / "o/m/d/b.txt"))]


def test_plans_honour_an_explicit_destination_and_the_cache_layout(tmp_path):
    job = {"kind": "file", "layout": "repo", "repo_id": "o/m", "filename": SHARDS[0],
           "dest_path": str(tmp_path / "x" / "keep-00001-of-00003.gguf")}
    planned = plan_files(job, snapshot(*SHARDS), tmp_path, tmp_path / "c")
    assert [Path(f["dest"]).name for f in planned] == [f"keep-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    tagged = {"kind": "tag", "layout": "cache", "repo_id": "o/m", "tag": "Q8_0"}
    cached = plan_files(tagged, snapshot(*SHARDS, "preset.ini"), tmp_path, tmp_path / "c")
    assert [f["dest"] for f in cached][-1] == str(tmp_path / "c" / "o_m_preset.ini")
    with pytest.raises(DownloadFailed, match="'nope.gguf' is not a file of o/m"):
        plan_files({**job, "filename": "nope.gguf", "dest_path": None}, snapshot("a.gguf"), tmp_path, tmp_path)


def test_speed_limits():
    assert names.check_speed_limit(None) == 0.0 and names.check_speed_limit("12.5") == 12.5
    for bad in (-1, "x", True, float("nan"), 10**7, [1]):
        with pytest.raises(Invalid):
            names.check_speed_limit(bad)


def test_tokens_are_masked():
    assert mask_token("hf_abcdefghijklmnopqrstuvwxyz") == "hf_…wxyz"
    assert mask_token("short-token") == "…" and mask_token(None) == "" and mask_token("") == ""
