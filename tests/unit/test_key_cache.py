"""The API key lookup cache: local changes apply at once, others' after the TTL."""
from llamaman.auth.keys import CACHE_TTL_S, ApiKeyService


class MemoryKeys:
    """In-memory ApiKeyRepository fake that counts list() calls."""

    def __init__(self) -> None:
        self.records: dict[str, dict] = {}
        self.lists = 0

    def put(self, key, record):
        self.records[key] = dict(record)

    def delete(self, key):
        return self.records.pop(key, None) is not None

    def list(self):
        self.lists += 1
        return [dict(r) for r in self.records.values()]


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def test_lookups_hit_storage_once_per_ttl_and_local_changes_apply_at_once():
    repo, clock = MemoryKeys(), Clock()
    keys = ApiKeyService(repo, clock)
    view, token = keys.create("k", "inference", None)
    for _ in range(100):
        assert keys.authenticate(token)["id"] == view["id"]
    assert repo.lists == 1
    keys.revoke(view["id"])
    assert keys.authenticate(token) is None


def test_a_key_revoked_elsewhere_stops_working_after_the_ttl():
    repo, clock = MemoryKeys(), Clock()
    keys = ApiKeyService(repo, clock)
    view, token = keys.create("k", "admin", None)
    assert keys.authenticate(token) is not None
    repo.delete(view["id"])  # another node revokes it in shared storage
    assert keys.authenticate(token) is not None
    clock.now += CACHE_TTL_S + 0.01
    assert keys.authenticate(token) is None
