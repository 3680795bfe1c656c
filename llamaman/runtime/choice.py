"""Per-instance runtime choice: the global runtime plus, on demand, the other kind.

`RuntimeSet` is itself a Runtime: calls about a running llama-server go to the runtime of
its ref's kind, launches to the kind the spec asks for (the global one when it asks for
none). The other kind is created the first time an instance asks for it.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from llamaman.config import Config
from llamaman.errors import Invalid, LlamamanError
from llamaman.runtime.base import (
    Discovered,
    ExitListener,
    LaunchSpec,
    ResourceStats,
    Runtime,
    RuntimeRef,
    RuntimeState,
)
from llamaman.runtime.detect import find_server_binary

log = logging.getLogger(__name__)

KINDS = ("docker", "process")


def kind_problem(config: Config, kind: str) -> str | None:
    """None when a runtime of this kind can run here, else why not."""
    if kind == "process":
        if find_server_binary(config.llama_server_bin):
            return None
        return "the process runtime needs llama-server: set LLAMA_SERVER_BIN or put it on PATH"
    if kind == "docker":
        from llamaman.runtime import docker_answers

        return docker_answers()
    return f"unknown runtime '{kind}' (use one of: {', '.join(KINDS)})"


def build_kind(config: Config, kind: str) -> Runtime:
    """A runtime of this kind, whatever LLAMAMAN_RUNTIME says."""
    from llamaman.runtime import create_runtime

    return create_runtime(dataclasses.replace(config, runtime=kind))


class RuntimeSet:
    """The global runtime and the alternate kind, behind the one Runtime interface."""

    def __init__(self, primary: Runtime, config: Config,
                 build: Callable[[Config, str], Runtime] = build_kind,
                 problem: Callable[[Config, str], str | None] = kind_problem) -> None:
        self.primary = primary
        self.kind = primary.kind
        self._config = config
        self._build = build
        self._problem = problem
        self._others: dict[str, Runtime] = {}
        self._listener: ExitListener | None = None
        self._lock = threading.Lock()  # leaf lock: guards _others and _listener

    def __getattr__(self, name: str) -> Any:
        # Docker-specific helpers (client(), host()) used by images and monitoring: the global runtime's.
        return getattr(self.primary, name)

    def check(self, kind: str | None) -> None:
        """Invalid unless an instance may ask for this runtime kind on this node."""
        if kind is None or kind == self.kind:
            return
        if kind not in KINDS:
            raise Invalid(f"runtime must be one of: {', '.join(KINDS)}", field="runtime")
        with self._lock:
            if kind in self._others:
                return
        problem = self._problem(self._config, kind)
        if problem is not None:
            raise Invalid(f"runtime '{kind}' is not available on this node: {problem}", field="runtime")

    def of(self, kind: str | None) -> Runtime:
        """The runtime of this kind (created on first use)."""
        if kind is None or kind == self.kind:
            return self.primary
        with self._lock:
            runtime = self._others.get(kind)
            if runtime is not None:
                return runtime
        runtime = self._build(self._config, kind)
        with self._lock:
            runtime = self._others.setdefault(kind, runtime)
            listener = self._listener
        runtime.set_exit_listener(listener)
        return runtime

    def prepare(self, kinds: Iterable[str | None]) -> None:
        """Create the alternate runtimes stored records use, so restore finds their servers."""
        for kind in set(kinds) - {None, self.kind}:
            try:
                self.check(kind)
                self.of(kind)
            except (LlamamanError, OSError) as err:  # an unavailable engine must not stop the manager's boot
                log.warning("runtime '%s' used by some instances is unavailable: %s", kind, err)

    def launch(self, spec: LaunchSpec) -> RuntimeRef:
        return self.of(spec.runtime).launch(spec)

    def stop(self, ref: RuntimeRef, grace_s: float = 10.0) -> RuntimeState:
        return self.of(ref.kind).stop(ref, grace_s)

    def state(self, ref: RuntimeRef) -> RuntimeState:
        return self.of(ref.kind).state(ref)

    def upstream(self, ref: RuntimeRef) -> tuple[str, int]:
        return self.of(ref.kind).upstream(ref)

    def stats(self, ref: RuntimeRef) -> ResourceStats | None:
        return self.of(ref.kind).stats(ref)

    def discover(self) -> list[Discovered]:
        found = list(self.primary.discover())
        for runtime in self._alternates():
            found += runtime.discover()
        return found

    def adopt(self, ref: RuntimeRef) -> None:
        self.of(ref.kind).adopt(ref)

    def set_exit_listener(self, listener: ExitListener | None) -> None:
        with self._lock:
            self._listener = listener
        self.primary.set_exit_listener(listener)
        for runtime in self._alternates():
            runtime.set_exit_listener(listener)

    def close(self) -> None:
        self.primary.close()
        for runtime in self._alternates():
            runtime.close()

    def _alternates(self) -> list[Runtime]:
        with self._lock:
            return list(self._others.values())
