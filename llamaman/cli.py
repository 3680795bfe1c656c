"""Start-up helpers shared by app.py and gunicorn.conf.py."""
from __future__ import annotations

import logging
import sys

from llamaman.config import EX_CONFIG, Config, ConfigError


def load_config_or_exit() -> Config:
    """Read the configuration, or print one clear line and exit with status 78."""
    try:
        return Config.from_env()
    except ConfigError as err:
        print(f"llamaman: configuration error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(EX_CONFIG) from None


def configure_logging() -> None:
    """App logs go to stdout, one line each with time, level and logger."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
