"""The container HEALTHCHECK probe: which URL it asks, and its verdict on a real local server."""
from __future__ import annotations

import http.server
import threading

import pytest

from llamaman.healthcheck import health_url, probe


@pytest.mark.parametrize(("env", "url"), [
    ({}, "http://127.0.0.1:5000/health"),
    ({"LLAMAMAN_BIND": "0.0.0.0", "LLAMAMAN_UI_PORT": "5100"}, "http://127.0.0.1:5100/health"),
    ({"LLAMAMAN_BIND": "::"}, "http://127.0.0.1:5000/health"),
    ({"LLAMAMAN_BIND": "10.0.0.5"}, "http://10.0.0.5:5000/health"),
    ({"LLAMAMAN_BIND": "fd00::5"}, "http://[fd00::5]:5000/health"),
])
def test_health_url_follows_bind_and_port(env, url):
    assert health_url(env) == url


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_probe_is_true_only_for_200():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert probe(f"{base}/health") is True
        assert probe(f"{base}/other") is False
    finally:
        server.shutdown()
        server.server_close()
    assert probe(f"{base}/health", timeout=1) is False
