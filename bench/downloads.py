"""Download manager: throughput against a plain curl of the same file, and throttle accuracy.

All traffic comes from the local Hub server (tests/hubkit.py) on 127.0.0.1, served by this
process; the app is the real `python app.py` with HF_ENDPOINT pointing at it.
  1. throughput: the real gemma GGUF through POST /api/downloads (queue → metadata → transfer →
     sha256 → fsync → rename → library rescan) vs `curl -L -o` of the same resolve URL, and vs
     curl followed by sha256sum (the same integrity work); MB/s, median of --runs.
  2. global limit: 3 concurrent downloads under download_speed_limit_mbps=30 for --seconds;
     measured total Mbit/s (from the jobs' byte counters) and error %. Target ±10 %.
  3. per-download limit: one download with speed_limit_mbps=20; measured Mbit/s and error %.
Usage: .venv/bin/python bench/downloads.py [--seconds 20] [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report
from bench.http_baseline import admin_key
from tests.e2e.appproc import start_app
from tests.hubkit import HubKit

MB = 1e6
WARMUP_S = 2.0


def gemma_path() -> Path:
    folder, name = os.environ.get("LLAMAMAN_TEST_MODELS_DIR"), os.environ.get("LLAMAMAN_TEST_MODEL")
    if not folder or not name:
        sys.exit("source /var/lib/llamaman-test/test-env.sh first (LLAMAMAN_TEST_MODEL is not set)")
    return Path(folder) / name


class Api:
    """The app's download API with an admin key."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {admin_key(base)}"

    def start(self, **body) -> str:
        response = self.session.post(f"{self.base}/api/downloads", json=body, timeout=30)
        response.raise_for_status()
        return response.json()["id"]

    def job(self, job_id: str) -> dict:
        return self.session.get(f"{self.base}/api/downloads/{job_id}", timeout=30).json()

    def wait(self, job_id: str, status: str = "completed", poll: float = 0.2) -> dict:
        while (job := self.job(job_id))["status"] not in ("completed", "failed", "cancelled"):
            time.sleep(poll)
        if job["status"] != status:
            raise RuntimeError(f"download ended {job['status']}: {job.get('error')}")
        return job

    def settings(self, **values) -> None:
        self.session.post(f"{self.base}/api/settings", json=values, timeout=30).raise_for_status()


def throughput(api: Api, hub: HubKit, gemma: Path, runs: int, scratch: Path) -> list[dict]:
    size = gemma.stat().st_size
    through_api, through_curl, through_curl_sha = [], [], []
    for run in range(runs):
        repo = f"bench/gemma-{run}"
        hub.add_repo(repo, {gemma.name: gemma})
        job = api.wait(api.start(repo_id=repo, filename=gemma.name))
        # the job's own clock (queued → completed, sha256 and rename included): polling cost stays out
        through_api.append(size / MB / (job["finished_at"] - job["created_at"]))
        target = scratch / f"curl-{run}.gguf"
        url = f"{hub.url}/{repo}/resolve/main/{gemma.name}"
        began = time.perf_counter()
        subprocess.run(["curl", "-sSfL", "-o", str(target), url], check=True)
        through_curl.append(size / MB / (time.perf_counter() - began))
        subprocess.run(["sha256sum", str(target)], check=True, capture_output=True)
        through_curl_sha.append(size / MB / (time.perf_counter() - began))
        target.unlink()
    return [_row("gemma via API (sha256 verified)", size, through_api),
            _row("gemma via curl -o", size, through_curl),
            _row("gemma via curl -o + sha256sum", size, through_curl_sha)]


def _row(case: str, size: int, rates: list[float]) -> dict:
    return {"case": case, "size_mb": size / MB, "mb_per_s": statistics.median(rates),
            "runs": [round(v, 1) for v in rates]}


def measured_rate(api: Api, job_ids: list[str], seconds: float) -> float:
    """Mbit/s of the jobs together over `seconds`, after a short warm-up (their byte counters)."""
    while any(api.job(j)["status"] != "downloading" for j in job_ids):
        time.sleep(0.05)
    time.sleep(WARMUP_S)
    start_bytes, start_t = sum(api.job(j)["downloaded_bytes"] for j in job_ids), time.perf_counter()
    time.sleep(seconds)
    end_bytes, end_t = sum(api.job(j)["downloaded_bytes"] for j in job_ids), time.perf_counter()
    for job_id in job_ids:
        api.session.delete(f"{api.base}/api/downloads/{job_id}", timeout=30)
    return (end_bytes - start_bytes) * 8 / 1e6 / (end_t - start_t)


def throttle_rows(api: Api, hub: HubKit, seconds: float) -> list[dict]:
    big = os.urandom(int(40 * MB * seconds / 20 + 20 * MB))  # more than a limited download gets
    repos = [f"bench/big-{i}" for i in range(4)]
    for repo in repos:
        hub.add_repo(repo, {"weights.bin": big})
    api.settings(download_speed_limit_mbps=30)
    shared = measured_rate(api, [api.start(repo_id=r, filename="weights.bin") for r in repos[:3]], seconds)
    api.settings(download_speed_limit_mbps=0)
    own = measured_rate(api, [api.start(repo_id=repos[3], filename="weights.bin", speed_limit_mbps=20)], seconds)
    return [{"case": "3 downloads, global 30 Mbit/s", "target_mbps": 30, "measured_mbps": shared,
             "error_pct": (shared - 30) / 30 * 100, "seconds": seconds},
            {"case": "1 download, own 20 Mbit/s", "target_mbps": 20, "measured_mbps": own,
             "error_pct": (own - 20) / 20 * 100, "seconds": seconds}]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("curl"):
        sys.exit("curl is required for the baseline")
    gemma = gemma_path()
    with tempfile.TemporaryDirectory() as tmp, HubKit() as hub:
        app = start_app(Path(tmp) / "app", MODELS_DIR=str(Path(tmp) / "models"), HF_ENDPOINT=hub.url)
        try:
            api = Api(app.url("").rstrip("/"))
            rows = throughput(api, hub, gemma, args.runs, Path(tmp))
            rows += throttle_rows(api, hub, args.seconds)
        finally:
            app.terminate()
    report("downloads", rows, ["case", "size_mb", "mb_per_s", "runs", "target_mbps", "measured_mbps",
                               "error_pct", "seconds"])


if __name__ == "__main__":
    main()
