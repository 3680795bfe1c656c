"""Entry point. `python app.py` serves the UI/API (:5000) and the Ollama/OpenAI API (:42069)
through gunicorn with gunicorn.conf.py; gunicorn imports `app` from this module."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from llamaman.cli import load_config_or_exit

ROOT = Path(__file__).resolve().parent


def main() -> None:
    """Validate the configuration, then run gunicorn in this process."""
    load_config_or_exit()
    argv = [sys.executable, "-m", "gunicorn", "--pythonpath", str(ROOT),
            "-c", str(ROOT / "gunicorn.conf.py"), "app:app"]
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    main()
else:
    from llamaman.web import create_app

    app = create_app(load_config_or_exit())
