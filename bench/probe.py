"""Runs the app under gunicorn as app.py does, with two bench-only probes inherited by the
worker through fork: every GC collection is timed (gc.callbacks), and SIGPROF writes the
worker's thread names and GC pauses as JSON to $LLAMAMAN_BENCH_PROBE.<pid>.

Started by bench/harness.py (start_bench_manager with a probe path); not part of the product.
"""
from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_pauses: list[tuple[float, int, float]] = []  # (wall time at start, generation, ms)
_started = [0.0]


def _on_gc(phase: str, info: dict) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    _pauses.append((time.time(), info["generation"], (time.perf_counter() - _started[0]) * 1000))


def _dump(*_) -> None:
    out = Path(f"{os.environ['LLAMAMAN_BENCH_PROBE']}.{os.getpid()}")
    out.write_text(json.dumps({"threads": sorted(t.name for t in threading.enumerate()),
                               "gc_pauses": _pauses, "gc_counts": gc.get_count(),
                               "gc_stats": gc.get_stats()}))


def main() -> None:
    from llamaman.cli import load_config_or_exit

    load_config_or_exit()
    gc.callbacks.append(_on_gc)
    signal.signal(signal.SIGPROF, _dump)
    sys.argv = ["gunicorn", "--pythonpath", str(ROOT), "-c", str(ROOT / "gunicorn.conf.py"), "app:app"]
    from gunicorn.app.wsgiapp import run

    run()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
