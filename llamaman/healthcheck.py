"""Container health probe: `python -m llamaman.healthcheck` exits 0 when the UI port's /health answers."""
from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping

_ANY = ("", "0.0.0.0", "::", "[::]")


def health_url(env: Mapping[str, str]) -> str:
    """Return the /health URL of this process's UI port (LLAMAMAN_BIND / LLAMAMAN_UI_PORT)."""
    bind = env.get("LLAMAMAN_BIND", "").strip()
    host = "127.0.0.1" if bind in _ANY else bind
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{env.get('LLAMAMAN_UI_PORT', '5000').strip() or '5000'}/health"


def probe(url: str, timeout: float = 4.0) -> bool:
    """Return True when URL answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def main() -> int:
    """Exit status for Docker's HEALTHCHECK: 0 healthy, 1 not."""
    url = health_url(os.environ)
    if probe(url):
        return 0
    print(f"llamaman healthcheck: {url} did not answer 200", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
