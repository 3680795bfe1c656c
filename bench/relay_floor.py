"""The floor under the sidecar's streaming numbers: the same 32-token stream direct and through
a bare byte relay (one thread per direction, no parsing at all), alternating, in one run.

What any extra hop costs on this machine, with llama-server's compute threads on every core;
compare its deltas with bench/proxy.py's streaming rows.
Needs test-env.sh (LLAMA_SERVER_BIN, LLAMAMAN_TEST_MODELS_DIR, LLAMAMAN_TEST_MODEL).
Usage: .venv/bin/python bench/relay_floor.py [--runs 20]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report
from bench.proxy import CHAT, stream_once
from tests.helpers import start_llama_process, wait_http


def pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass  # the other direction closed the pair: nothing left to copy
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already shut down by the other direction


def serve_relay(listener: socket.socket, target_port: int) -> None:
    """Accept clients and splice each to a fresh upstream connection."""
    while True:
        client, _ = listener.accept()
        upstream = socket.create_connection(("127.0.0.1", target_port))
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    model = Path(os.environ["LLAMAMAN_TEST_MODELS_DIR"]) / os.environ["LLAMAMAN_TEST_MODEL"]
    server = start_llama_process(os.environ["LLAMA_SERVER_BIN"], model, Path("/tmp/relay-floor-llama.log"))
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        wait_http(f"http://127.0.0.1:{server.port}/health", timeout=120)
        threading.Thread(target=serve_relay, args=(listener, server.port), daemon=True).start()
        ports = {"direct": server.port, "bare relay": listener.getsockname()[1]}
        runs = {via: [] for via in ports}
        for _ in range(args.runs):
            for via, port in ports.items():
                runs[via].append(stream_once(port, "", CHAT))
    finally:
        server.stop()
        listener.close()
    rows = [{"via": via, **{key: statistics.median(r[key] for r in results)
                            for key in ("ttfb_ms", "first_content_ms", "total_ms", "chunks")}}
            for via, results in runs.items()]
    report("relay_floor", rows, ["via", "ttfb_ms", "first_content_ms", "total_ms", "chunks"])


if __name__ == "__main__":
    main()
