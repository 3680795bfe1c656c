"""The Flask session secret: from SECRET_KEY, or generated once and kept in DATA_DIR (0600)."""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

SECRET_FILE = "secret_key"


def load_or_create_secret(data_dir: Path, configured: str | None) -> str:
    """Return the configured secret, or the persisted one, creating it on first start."""
    if configured:
        return configured
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
        handle.flush()
        os.fsync(handle.fileno())
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    # A concurrent first start may still be writing it: wait for the content.
    for _ in range(100):
        value = path.read_text().strip()
        if value:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
            return value
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty; delete it to generate a new secret")
