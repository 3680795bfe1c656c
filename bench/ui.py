"""The dashboard's cost with 20 instance records and 500 models in the library:
time to a usable dashboard (first contentful paint, "library-rendered" and "cards-rendered"
performance marks; median of fresh loads), bytes one refresh cycle transfers (CDP network
events over a steady window; unchanged lists come back as 304 through the ETag), p50 of the endpoints the dashboard polls, and the manager's CPU
use (all its processes, % of one core) with no tab and with one dashboard tab open.

Goal (issue 11): under 2 % of one core with one tab open for 60 s.
Usage: source /var/lib/llamaman-test/test-env.sh && .venv/bin/python bench/ui.py [--tab-seconds 60]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report, summary, timed_requests
from bench.http_baseline import admin_key
from bench.library import write_models
from llamaman.instances import records as rec
from llamaman.storage.json_store import JsonStorage
from tests.e2e.appproc import AppProcess, start_app
from tests.e2e.browserkit import new_page, open_browser, sign_in

NODE = "bench-ui"
RECORDS = 20
MODELS = 500
POLL_S = 3.0  # dashboard.js POLL_MS
POLLED = ("/api/instances", "/api/models", "/api/system-info", "/api/gpu-info")
MARKS_JS = """() => {
  const t = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
  return {fcp: t("first-contentful-paint"), library: t("library-rendered"), cards: t("cards-rendered"),
          cards_shown: document.querySelectorAll("article.inst-card").length,
          models_shown: document.querySelectorAll("#model-list li").length};
}"""


def write_records(data_dir: Path, models: Path) -> None:
    """RECORDS stopped instances, stored as the app stores them, before it starts."""
    storage = JsonStorage(node=NODE, data_dir=data_dir, recordings_dir=data_dir / "request_log")
    storage.open()
    files = sorted(models.rglob("*.gguf"))
    for index in range(RECORDS):
        request = rec.parse_launch({"model_path": str(files[index]), "name": f"bench-{index:02d}",
                                    "ctx_size": 2048}, models)
        record = rec.new_record(request, node=NODE, port=8000 + index, internal_port=9000 + index,
                                api_key="unused", launched_by="admin")
        record.update(status=rec.STOPPED, stopped_at=time.time())
        storage.instances.put(record["id"], record)


def cpu_seconds(pid: int) -> float:
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def cpu_percent_over(pid: int, seconds: float) -> float:
    before, began = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - began)


def load_times(browser, app: AppProcess, loads: int) -> dict:
    """Median paint/marks over fresh navigations of a signed-in tab."""
    page, problems = new_page(browser)
    sign_in(page, app, username="bench", password="bench-password")
    samples = []
    for _ in range(loads):
        page.goto(app.url("/"), wait_until="commit")
        page.wait_for_function("['cards-rendered', 'library-rendered', 'first-contentful-paint']"
                               ".every((name) => performance.getEntriesByName(name).length)")
        samples.append(page.evaluate(MARKS_JS))
    page.context.close()
    problems.assert_none()
    first = samples[-1]
    assert first["cards_shown"] == RECORDS and first["models_shown"] == MODELS, first
    return {key: statistics.median(s[key] for s in samples) for key in ("fcp", "library", "cards")}


class Traffic:
    """Bytes on the wire per request (headers included), from Chrome's network events."""

    def __init__(self, page) -> None:
        self.urls: dict[str, tuple[str, int]] = {}
        self.rows: list[tuple[str, int, int]] = []
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.loadingFinished", self._finished)
        cdp.send("Network.enable")

    def _response(self, event) -> None:
        path = "/" + event["response"]["url"].split("/", 3)[-1]
        self.urls[event["requestId"]] = (path, event["response"]["status"])

    def _finished(self, event) -> None:
        path, status = self.urls.get(event["requestId"], ("?", 0))
        self.rows.append((path, status, int(event["encodedDataLength"])))


def tab_window(browser, app: AppProcess, seconds: float) -> dict:
    """One dashboard tab open for `seconds`: bytes per refresh cycle and the manager's CPU."""
    page, problems = new_page(browser)
    sign_in(page, app, username="bench", password="bench-password")
    page.wait_for_function("performance.getEntriesByName('cards-rendered').length")
    time.sleep(2)  # the first (full) answers are in; measure the steady state
    traffic = Traffic(page)
    cpu = cpu_percent_over(app.proc.pid, seconds)
    page.context.close()
    problems.assert_none()
    cycles = seconds / POLL_S
    total = sum(size for _, _, size in traffic.rows)
    instances = [size for path, _, size in traffic.rows if path.startswith("/api/instances")]
    return {"cpu_tab_pct": cpu, "requests": len(traffic.rows), "bytes_per_cycle": total / cycles,
            "bytes_per_instances_poll": statistics.mean(instances) if instances else 0}


def endpoint_p50(app: AppProcess, key: str) -> list[dict]:
    headers = {"Authorization": f"Bearer {key}"}
    rows = []
    for path in POLLED:
        timed_requests(app.ui_port, path, 20, headers)  # warm-up
        size = len(requests.get(app.url(path), headers=headers, timeout=30).content)
        rows.append({"endpoint": path, "body_bytes": size, **summary(timed_requests(app.ui_port, path, 200, headers))})
    return rows


def run(args) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        models, data = Path(tmp) / "models", Path(tmp) / "app" / "data"
        write_models(models, MODELS)
        write_records(data, models)
        env = {"MODELS_DIR": str(models), "LLAMAMAN_NODE_NAME": NODE, "LLAMAMAN_RUNTIME": "process"}
        if os.environ.get("LLAMA_SERVER_BIN"):
            env["LLAMA_SERVER_BIN"] = os.environ["LLAMA_SERVER_BIN"]
        app = start_app(Path(tmp) / "app", **env)
        try:
            key = admin_key(app.url("").rstrip("/"))
            idle = cpu_percent_over(app.proc.pid, args.idle_seconds)
            with open_browser(args.chromium) as browser:
                loads = load_times(browser, app, args.loads)
                tab = tab_window(browser, app, args.tab_seconds)
            endpoints = endpoint_p50(app, key)
        finally:
            app.terminate()
    base = {"records": RECORDS, "models": MODELS}
    return [{**base, "metric": "first_contentful_paint_ms", "value": loads["fcp"]},
            {**base, "metric": "library_rendered_ms", "value": loads["library"]},
            {**base, "metric": "cards_rendered_ms", "value": loads["cards"]},
            {**base, "metric": "bytes_per_refresh_cycle", "value": tab["bytes_per_cycle"]},
            {**base, "metric": "bytes_per_instances_poll", "value": tab["bytes_per_instances_poll"]},
            *({**base, "metric": f"full_body_bytes {row['endpoint']}", "value": row["body_bytes"]} for row in endpoints),
            *({**base, "metric": f"p50_ms {row['endpoint']}", "value": row["p50_ms"]} for row in endpoints),
            {**base, "metric": f"cpu_pct_one_core_idle_{args.idle_seconds:g}s", "value": idle},
            {**base, "metric": f"cpu_pct_one_core_tab_{args.tab_seconds:g}s", "value": tab["cpu_tab_pct"]}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tab-seconds", type=float, default=60.0)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--chromium", default=os.environ.get("LLAMAMAN_TEST_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--name", default="ui", help="results file name (bench/results/<name>.json)")
    args = parser.parse_args()
    report(args.name, run(args), ["metric", "value", "records", "models"])


if __name__ == "__main__":
    main()
