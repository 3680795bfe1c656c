"""Ollama /api/chat streaming vs OpenAI streaming straight to llama-server (same instance,
alternating), and a cold-start burst (20 concurrent requests for a model that is not loaded).

Needs the provisioned test environment: source /var/lib/llamaman-test/test-env.sh first.
Usage: .venv/bin/python bench/compat.py [--runs 10] [--burst 20]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report
from bench.proxy import CHAT, Pytestless, internal_of, stream_once
from tests.e2e.instancekit import runtime_env, start_manager

OLLAMA_CHAT = {"messages": CHAT["messages"], "options": {"num_predict": 32}, "stream": True}


def ollama_once(port: int, key: str, model: str) -> dict:
    """Time to first content and total time of one streamed /api/chat."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    start = time.perf_counter()
    conn.request("POST", "/api/chat", body=json.dumps({**OLLAMA_CHAT, "model": model}),
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = conn.getresponse()
    first = None
    for line in response:
        if not line.strip():
            continue
        data = json.loads(line)
        if first is None and data.get("message", {}).get("content"):
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    conn.close()
    return {"first_content_ms": (first or total) * 1000, "total_ms": total * 1000}


def chat_vs_direct(manager, model: str, data_dir: Path, runs: int) -> list[dict]:
    ollama_once(manager.app.proxy_port, manager.key, model)  # loads the model
    instance = next(i for i in manager.api.get(manager.url("/api/instances")).json() if i["status"] == "healthy")
    port, key = internal_of(data_dir, instance["id"])
    samples = {"openai direct": [], "ollama /api/chat": []}
    for _ in range(runs):
        samples["openai direct"].append(stream_once(port, key, CHAT))
        samples["ollama /api/chat"].append(ollama_once(manager.app.proxy_port, manager.key, model))
    return [{"test": "stream 32 tokens", "via": via, "first_content_ms": statistics.median(r["first_content_ms"] for r in rows),
             "total_ms": statistics.median(r["total_ms"] for r in rows)} for via, rows in samples.items()]


def cold_burst(manager, model: str, count: int) -> dict:
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(ollama_once(manager.app.proxy_port, manager.key, model)))
               for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    firsts = sorted(r["first_content_ms"] for r in results)
    launched = [i for i in manager.api.get(manager.url("/api/instances")).json() if i["model_name"] == model]
    return {"test": f"cold burst x{count}", "via": "ollama /api/chat", "launches": len(launched),
            "ttft_first_ms": firsts[0], "ttft_last_ms": firsts[-1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--burst", type=int, default=20)
    args = parser.parse_args()
    source = Path(os.environ["LLAMAMAN_TEST_MODELS_DIR"]) / os.environ["LLAMAMAN_TEST_MODEL"]
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        for name in ("warm", "cold"):
            os.link(source, models / f"{name}.gguf")
        manager = start_manager(Path(tmp) / "app", runtime_env("process", Pytestless(), models, ports=26800))
        try:
            manager.api.put(manager.url(f"/api/presets{models}/cold.gguf"), json={"parallel": 4, "ctx_size": 2048})
            rows = chat_vs_direct(manager, "warm", Path(tmp) / "app" / "data", args.runs)
            rows.append(cold_burst(manager, "cold", args.burst))
        finally:
            manager.app.terminate()
    report("compat", rows, ["test", "via", "first_content_ms", "total_ms", "launches", "ttft_first_ms", "ttft_last_ms"])


if __name__ == "__main__":
    main()
