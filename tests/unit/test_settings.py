import pytest

from llamaman.errors import Invalid
from llamaman.settings.service import DEFAULTS, SettingsService, validate_patch


class MemorySettings:
    """In-memory SettingsRepository fake."""

    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}

    def get(self, scope: str = "global") -> dict:
        return dict(self.docs.get(scope, {}))

    def update(self, scope, fn):
        self.docs[scope] = fn(self.get(scope))
        return self.docs[scope]


def test_defaults_follow_the_readme():
    effective = SettingsService(MemorySettings(), "srv1").get()
    assert {k: effective[k] for k in DEFAULTS} == DEFAULTS
    # LlamaMan 1.2.1's names are shown beside ours (issue 13)
    assert (effective["recording_mode"], effective["recording_retention_days"],
            effective["global_speed_limit_mbps"], effective["huggingface_tokens"]) == ("off", 0, 0, [])
    assert effective["require_auth"] is True and effective["retry_count_per_failed_download"] == 3


def test_patch_merges_and_node_scoped_keys_stay_on_their_node():
    repo = MemorySettings()
    srv1, srv2 = SettingsService(repo, "srv1"), SettingsService(repo, "srv2")
    srv1.save({"require_auth": False, "admin_ui_enforce_max_models": True,
               "cleanup": {"downloads_max_age_hours": 6}})
    assert srv2.get()["require_auth"] is False
    assert srv1.get()["admin_ui_enforce_max_models"] is True
    assert srv2.get()["admin_ui_enforce_max_models"] is False
    assert srv1.get()["cleanup"]["downloads_max_age_hours"] == 6
    assert srv1.get()["cleanup"]["downloads_enabled"] is True
    assert not srv1.require_auth()


@pytest.mark.parametrize("patch", [
    [], "x", {"require_auth": "yes"}, {"retry_count_per_failed_download": 0},
    {"retry_count_per_failed_download": 2.5}, {"unknown": 1}, {"cleanup": []},
    {"cleanup": {"downloads_max_age_hours": -1}}, {"cleanup": {"bogus": True}},
    {"request_recording_mode": "always"},
])
def test_bad_patches_are_rejected(patch):
    with pytest.raises(Invalid):
        validate_patch(patch)


def test_rejected_patch_changes_nothing():
    repo = MemorySettings()
    service = SettingsService(repo, "srv1")
    with pytest.raises(Invalid):
        service.save({"require_auth": False, "retry_count_per_failed_download": "three"})
    assert repo.docs == {}
