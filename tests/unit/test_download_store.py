"""The download job store and the runner that works through it, with in-memory fakes of our own
interfaces (the job Collection and the Hub client); no network, no service."""
from __future__ import annotations

from pathlib import Path

from llamaman.downloads.failures import DownloadFailed
from llamaman.downloads.jobs import COMPLETED, FAILED, Control, Progress, new_job
from llamaman.downloads.logs import DownloadLogs
from llamaman.downloads.runner import Runner
from llamaman.downloads.store import JobStore
from llamaman.downloads.throttle import TokenBucket


class MemoryCollection:
    """In-memory Collection."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def get(self, key):
        return self.rows.get(key)

    def list(self):
        return list(self.rows.values())

    def put(self, key, record):
        self.rows[key] = dict(record)

    def delete(self, key):
        return self.rows.pop(key, None) is not None

    def update(self, key, fn):
        new = fn(self.rows.get(key))
        if new is None:
            self.rows.pop(key, None)
        else:
            self.rows[key] = new
        return new


class FailingHub:
    """A Hub client whose metadata call fails the same way every time."""

    def __init__(self, failure: DownloadFailed) -> None:
        self.failure = failure
        self.calls = 0

    def snapshot(self, repo_id, token, revision=None):
        self.calls += 1
        raise self.failure


def make_store(tmp_path: Path, secrets=lambda job_id: ()) -> JobStore:
    return JobStore(MemoryCollection(), DownloadLogs(tmp_path), secrets)


def make_runner(store: JobStore, hub, retries: tuple[bool, int] = (True, 2)) -> Runner:
    return Runner(store, hub, Path("/models"), Path("/cache"), token_for=lambda job_id: None,
                  global_limit=TokenBucket, retry_policy=lambda: retries, landed=lambda: None,
                  retry_base_s=0.0)


def queued(store: JobStore) -> dict:
    record = new_job(kind="file", layout="repo", repo_id="org/m", filename="m.gguf", tag=None)
    store.put(record)
    return record


def test_save_stamps_updated_at_and_leaves_missing_jobs_missing(tmp_path):
    store = make_store(tmp_path)
    record = queued(store)
    saved = store.save(record["id"], status=COMPLETED)
    assert saved["status"] == COMPLETED and saved["updated_at"] >= record["updated_at"]
    assert store.save("nope", status=COMPLETED) is None and store.get("nope") is None


def test_notes_mask_the_secrets_of_their_job(tmp_path):
    store = make_store(tmp_path, secrets=lambda job_id: ("hf_secret_" + job_id,))
    record = queued(store)
    store.note(record["id"], f"token hf_secret_{record['id']} and hf_secret_other")
    line = store.logs.tail(record["id"], 10)[-1]
    assert f"hf_secret_{record['id']}" not in line and "***" in line and "hf_secret_other" in line


def test_a_destination_is_claimed_by_one_job_until_it_is_released(tmp_path):
    store = make_store(tmp_path)
    assert store.claim("a", "/models/x.gguf") and store.claim("a", "/models/x.gguf")
    assert not store.claim("b", "/models/x.gguf")
    assert store.claimed_by_others("b") == {"/models/x.gguf"} and store.claimed_by_others("a") == set()
    store.track("a", Progress(0, 10))
    store.release("a")
    assert store.live("a") is None and store.claim("b", "/models/x.gguf")


def test_delete_removes_the_record_and_its_log(tmp_path):
    store = make_store(tmp_path)
    record = queued(store)
    store.note(record["id"], "hello")
    store.delete(record["id"])
    assert store.get(record["id"]) is None and store.logs.tail(record["id"], 10) == []


def test_the_runner_retries_through_the_store_then_fails(tmp_path):
    store = make_store(tmp_path)
    record = queued(store)
    hub = FailingHub(DownloadFailed("HuggingFace answered 503", retryable=True))
    make_runner(store, hub, retries=(True, 2)).run(record["id"], Control())
    final = store.get(record["id"])
    assert hub.calls == 3 and final["status"] == FAILED and final["retries"] == 2
    assert final["error"] == "HuggingFace answered 503" and final["finished_at"] is not None


def test_the_runner_does_not_retry_a_final_failure(tmp_path):
    store = make_store(tmp_path)
    record = queued(store)
    hub = FailingHub(DownloadFailed("HuggingFace answered 404 Not Found"))
    make_runner(store, hub).run(record["id"], Control())
    assert hub.calls == 1 and store.get(record["id"])["status"] == FAILED


def test_the_runner_leaves_jobs_that_are_not_queued_alone(tmp_path):
    store = make_store(tmp_path)
    record = queued(store)
    store.save(record["id"], status=COMPLETED)
    hub = FailingHub(DownloadFailed("unused"))
    make_runner(store, hub).run(record["id"], Control())
    assert hub.calls == 0 and store.get(record["id"])["status"] == COMPLETED
