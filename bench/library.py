"""GET /api/models (:5000) and Ollama's GET /api/tags (:42069) with 500 and 2,000 small GGUF
files on disk, after the first scan:
p50 at concurrency 1 and requests/s at concurrency 8 (admin bearer key), plus the first-scan
time and the app's resident memory.

Targets (issue 6): 500 files p50 <= 5 ms and >= 300 rps at c=8; 2,000 files p50 <= 20 ms.
Usage: .venv/bin/python bench/library.py [--seconds 5] [--counts 500,2000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import gguf
import numpy as np
import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report, summary, throughput, timed_requests
from bench.http_baseline import admin_key
from llamaman.models.library import ModelLibrary
from tests.e2e.appproc import start_app

QUANTS = (("Q4_K_M", 15), ("Q8_0", 7), ("F16", 1), ("Q5_K_M", 17))


def write_models(root: Path, count: int) -> None:
    """count small GGUF files (with chat templates and one tensor) in folders of 50."""
    for index in range(count):
        quant, file_type = QUANTS[index % len(QUANTS)]
        folder = root / f"org{index // 50:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        writer = gguf.GGUFWriter(str(folder / f"model-{index:05d}-{quant}.gguf"), arch="llama")
        writer.add_block_count(16 + index % 17)
        writer.add_context_length(4096)
        writer.add_file_type(file_type)
        writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
        writer.add_tensor("token_embd.weight", np.zeros((16, 16), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()


def first_scan_ms(root: Path) -> float:
    """Time of a cold index build (every header parsed) in this process."""
    library = ModelLibrary(root)
    began = time.perf_counter()
    library.refresh()
    return (time.perf_counter() - began) * 1000


def worker_rss_mb(pid: int) -> float:
    """Resident memory of the gunicorn worker (the largest process of the app's tree)."""
    master = psutil.Process(pid)
    return max(p.memory_info().rss for p in [master, *master.children(recursive=True)]) / 2**20


def measure(count: int, seconds: float) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        write_models(models, count)
        cold = first_scan_ms(models)
        app = start_app(Path(tmp) / "app", MODELS_DIR=str(models))
        try:
            headers = {"Authorization": f"Bearer {admin_key(app.url('').rstrip('/'))}"}
            listed = requests.get(app.url("/api/models"), headers=headers, timeout=30).json()
            assert len(listed) == count, f"{len(listed)} models listed, {count} expected"
            tags = requests.get(app.url("/api/tags", app.proxy_port), headers=headers, timeout=30).json()
            assert len(tags["models"]) == count, f"{len(tags['models'])} tags listed, {count} expected"
            rows = []
            for path, port in (("/api/models", app.ui_port), ("/api/tags", app.proxy_port)):
                timed_requests(port, path, 100, headers)  # warm-up
                base = {"endpoint": path, "files": count, "first_scan_ms": cold}
                rows += [{**base, "concurrency": 1, **summary(timed_requests(port, path, 1000, headers))},
                         {**base, "concurrency": 8, **throughput(port, path, 8, seconds, headers)}]
            rss = worker_rss_mb(app.proc.pid)
            for row in rows:
                row["rss_mb"] = rss
            return rows
        finally:
            app.terminate()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--counts", default="500,2000")
    args = parser.parse_args()
    rows = [row for count in map(int, args.counts.split(",")) for row in measure(count, args.seconds)]
    report("library", rows, ["endpoint", "files", "concurrency", "p50_ms", "p99_ms", "rps", "requests",
                             "first_scan_ms", "rss_mb"])


if __name__ == "__main__":
    main()
