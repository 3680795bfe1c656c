"""Ollama /api/chat streaming vs OpenAI streaming straight to llama-server (same instance,
alternating; OpenAI through :42069 too, to split the hop from the Ollama translation), and a
cold-start burst (20 concurrent requests for a model that is not loaded: launches and first
content of the first and last), and how long llama-server's slot stays busy after a client
disconnects mid-stream (Ollama and OpenAI routes).

Needs the provisioned test environment: source /var/lib/llamaman-test/test-env.sh first.
Usage: .venv/bin/python bench/compat.py [--runs 20] [--burst 20] [--disconnects 5]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report
from bench.harness import Pytestless, exit_on_sigterm, internal_of, stop_manager
from bench.proxy import CHAT, stream_once
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


def chat_vs_direct(manager, model: str, internal: tuple[int, str], runs: int) -> list[dict]:
    port, key = internal
    samples = {"openai direct": [], "openai :42069": [], "ollama /api/chat": []}
    for _ in range(runs):
        samples["openai direct"].append(stream_once(port, key, CHAT))
        samples["openai :42069"].append(stream_once(manager.app.proxy_port, manager.key, {**CHAT, "model": model}))
        samples["ollama /api/chat"].append(ollama_once(manager.app.proxy_port, manager.key, model))
    return [{"test": "stream 32 tokens", "via": via, "first_content_ms": statistics.median(r["first_content_ms"] for r in rows),
             "total_ms": statistics.median(r["total_ms"] for r in rows)} for via, rows in samples.items()]


LONG_CHAT = [{"role": "user", "content": "Tell me a very long story about a lighthouse keeper."}]


def slot_busy(port: int, key: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/slots", headers={"Authorization": f"Bearer {key}"})
    slots = json.loads(conn.getresponse().read())
    conn.close()
    return any(slot.get("is_processing") for slot in slots)


def disconnect_once(proxy_port: int, key: str, path: str, body: dict, internal: tuple[int, str]) -> float:
    """Milliseconds from a client closing a stream (after its first line) to llama-server's slot idling."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=300)
    conn.request("POST", path, body=json.dumps(body),
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = conn.getresponse()
    while not response.readline().strip():
        pass
    closed = time.perf_counter()
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    deadline = closed + 60
    while slot_busy(*internal) and time.perf_counter() < deadline:
        time.sleep(0.005)
    return (time.perf_counter() - closed) * 1000


def disconnects(manager, model: str, internal: tuple[int, str], runs: int) -> list[dict]:
    bodies = {"/api/chat": {"model": model, "messages": LONG_CHAT, "options": {"num_predict": 2000}},
              "/v1/chat/completions": {"model": model, "messages": LONG_CHAT, "max_tokens": 2000, "stream": True}}
    rows = []
    for path, body in bodies.items():
        times = [disconnect_once(manager.app.proxy_port, manager.key, path, body, internal) for _ in range(runs)]
        rows.append({"test": "client disconnect -> slot idle", "via": path,
                     "slot_idle_ms": statistics.median(times), "slot_idle_max_ms": max(times)})
    return rows


def load(manager, model: str, data_dir: Path) -> tuple[int, str]:
    """Load the model through /api/chat; its internal port and key."""
    ollama_once(manager.app.proxy_port, manager.key, model)
    instance = next(i for i in manager.api.get(manager.url("/api/instances")).json() if i["status"] == "healthy")
    return internal_of(data_dir, instance["id"])


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
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--disconnects", type=int, default=5)
    args = parser.parse_args()
    exit_on_sigterm()
    source = Path(os.environ["LLAMAMAN_TEST_MODELS_DIR"]) / os.environ["LLAMAMAN_TEST_MODEL"]
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        for name in ("warm", "cold"):
            os.link(source, models / f"{name}.gguf")
        # A node name of its own: no other manager on the machine treats its llama-servers as orphans.
        env = {**runtime_env("process", Pytestless(), models, ports=32800), "LLAMAMAN_NODE_NAME": f"bench-compat-{os.getpid()}"}
        manager = start_manager(Path(tmp) / "app", env)
        try:
            manager.api.put(manager.url(f"/api/presets{models}/cold.gguf"), json={"parallel": 4, "ctx_size": 2048})
            internal = load(manager, "warm", Path(tmp) / "app" / "data")
            rows = chat_vs_direct(manager, "warm", internal, args.runs)
            rows.append(cold_burst(manager, "cold", args.burst))
            rows += disconnects(manager, "warm", internal, args.disconnects)
        finally:
            stop_manager(manager)
    report("compat", rows, ["test", "via", "first_content_ms", "total_ms", "launches", "ttft_first_ms", "ttft_last_ms",
                            "slot_idle_ms", "slot_idle_max_ms"])


if __name__ == "__main__":
    main()
