"""Shared harness of the sidecar benches: a manager on either runtime (optionally under
bench/probe.py), wrk runs, a raw-socket streaming client, and the load average.

Needs the provisioned test environment: source /var/lib/llamaman-test/test-env.sh first.
"""
from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.appproc import start_app
from tests.e2e.instancekit import Manager, runtime_env

ROOT = Path(__file__).resolve().parent.parent
CHAT = {"messages": [{"role": "user", "content": "Count from one to fifty."}], "max_tokens": 32,
        "ignore_eos": True, "stream": True}


class Pytestless:
    """Enough of pytest's request object for runtime_env()."""

    def getfixturevalue(self, name: str):
        if name == "docker_client":
            import docker

            return docker.from_env()
        return {"llama_server_bin": os.environ.get("LLAMA_SERVER_BIN"),
                "llama_image": os.environ.get("LLAMAMAN_TEST_IMAGE")}[name]


def manager_env(runtime: str, ports: int, tag: str) -> dict:
    """Environment for a bench manager with private ports, node name, containers and network."""
    models = Path(os.environ["LLAMAMAN_TEST_MODELS_DIR"])
    env = {**runtime_env(runtime, Pytestless(), models, ports=ports),
           "LLAMAMAN_NODE_NAME": f"{tag}-{os.getpid()}"}
    if runtime == "docker":
        # Names of our own: the e2e tests remove every container with their prefix.
        env.update(LLAMA_CONTAINER_PREFIX=f"llamaman-{tag}-", LLAMA_NETWORK=f"llamaman-{tag}-net")
    return env


def exit_on_sigterm() -> None:
    """`timeout` and kill send SIGTERM: exit through the finally blocks that stop the app."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def start_bench_manager(tmp: Path, env: dict, probe: Path | None = None) -> Manager:
    """A manager (gunicorn as app.py runs it); under bench/probe.py when probe names its output."""
    exit_on_sigterm()
    if probe is None:
        return Manager(start_app(tmp, **env))
    env = {**env, "LLAMAMAN_BENCH_PROBE": str(probe)}
    return Manager(start_app(tmp, [sys.executable, str(ROOT / "bench" / "probe.py")], **env))


def stop_manager(manager: Manager) -> None:
    """Remove the instances and stop the app, even when either hangs: llama-servers outlive
    their manager by design, so a bench that gave up must not leave them (or the app) running."""
    try:
        for instance in manager.api.get(manager.url("/api/instances"), timeout=10).json():
            manager.api.delete(manager.url(f"/api/instances/{instance['id']}"), timeout=30)
    except requests.RequestException as err:
        print(f"bench: removing instances through the API failed ({err}); killing them", file=sys.stderr)
    try:
        manager.app.terminate(timeout=30)
    except subprocess.TimeoutExpired:
        manager.app.kill()
    kill_leftovers(manager.app.data_dir)


def kill_leftovers(data_dir: Path) -> None:
    """Kill the llama-servers (processes or containers) the app's records still name."""
    try:
        records = json.loads((data_dir / "state.json").read_text())["instances"].values()
    except (OSError, ValueError, KeyError):
        return  # SQL storage or no state: the API removal above is all there is
    for runtime in (record.get("runtime") or {} for record in records):
        if runtime.get("kind") == "process" and _is_llama_server(int(runtime["handle"])):
            os.kill(int(runtime["handle"]), signal.SIGKILL)
        elif runtime.get("kind") == "docker":
            subprocess.run(["docker", "rm", "-f", runtime["handle"]], capture_output=True, check=False)


def _is_llama_server(pid: int) -> bool:
    try:
        return "llama-server" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def internal_of(data_dir: Path, instance_id: str) -> tuple[int, str]:
    """The instance's internal port and key, read from its record (benchmark-only access)."""
    state = json.loads((data_dir / "state.json").read_text())
    for record in state["instances"].values():
        if record["id"] == instance_id:
            return record["internal_port"], record["api_key"]
    raise KeyError(instance_id)


def container_address(env: dict, internal_port: int) -> tuple[str, int] | None:
    """The llama-server container's bridge address (skipping docker-proxy), or None."""
    import docker

    client = docker.from_env()
    for container in client.containers.list(filters={"name": env["LLAMA_CONTAINER_PREFIX"]}):
        networks = container.attrs["NetworkSettings"]["Networks"]
        address = networks.get(env["LLAMA_NETWORK"], {}).get("IPAddress")
        if address:
            return address, internal_port
    return None


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 1)[0]


# ----------------------------------------------------------------------------------- wrk
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far: the whole machine (busy), wrk (finished children), llama-server
    and docker-proxy processes anywhere, and the manager (the rest of this bench's children)."""
    busy = psutil.cpu_times()
    out = {"busy": sum(busy) - busy.idle - getattr(busy, "iowait", 0.0),
           "wrk": sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2]),
           "manager": 0.0, "server": 0.0, "docker_proxy": 0.0}
    mine = {p.pid for p in psutil.Process().children(recursive=True)}
    for proc in psutil.process_iter(["name", "cpu_times"]):
        name, times = proc.info["name"], proc.info["cpu_times"]
        group = {"llama-server": "server", "docker-proxy": "docker_proxy"}.get(name)
        group = group or ("manager" if proc.pid in mine else None)
        if group and times:
            out[group] += times.user + times.system
    return out


def cpu_shares(before: dict[str, float], after: dict[str, float], wall_s: float) -> dict[str, float]:
    """Each group's CPU between two cpu_seconds() readings, in % of one core."""
    return {f"cpu_{k}_pct": round((after[k] - before[k]) / wall_s * 100, 1) for k in before}


def wrk(host: str, port: int, path: str, key: str, connections: int, seconds: float) -> dict:
    """Requests/s and p50/p90/p99 latency (ms) from one `wrk --latency` run."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{round(seconds)}s", "--latency", "-H", f"Authorization: Bearer {key}",
         f"http://{host}:{port}{path}"], capture_output=True, text=True, check=True).stdout
    row = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "90", "99"):
        value, unit = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE).groups()
        row[f"p{pct}_ms"] = float(value) * _UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    row["errors"] = (int(errors.group(1)) if errors else 0)
    row["socket_errors"] = socket_errors.group(1) if socket_errors else ""
    return row


# ------------------------------------------------------------------------- raw streaming
@dataclass
class Stream:
    """Arrival times (perf_counter seconds) of one streamed chat over a raw socket."""

    started: float
    headers_at: float = 0.0
    events: list[float] = field(default_factory=list)
    done_at: float = 0.0
    admission: int | None = None
    status: int = 0

    def gaps_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.events, self.events[1:])]


def stream_chat(host: str, port: int, key: str, body: dict = CHAT) -> Stream:
    """POST one streamed chat and time the headers and every SSE event as recv() returns it."""
    payload = json.dumps(body).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    sock = socket.create_connection((host, port), timeout=300)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream = Stream(started=time.perf_counter())
    try:
        sock.sendall(request)
        _read_stream(sock, stream)
    finally:
        sock.close()
    return stream


def _read_stream(sock: socket.socket, stream: Stream) -> None:
    buffer = b""
    while True:
        data = sock.recv(65536)
        now = time.perf_counter()
        if not data:
            break
        buffer += data
        if not stream.headers_at:
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if not sep:
                continue
            stream.headers_at = now
            _parse_head(head, stream)
            buffer = rest
        events = buffer.count(b"data: ")
        stream.events += [now] * events
        if b"[DONE]" in buffer or (stream.status and stream.status != 200):
            break
        buffer = buffer[buffer.rfind(b"data: ") + 6:] if events else buffer
    stream.done_at = time.perf_counter()


def _parse_head(head: bytes, stream: Stream) -> None:
    lines = head.decode("latin-1").split("\r\n")
    stream.status = int(lines[0].split()[1])
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-llamaman-admission":
            stream.admission = int(value.strip())
