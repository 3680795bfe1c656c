"""DockerRuntime: llama-server as sibling containers spawned through the Docker engine API."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from requests.exceptions import RequestException

from llamaman.config import Config
from llamaman.errors import Conflict, Unavailable
from llamaman.runtime import detect
from llamaman.runtime.base import (
    RUNNING,
    Discovered,
    ExitListener,
    LaunchFailed,
    LaunchSpec,
    ResourceStats,
    RuntimeRef,
    RuntimeState,
    exit_reason,
)
from llamaman.runtime.docker_logs import LogPump, read_cursor
from llamaman.runtime.docker_read import cpu_usage, started_at, stats_from_sample
from llamaman.runtime.docker_spec import (
    LABEL_INSTANCE,
    LABEL_LOG,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_PORT,
    DockerHost,
    create_kwargs,
)

log = logging.getLogger(__name__)
_ENGINE_ERRORS = (DockerException, RequestException)
_LIVE = ("created", "running", "restarting", "paused")
_POOL = 64  # one pooled connection per followed log stream, plus headroom


def connect_docker() -> docker.DockerClient:
    """Connect to the engine named by DOCKER_HOST (default: the local socket)."""
    return docker.from_env(max_pool_size=_POOL, timeout=30)


class DockerRuntime:
    """Runs each instance as a container on LLAMA_NETWORK, labelled with instance and node."""

    kind = "docker"

    def __init__(
        self,
        config: Config,
        connect: Callable[[], docker.DockerClient] = connect_docker,
        extra_labels: Mapping[str, str] | None = None,
    ) -> None:
        """`extra_labels` are added to every container (tests mark theirs with them)."""
        self._config = config
        self._connect = connect
        self._extra_labels = dict(extra_labels or {})
        self._lock = threading.Lock()  # leaf lock: guards the fields below, no I/O under it
        self._client: docker.DockerClient | None = None
        self._host: DockerHost | None = None
        self._in_docker: bool | None = None
        self._pumps: dict[str, LogPump] = {}
        self._cpu_samples: dict[str, tuple[int, int]] = {}
        self._listener: ExitListener | None = None

    # -- connection and host facts (first use only: nothing happens at construction)

    def client(self) -> docker.DockerClient:
        """Return the engine client, connecting on first use."""
        with self._lock:
            if self._client is not None:
                return self._client
        try:
            client = self._connect()
        except _ENGINE_ERRORS as exc:
            raise LaunchFailed(
                f"Docker API error: cannot reach the Docker engine ({exc}). Mount "
                "/var/run/docker.sock into the llamaman container or set DOCKER_HOST."
            ) from None
        with self._lock:
            self._client = self._client or client
            return self._client

    def in_docker(self) -> bool:
        """Return whether the manager runs in a container (LLAMAMAN_IN_DOCKER, else detected)."""
        if self._in_docker is None:
            self._in_docker = detect.detect_in_docker(self._config.in_docker)
            log.info(
                "manager runs %s: llama-server containers are reached %s",
                "in a container" if self._in_docker else "on the host",
                f"by name on network {self._config.llama_network}" if self._in_docker
                else f"on published ports at {self._config.llama_host_addr}",
            )
        return self._in_docker

    def host(self) -> DockerHost:
        """Return the detected image, GPU vendor, mode and CPU count (detected once)."""
        if self._host is None:
            vendor = detect.detect_gpu_vendor(self._config.gpu_type, nvml_probe=detect.probe_nvml)
            self._host = DockerHost(
                image=detect.choose_image(self._config.llama_image, vendor),
                vendor=vendor,
                in_docker=self.in_docker(),
                cpus=self._engine(lambda: self.client().info().get("NCPU")),
                gpu_groups=detect.gpu_groups(),
            )
        return self._host

    # -- lifecycle

    def launch(self, spec: LaunchSpec) -> RuntimeRef:
        """Create and start the container; return once it runs (not yet healthy)."""
        kwargs = create_kwargs(spec, self._config, self.host(), self._extra_labels)
        self._ensure_image(kwargs["image"])
        self._ensure_network()
        self._remove_leftover(kwargs["name"])
        container = self._create_and_start(kwargs)
        ref = RuntimeRef(
            kind=self.kind,
            instance_id=spec.instance_id,
            node=spec.node,
            handle=container.id,
            name=container.name,
            internal_port=spec.internal_port,
            started_at=started_at(container.attrs),
            log_path=str(spec.log_path),
        )
        self._follow(ref, since=None)
        return ref

    def stop(self, ref: RuntimeRef, grace_s: float = 10.0) -> RuntimeState:
        """Stop (SIGTERM, SIGKILL after grace_s), then remove the container."""
        pump = self._unfollow(ref)
        try:
            container = self._engine(lambda: self.client().containers.get(ref.handle))
            self._engine(lambda: container.stop(timeout=max(0, math.ceil(grace_s))))
            if pump is not None:
                pump.join(2.0)  # let the last lines reach the log file
            final = self._state_of(container, ref)
            self._engine(lambda: container.remove(force=True))
        except NotFound:
            final = RuntimeState("missing", reason="container is gone")
        if pump is not None:
            pump.cancel()
        return final

    def state(self, ref: RuntimeRef) -> RuntimeState:
        """Return the container's state; exited includes the code and the last log lines."""
        try:
            container = self._engine(lambda: self.client().containers.get(ref.handle))
        except NotFound:
            return RuntimeState("missing", reason="container is gone")
        return self._state_of(container, ref)

    def upstream(self, ref: RuntimeRef) -> tuple[str, int]:
        """In Docker: the container name on the network; bare metal: the published loopback port."""
        if self.in_docker():
            return ref.name, ref.internal_port
        host = self._config.llama_host_addr
        return ("127.0.0.1" if host == "localhost" else host), ref.internal_port

    def stats(self, ref: RuntimeRef) -> ResourceStats | None:
        """Return CPU %, CPU quota and memory from one stats sample (CPU % needs two calls)."""
        try:
            container = self._engine(lambda: self.client().containers.get(ref.handle))
            if container.status != "running":
                return None
            sample = self._engine(
                lambda: self.client().api.stats(ref.handle, stream=False, one_shot=True)
            )
        except NotFound:
            return None
        usage = cpu_usage(sample)
        with self._lock:
            previous = self._cpu_samples.get(ref.handle)
            self._cpu_samples[ref.handle] = usage
        return stats_from_sample(sample, previous, container.attrs.get("HostConfig") or {})

    def discover(self) -> list[Discovered]:
        """Return this node's containers (running or exited), found by their labels."""
        labels = [f"{LABEL_MANAGED}=1", f"{LABEL_NODE}={self._config.node_name}"]
        containers = self._engine(
            lambda: self.client().containers.list(all=True, filters={"label": labels})
        )
        found = []
        for container in containers:
            ref = self._ref_from_labels(container)
            if ref is not None:
                found.append(Discovered(ref, self._state_of(container, ref)))
        return found

    def adopt(self, ref: RuntimeRef) -> None:
        """Resume copying output and watching for the exit.

        Copying resumes after the last line the previous manager copied (its cursor file),
        so lines printed while no manager ran are copied and none twice.
        """
        self._follow(ref, since=read_cursor(Path(ref.log_path)))

    def set_exit_listener(self, listener: ExitListener | None) -> None:
        """Register the callback told about exits not caused by stop()."""
        with self._lock:
            self._listener = listener

    def close(self) -> None:
        """Stop following logs; containers keep running for the next manager to adopt."""
        with self._lock:
            pumps, self._pumps = list(self._pumps.values()), {}
            client, self._client = self._client, None
        for pump in pumps:
            pump.cancel()
        if client is not None:
            client.close()

    # -- helpers

    def _engine(self, call: Callable[[], Any]) -> Any:
        """Run an engine call; connection problems become Unavailable (NotFound passes)."""
        try:
            return call()
        except NotFound:
            raise
        except APIError as exc:
            raise Unavailable(f"Docker API error: {exc.explanation or exc}") from None
        except _ENGINE_ERRORS as exc:
            raise Unavailable(f"Docker API error: cannot reach the Docker engine ({exc})") from None

    def _ensure_image(self, image: str) -> None:
        try:
            self._engine(lambda: self.client().images.get(image))
        except (ImageNotFound, NotFound):
            raise LaunchFailed(
                f"Docker image not found: {image} — pull it on the Docker host: "
                f"docker pull {image} (or POST /api/images/pull, Settings >> Docker Images)",
                image=image,
            ) from None

    def _ensure_network(self) -> None:
        """Create LLAMA_NETWORK when missing (a concurrent creation is fine)."""
        name = self._config.llama_network
        try:
            self._engine(lambda: self.client().networks.get(name))
            return
        except NotFound:
            pass
        try:
            self.client().networks.create(name, driver="bridge", check_duplicate=True)
        except APIError as exc:
            if exc.status_code != 409:
                raise Unavailable(
                    f"Docker API error: cannot create network {name}: {exc.explanation}"
                ) from None

    def _remove_leftover(self, name: str) -> None:
        """Remove an exited container of ours with the same name; refuse to touch others."""
        try:
            old = self._engine(lambda: self.client().containers.get(name))
        except NotFound:
            return
        labels = old.labels or {}
        if labels.get(LABEL_MANAGED) != "1" or labels.get(LABEL_NODE) != self._config.node_name:
            raise Conflict(
                f"a container named {name} exists and is not this node's llamaman instance"
            )
        if old.status in ("running", "restarting", "paused"):
            raise Conflict(f"container {name} is already running: stop it first")
        self._engine(lambda: old.remove(force=True))

    def _create_and_start(self, kwargs: dict[str, Any]) -> Any:
        """Create then start, so a failed start (port taken, GPU error) leaves nothing behind."""
        container = self._engine(lambda: self.client().containers.create(**kwargs))
        try:
            container.start()
            container.reload()
        except (APIError, RequestException) as exc:
            reason = getattr(exc, "explanation", None) or str(exc)
            with contextlib.suppress(*_ENGINE_ERRORS):
                container.remove(force=True)
            raise LaunchFailed(
                f"Docker API error: cannot start {kwargs['name']}: {reason}"
            ) from None
        return container

    def _state_of(self, container: Any, ref: RuntimeRef) -> RuntimeState:
        try:
            self._engine(container.reload)
        except NotFound:
            return RuntimeState("missing", reason="container is gone")
        state = container.attrs.get("State") or {}
        if state.get("Status") in _LIVE:
            return RUNNING
        code = state.get("ExitCode")
        tail = self._log_tail(container)
        if state.get("OOMKilled"):
            return RuntimeState(
                "exited",
                code,
                exit_reason(code, tail, "killed: out of memory (Memory Limit reached)"),
            )
        if state.get("Error"):
            return RuntimeState(
                "exited", code, exit_reason(code, tail, f"failed: {state['Error']}")
            )
        return RuntimeState("exited", code, exit_reason(code, tail))

    def _log_tail(self, container: Any, lines: int = 20) -> list[str]:
        try:
            data = container.logs(tail=lines)
        except _ENGINE_ERRORS:
            return []
        return data.decode("utf-8", "replace").splitlines()[-lines:]

    def _follow(self, ref: RuntimeRef, since: tuple[int, int] | None) -> None:
        """Start the pump that copies output to the log file and reports the exit."""
        pump = LogPump(
            self.client().api,
            ref.handle,
            Path(ref.log_path),
            since,
            lambda: self._stream_ended(ref),
        )
        with self._lock:
            old = self._pumps.get(ref.handle)
            self._pumps[ref.handle] = pump
        if old is not None:
            old.cancel()
        pump.start()

    def _unfollow(self, ref: RuntimeRef) -> LogPump | None:
        with self._lock:
            self._cpu_samples.pop(ref.handle, None)
            return self._pumps.pop(ref.handle, None)

    def _stream_ended(self, ref: RuntimeRef) -> bool:
        """Called by the pump: report the exit, or ask it to follow again if still running."""
        try:
            state = self.state(ref)
        except Unavailable:
            return True  # the engine is restarting; keep trying
        if state.running:
            return True
        with self._lock:
            watched = self._pumps.pop(ref.handle, None) is not None
            listener = self._listener
        if watched and listener is not None:
            listener(ref, state)
        return False

    def _ref_from_labels(self, container: Any) -> RuntimeRef | None:
        labels = container.labels or {}
        try:
            port = int(labels[LABEL_PORT])
            instance_id = labels[LABEL_INSTANCE]
        except (KeyError, ValueError):
            return None
        return RuntimeRef(
            kind=self.kind,
            instance_id=instance_id,
            node=labels.get(LABEL_NODE, ""),
            handle=container.id,
            name=container.name,
            internal_port=port,
            started_at=started_at(container.attrs),
            log_path=labels.get(LABEL_LOG, ""),
        )
