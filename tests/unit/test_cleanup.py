"""Cleanup scheduling and its settings: due times, per-node stamps, read-only stamps, failures.

The download and instance services are in-memory fakes of their list/remove interface; the
storage-backed behaviour is in tests/integration/test_cleanup_jobs.py.
"""
import pytest

from llamaman.cleanup.service import AGE_SWEEP_S, CleanupService
from llamaman.errors import Conflict, Invalid
from llamaman.instances.reconcile import ReconcileReport
from llamaman.settings.service import SettingsService, validate_patch
from tests.unit.test_settings import MemorySettings

HOUR = 3600.0
NOW = 1_800_000_000.0


class Records:
    """Fake of the list/remove interface both services offer; remove may refuse like theirs."""

    def __init__(self, *records: dict, refuse: frozenset = frozenset()) -> None:
        self.records = {r["id"]: r for r in records}
        self.refuse = refuse
        self.fail = False

    def list(self) -> list[dict]:
        if self.fail:
            raise RuntimeError("storage is down")
        return list(self.records.values())

    def remove(self, record_id: str) -> None:
        if record_id in self.refuse:
            raise Conflict(f"{record_id} became active")
        del self.records[record_id]


def make(downloads=None, instances=None, **cleanup):
    settings = SettingsService(MemorySettings(), "srv1")
    settings.save({"cleanup": {"downloads_enabled": False, "instances_enabled": False,
                               "stale_records_enabled": False, **cleanup}})
    clock = [NOW]
    service = CleanupService(settings, downloads or Records(), instances or Records(), lambda: clock[0])
    return service, settings, clock


def test_a_job_runs_when_due_and_stamps_this_node_only():
    service, settings, clock = make(downloads_enabled=True)
    assert service.tick() == {"downloads": 0}
    assert service.tick() == {}, "not due before its interval"
    clock[0] += AGE_SWEEP_S
    assert service.tick() == {"downloads": 0}
    assert settings.get()["cleanup"]["downloads_last_run_at"] == clock[0]
    other = SettingsService(settings.repo, "srv2")
    assert other.get()["cleanup"]["downloads_last_run_at"] is None, "each node stamps its own runs"
    assert other.get()["cleanup"]["downloads_enabled"] is True, "the toggles are shared"


def test_the_stale_check_follows_its_interval_setting():
    service, _, clock = make(stale_records_enabled=True, stale_records_interval_min=10)
    service.stale.run = ReconcileReport  # a check that finds everything in order
    assert service.tick() == {"stale_records": 0}
    clock[0] += 9 * 60
    assert service.tick() == {}
    clock[0] += 60
    assert service.tick() == {"stale_records": 0}


def test_a_clock_set_back_does_not_stall_the_jobs():
    service, _, clock = make(downloads_enabled=True)
    service.tick()
    clock[0] -= 10 * HOUR
    assert service.tick() == {"downloads": 0}


def test_age_counts_from_the_end_and_undated_or_refused_records_stay():
    downloads = Records(
        {"id": "old", "status": "failed", "finished_at": NOW - 30 * HOUR, "created_at": 0},
        {"id": "updated", "status": "cancelled", "finished_at": None, "updated_at": NOW - 30 * HOUR},
        {"id": "recent", "status": "completed", "finished_at": NOW - HOUR, "created_at": NOW - 90 * HOUR},
        {"id": "undated", "status": "completed"},
        {"id": "raced", "status": "failed", "finished_at": NOW - 30 * HOUR},
        {"id": "paused", "status": "paused", "created_at": 0},
        refuse=frozenset({"raced"}))
    service, _, _ = make(downloads=downloads, downloads_enabled=True, downloads_max_age_hours=24)
    assert service.tick() == {"downloads": 2}
    assert set(downloads.records) == {"recent", "undated", "raced", "paused"}


def test_a_failing_job_is_stamped_and_does_not_stop_the_others():
    downloads = Records()
    downloads.fail = True
    instances = Records({"id": "i1", "status": "stopped", "stopped_at": NOW - 50 * HOUR})
    service, settings, _ = make(downloads, instances, downloads_enabled=True, instances_enabled=True)
    assert service.tick() == {"downloads": 0, "instances": 1}
    assert settings.get()["cleanup"]["downloads_last_run_at"] == NOW
    assert instances.records == {}


@pytest.mark.parametrize("cleanup", [
    {"downloads_max_age_hours": 0}, {"instances_max_age_hours": -1}, {"stale_records_interval_min": 0},
    {"stale_records_interval_min": -5}, {"downloads_max_age_hours": "24"}, {"instances_max_age_hours": 2.5},
    {"stale_records_interval_min": False}, {"downloads_enabled": "true"}, {"instances_enabled": 0},
    {"unknown": 1}, {"downloads_last_run_at": "now"}, {"stale_records_last_run_at": -3},
    {"instances_last_run_at": True}, None, [], "off",
])
def test_bad_cleanup_values_are_refused_with_the_section_named(cleanup):
    with pytest.raises(Invalid, match="cleanup"):
        validate_patch({"cleanup": cleanup})


def test_stamps_sent_by_a_client_are_ignored_and_never_stored():
    repo = MemorySettings()
    settings = SettingsService(repo, "srv1")
    settings.stamp_cleanup("instances", NOW)
    saved = settings.save({"cleanup": {"instances_last_run_at": 5.0, "downloads_last_run_at": None,
                                       "instances_max_age_hours": 12}})
    assert saved["cleanup"]["instances_last_run_at"] == NOW
    assert saved["cleanup"]["instances_max_age_hours"] == 12
    assert "instances_last_run_at" not in repo.docs["global"]["cleanup"]
    repo.docs["global"]["cleanup"]["downloads_last_run_at"] = 7.0  # written by an older version
    assert settings.get()["cleanup"]["downloads_last_run_at"] is None
