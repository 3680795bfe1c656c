"""Runtimes that run llama-server: Docker sibling containers or native child processes.

`create_runtime(config)` picks one from LLAMAMAN_RUNTIME (auto | docker | process).
Importing this package connects to nothing and starts nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from llamaman.config import Config
from llamaman.runtime.base import (
    Discovered,
    ExitListener,
    LaunchFailed,
    LaunchSpec,
    ResourceStats,
    Runtime,
    RuntimeRef,
    RuntimeState,
)
from llamaman.runtime.detect import find_server_binary
from llamaman.runtime.launch_settings import LaunchSettings

__all__ = [
    "Discovered",
    "ExitListener",
    "LaunchFailed",
    "LaunchSettings",
    "LaunchSpec",
    "ResourceStats",
    "Runtime",
    "RuntimeRef",
    "RuntimeState",
    "UnavailableRuntime",
    "create_runtime",
    "docker_answers",
]

HOW_TO_GET_ONE = (
    "no llama-server runtime is available: {docker}, and no llama-server binary was found "
    "({binary}). Either give llamaman the Docker engine (mount /var/run/docker.sock or set "
    "DOCKER_HOST) and pull a llama.cpp server image "
    "(docker pull ghcr.io/ggml-org/llama.cpp:server), "
    "or install llama.cpp's llama-server and set LLAMA_SERVER_BIN to it (or put it on PATH)."
)


class UnavailableRuntime:
    """The runtime used when neither Docker nor a llama-server binary is available."""

    kind = "unavailable"

    def __init__(self, message: str) -> None:
        self.message = message

    def launch(self, spec: LaunchSpec) -> RuntimeRef:
        """Always fails, saying how to get a runtime."""
        raise LaunchFailed(self.message)

    def stop(self, ref: RuntimeRef, grace_s: float = 10.0) -> RuntimeState:
        return RuntimeState("missing", reason=self.message)

    def state(self, ref: RuntimeRef) -> RuntimeState:
        return RuntimeState("missing", reason=self.message)

    def upstream(self, ref: RuntimeRef) -> tuple[str, int]:
        return "127.0.0.1", ref.internal_port

    def stats(self, ref: RuntimeRef) -> ResourceStats | None:
        return None

    def discover(self) -> list[Discovered]:
        return []

    def adopt(self, ref: RuntimeRef) -> None:
        return None

    def set_exit_listener(self, listener: ExitListener | None) -> None:
        return None

    def close(self) -> None:
        return None


def create_runtime(config: Config, docker_probe: Callable[[], str | None] | None = None) -> Runtime:
    """Return the runtime LLAMAMAN_RUNTIME asks for; auto prefers a Docker engine that answers.

    `docker_probe` returns None when the engine answers, else why not (default: a ping).
    """
    if config.runtime == "docker":
        from llamaman.runtime.docker import DockerRuntime

        return DockerRuntime(config)
    if config.runtime == "process":
        from llamaman.runtime.process import ProcessRuntime

        return ProcessRuntime(config)
    problem = (docker_probe or docker_answers)()
    if problem is None:
        from llamaman.runtime.docker import DockerRuntime

        return DockerRuntime(config)
    if find_server_binary(config.llama_server_bin):
        from llamaman.runtime.process import ProcessRuntime

        return ProcessRuntime(config)
    binary = (
        f"LLAMA_SERVER_BIN={config.llama_server_bin} is not executable"
        if config.llama_server_bin
        else "not on PATH"
    )
    return UnavailableRuntime(HOW_TO_GET_ONE.format(docker=problem, binary=binary))


def docker_answers(timeout: float = 3.0) -> str | None:
    """Ping the engine named by DOCKER_HOST; return None when it answers, else the reason."""
    import docker
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    try:
        client = docker.from_env(timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except (DockerException, RequestException, OSError) as exc:  # no socket, refused, timeout
        return f"the Docker engine does not answer ({exc})"
    return None
