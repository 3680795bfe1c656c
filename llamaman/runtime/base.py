"""The Runtime interface and the value types every runtime shares."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from llamaman.errors import Invalid, Unavailable
from llamaman.runtime.launch_settings import LaunchSettings

_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
REASON_LINES = 20


class LaunchFailed(Unavailable):
    """The runtime could not start llama-server; `message` says why and how to fix it."""


@dataclass(frozen=True)
class LaunchSpec:
    """What one launch needs: identity, model, internal endpoint, settings and log file.

    `model_path` and `log_path` are paths as the manager sees them (inside MODELS_DIR and
    LOGS_DIR); the Docker runtime maps them onto HOST_MODELS_DIR / HOST_LOGS_DIR itself.
    """

    instance_id: str
    node: str
    model_path: Path
    internal_port: int
    api_key: str
    settings: LaunchSettings
    log_path: Path
    environment: Mapping[str, str] = field(default_factory=dict)  # the instance's own variables
    command_override: str | None = None  # llama-server executable to run instead of the default
    runtime: str | None = None  # "docker" | "process"; None: the global runtime

    def __post_init__(self) -> None:
        if not _INSTANCE_ID.match(self.instance_id):
            raise Invalid(
                f"instance id {self.instance_id!r}: use 1-64 letters, digits, '_', '.', '-'"
            )
        if not 1 <= self.internal_port <= 65535:
            raise Invalid(f"internal port {self.internal_port} is not a TCP port")
        if not self.api_key:
            raise Invalid("an internal API key is required")


@dataclass(frozen=True)
class RuntimeRef:
    """What the manager stores to find a running llama-server again (JSON via to_dict)."""

    kind: str  # "docker" | "process"
    instance_id: str
    node: str
    handle: str  # container id, or pid
    name: str  # container name, or the binary path
    internal_port: int
    started_at: float  # epoch seconds; for processes also the pid-reuse check
    log_path: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuntimeRef:
        """Rebuild a ref stored with to_dict."""
        return cls(
            kind=str(data["kind"]),
            instance_id=str(data["instance_id"]),
            node=str(data["node"]),
            handle=str(data["handle"]),
            name=str(data["name"]),
            internal_port=int(data["internal_port"]),
            started_at=float(data["started_at"]),
            log_path=str(data["log_path"]),
        )


@dataclass(frozen=True)
class RuntimeState:
    """Whether llama-server is running, has exited (with its code) or is gone."""

    status: Literal["running", "exited", "missing"]
    exit_code: int | None = None
    reason: str = ""

    @property
    def running(self) -> bool:
        return self.status == "running"


RUNNING = RuntimeState("running")


@dataclass(frozen=True)
class ResourceStats:
    """Resource use of one instance; cpu_percent is per core (200 = two cores busy)."""

    cpu_percent: float | None
    cpu_quota: float | None  # cores the instance may use; None when not enforced
    mem_used: int | None  # bytes
    mem_limit: int | None  # bytes; None when unlimited


@dataclass(frozen=True)
class Discovered:
    """A llama-server of this node found by discover(), with its current state."""

    ref: RuntimeRef
    state: RuntimeState


ExitListener = Callable[[RuntimeRef, RuntimeState], None]


class Runtime(Protocol):
    """Starts, watches and stops llama-server instances.

    Thread-safe. Exits are reported to the listener set with set_exit_listener (from a
    runtime thread, with no runtime lock held; the listener must not block for long);
    exits caused by stop() are not reported. After an exit, call stop(ref) to release
    what is left (the exited container, the child's record). Calls that must ask the
    Docker engine raise Unavailable when it does not answer.
    """

    kind: str

    def launch(self, spec: LaunchSpec) -> RuntimeRef:
        """Start llama-server; return once started, not yet healthy (LaunchFailed, Invalid)."""

    def stop(self, ref: RuntimeRef, grace_s: float = 10.0) -> RuntimeState:
        """Stop gracefully, kill after grace_s, remove leftovers; return the final state."""

    def state(self, ref: RuntimeRef) -> RuntimeState:
        """Return whether the instance runs, exited (code and reason from its log) or is missing."""

    def upstream(self, ref: RuntimeRef) -> tuple[str, int]:
        """Return (host, port) where the proxy reaches llama-server."""

    def stats(self, ref: RuntimeRef) -> ResourceStats | None:
        """Return resource use, or None when the instance is not running."""

    def discover(self) -> list[Discovered]:
        """Return the llama-servers labelled for this node (running or exited), for adoption."""

    def adopt(self, ref: RuntimeRef) -> None:
        """Resume log capture and exit watching for an instance started before a restart."""

    def set_exit_listener(self, listener: ExitListener | None) -> None:
        """Register the callback told when a launched or adopted instance exits on its own."""

    def close(self) -> None:
        """Stop watcher threads; running instances are left running (for adoption)."""


def model_relative_path(model_path: Path, models_dir: Path) -> Path:
    """Return the model's path relative to MODELS_DIR; Invalid when it is not strictly inside.

    The check is lexical (after normalising ".."); resolving symlinks is the instance
    service's validation, done before a launch is attempted.
    """
    model = Path(os.path.abspath(model_path))
    try:
        relative = model.relative_to(os.path.abspath(models_dir))
    except ValueError:
        raise Invalid(
            f"model_path {str(model_path)!r} is not inside MODELS_DIR ({models_dir})"
        ) from None
    if not relative.parts:
        raise Invalid("model_path must name a model inside MODELS_DIR, not MODELS_DIR itself")
    return relative


def tail_lines(
    path: Path | str, lines: int = REASON_LINES, max_bytes: int = 64 * 1024
) -> list[str]:
    """Return the last `lines` lines of a text file (empty when missing)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return []
    text = data.decode("utf-8", "replace").splitlines()
    return text[-lines:] if lines > 0 else []


def exit_reason(code: int | None, log_tail: list[str], prefix: str = "") -> str:
    """Describe an exit: the code (and signal) followed by the last log lines."""
    head = prefix or (f"exited with code {code}" if code is not None else "exited (code unknown)")
    if code is not None and code > 128 and not prefix:
        head += f" (killed by signal {_signal_name(code - 128)})"
    return head + (":\n" + "\n".join(log_tail) if log_tail else "")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
