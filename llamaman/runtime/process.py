"""ProcessRuntime: llama-server as a native child process in its own process group.

The child gets its identity in the environment (LLAMAMAN_INSTANCE_ID, LLAMAMAN_NODE, …)
so a restarted manager finds it by scanning processes; pid + create time guard against
pid reuse. Output goes straight to the instance log file (it outlives the manager).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from llamaman.config import Config
from llamaman.runtime import detect
from llamaman.runtime.args import build_args
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
    model_relative_path,
    tail_lines,
)
from llamaman.runtime.process_env import (
    ENV_BIN,
    ENV_INSTANCE,
    ENV_LOG,
    ENV_MANAGED,
    ENV_NODE,
    ENV_PORT,
    address_space_limit,
    child_environment,
    exited_state,
)

LISTEN_HOST = "127.0.0.1"
_SAME_START_S = 0.05
GONE = "process is gone"
HOW_TO_GET = (
    "llama-server not found: set LLAMA_SERVER_BIN to its path or put it on PATH "
    "(build llama.cpp from https://github.com/ggml-org/llama.cpp or unpack a release), "
    "or use the Docker runtime (LLAMAMAN_RUNTIME=docker)"
)


@dataclass
class _Child:
    """A child this runtime started: its Popen (to reap it and read the code) and launch facts."""

    popen: subprocess.Popen
    started_at: float
    memory_limit: int | None


class ProcessRuntime:
    """Runs each instance as `llama-server` child processes on 127.0.0.1."""

    kind = "process"

    def __init__(
        self, config: Config, vendor_probe: Callable[[], str | None] | None = None
    ) -> None:
        """`vendor_probe` returns the GPU vendor (default: detection, GPU_TYPE first)."""
        self._config = config
        self._vendor_probe = vendor_probe or (lambda: detect.detect_gpu_vendor(config.gpu_type))
        self._lock = threading.Lock()  # leaf lock: guards the fields below, no I/O under it
        self._children: dict[int, _Child] = {}
        self._watched: set[int] = set()
        self._procs: dict[int, psutil.Process] = {}
        self._listener: ExitListener | None = None
        self._closed = threading.Event()

    def binary(self) -> str:
        """Return the llama-server binary (LLAMA_SERVER_BIN or PATH) or raise LaunchFailed."""
        configured = self._config.llama_server_bin
        found = detect.find_server_binary(configured)
        if found is None:
            where = (
                f"LLAMA_SERVER_BIN={configured} is not an executable file; " if configured else ""
            )
            raise LaunchFailed(where + HOW_TO_GET)
        return found

    def launch(self, spec: LaunchSpec) -> RuntimeRef:
        """Start llama-server appending to the instance log; return once it is spawned."""
        model_relative_path(spec.model_path, self._config.models_dir)
        command = [self.executable(spec), *self.command(spec)]
        env = {**self.environment(spec), ENV_BIN: command[0]}
        limit = spec.settings.memory_limit
        child = _spawn(command, env, spec.log_path, address_space_limit(limit))
        ref = RuntimeRef(
            kind=self.kind,
            instance_id=spec.instance_id,
            node=spec.node,
            handle=str(child.pid),
            name=command[0],
            internal_port=spec.internal_port,
            started_at=psutil.Process(child.pid).create_time(),
            log_path=str(spec.log_path),
        )
        with self._lock:
            self._children[child.pid] = _Child(child, ref.started_at, limit)
            self._watched.add(child.pid)
        self._start_watcher(ref, child.wait)
        return ref

    def executable(self, spec: LaunchSpec) -> str:
        """The instance's command override when it has one, else the configured llama-server."""
        override = spec.command_override
        if override is None:
            return self.binary()
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise LaunchFailed(f"command override {override} is not an executable file")
        return override

    def command(self, spec: LaunchSpec) -> list[str]:
        """Return llama-server's arguments (the key travels in the environment)."""
        model = str(spec.model_path)
        return build_args(spec.settings, model=model, host=LISTEN_HOST, port=spec.internal_port)

    def environment(self, spec: LaunchSpec) -> dict[str, str]:
        """Return the child's environment: a safe subset of ours, identity, key and GPUs."""
        devices = spec.settings.gpu_devices or self._config.gpu_devices
        return child_environment(spec, devices, self._vendor_probe())

    def stop(self, ref: RuntimeRef, grace_s: float = 10.0) -> RuntimeState:
        """SIGTERM the process group, SIGKILL it after grace_s; return the final state."""
        pid = int(ref.handle)
        with self._lock:
            self._watched.discard(pid)
        proc = self._identify(ref)
        if proc is not None:
            _signal_group(pid, signal.SIGTERM)
            if not self._wait(ref, proc, grace_s):
                _signal_group(pid, signal.SIGKILL)
                self._wait(ref, proc, 5.0)
        final = self.state(ref)
        with self._lock:
            if self._child(ref) is not None:
                del self._children[pid]
            self._procs.pop(pid, None)
        return final

    def state(self, ref: RuntimeRef) -> RuntimeState:
        """Return running, exited (code and log tail) or missing (gone, or the pid was reused)."""
        with self._lock:
            child = self._child(ref)
        if child is not None:
            code = child.popen.poll()
            return RUNNING if code is None else exited_state(code, ref, child.memory_limit)
        proc = self._identify(ref)
        try:
            if proc is not None and proc.status() != psutil.STATUS_ZOMBIE:
                return RUNNING
        except psutil.NoSuchProcess:
            pass
        return RuntimeState("missing", reason=exit_reason(None, tail_lines(ref.log_path), GONE))

    def upstream(self, ref: RuntimeRef) -> tuple[str, int]:
        """Return the loopback address llama-server listens on."""
        return LISTEN_HOST, ref.internal_port

    def stats(self, ref: RuntimeRef) -> ResourceStats | None:
        """Return CPU % (None on the first call: it needs two samples), RSS and RLIMIT_AS."""
        proc, fresh = self._sampler(ref)
        if proc is None:
            return None
        try:
            with proc.oneshot():
                percent = proc.cpu_percent(None)
                rss = proc.memory_info().rss
                soft, _ = proc.rlimit(psutil.RLIMIT_AS)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        limit = None if soft in (psutil.RLIM_INFINITY, -1) else soft
        return ResourceStats(None if fresh else percent, None, rss, limit)

    def discover(self) -> list[Discovered]:
        """Return this node's llama-servers, found by the identity in their environment."""
        found = []
        for proc in psutil.process_iter(["pid", "environ", "create_time", "cmdline"]):
            env = proc.info.get("environ") or {}
            if env.get(ENV_MANAGED) != "1" or env.get(ENV_NODE) != self._config.node_name:
                continue
            ref = _ref_from_env(proc, env)
            if ref is not None:
                found.append(Discovered(ref, self.state(ref)))
        return found

    def adopt(self, ref: RuntimeRef) -> None:
        """Watch a llama-server started by an earlier manager (its output goes to the log)."""
        proc = self._identify(ref)
        pid = int(ref.handle)
        with self._lock:
            if proc is None or pid in self._children or pid in self._watched:
                return
            self._watched.add(pid)
        self._start_watcher(ref, lambda: _wait_foreign(proc, self._closed))

    def set_exit_listener(self, listener: ExitListener | None) -> None:
        """Register the callback told about exits not caused by stop()."""
        with self._lock:
            self._listener = listener

    def close(self) -> None:
        """Stop reporting exits; the children keep running for the next manager to adopt."""
        self._closed.set()
        with self._lock:
            self._watched.clear()

    # -- helpers

    def _child(self, ref: RuntimeRef) -> _Child | None:
        """Return our child behind ref (caller holds the lock); None for other processes."""
        child = self._children.get(int(ref.handle))
        if child is None or abs(child.started_at - ref.started_at) > _SAME_START_S:
            return None
        return child

    def _identify(self, ref: RuntimeRef) -> psutil.Process | None:
        """Return the process when it is still the one launched (same pid and start time)."""
        try:
            proc = psutil.Process(int(ref.handle))
            if abs(proc.create_time() - ref.started_at) > _SAME_START_S:
                return None
            return proc
        except (psutil.NoSuchProcess, ValueError):
            return None

    def _sampler(self, ref: RuntimeRef) -> tuple[psutil.Process | None, bool]:
        """Return the cached Process for CPU sampling (cpu_percent measures between calls
        on the same object) and whether it is new; None when not running."""
        if not self.state(ref).running:
            return None, False
        pid = int(ref.handle)
        with self._lock:
            proc = self._procs.get(pid)
        if proc is not None and abs(proc.create_time() - ref.started_at) <= _SAME_START_S:
            return proc, False
        proc = self._identify(ref)
        if proc is not None:
            with self._lock:
                self._procs[pid] = proc
        return proc, True

    def _wait(self, ref: RuntimeRef, proc: psutil.Process, timeout: float) -> bool:
        """Wait for the exit (reaping our own child); True when it ended in time."""
        with self._lock:
            child = self._child(ref)
        try:
            if child is not None:
                child.popen.wait(timeout)
            else:
                proc.wait(timeout)
            return True
        except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
            return False
        except psutil.NoSuchProcess:
            return True

    def _start_watcher(self, ref: RuntimeRef, wait: Callable[[], object]) -> None:
        thread = threading.Thread(
            target=self._watch, args=(ref, wait), name=f"watch-{ref.handle}", daemon=True
        )
        thread.start()

    def _watch(self, ref: RuntimeRef, wait: Callable[[], object]) -> None:
        """Block until the process ends, then tell the listener (unless stop()/close() ran)."""
        with contextlib.suppress(psutil.Error, OSError):  # vanished meanwhile: ended all the same
            wait()
        pid = int(ref.handle)
        with self._lock:
            watched = pid in self._watched and not self._closed.is_set()
            self._watched.discard(pid)
            listener = self._listener
        if watched and listener is not None:
            listener(ref, self.state(ref))


def _spawn(
    command: list[str], env: dict[str, str], log_path: Path, preexec: Callable[[], None] | None
) -> subprocess.Popen:
    """Start the command in its own session, output appended to the log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own group: signals reach its helpers, not ours
                close_fds=True,
                preexec_fn=preexec,  # noqa: PLW1509 - see address_space_limit
            )
        except OSError as exc:
            raise LaunchFailed(f"cannot start {command[0]}: {exc}") from None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the whole process group led by pid (falls back to the process alone)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_foreign(proc: psutil.Process | None, closed: threading.Event) -> None:
    """Wait for a process that is not our child (psutil polls it), until it ends or close()."""
    while proc is not None and not closed.is_set():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return  # dead, waiting for a reaper that is not us
            proc.wait(timeout=0.5)
            return
        except psutil.TimeoutExpired:
            continue
        except psutil.NoSuchProcess:
            return


def _ref_from_env(proc: psutil.Process, env: dict[str, str]) -> RuntimeRef | None:
    try:
        port = int(env.get(ENV_PORT, ""))
    except ValueError:
        return None
    cmdline = proc.info.get("cmdline") or [""]
    return RuntimeRef(
        kind="process",
        instance_id=env.get(ENV_INSTANCE, ""),
        node=env.get(ENV_NODE, ""),
        handle=str(proc.pid),
        name=env.get(ENV_BIN) or cmdline[0],
        internal_port=port,
        started_at=proc.info.get("create_time") or 0.0,
        log_path=env.get(ENV_LOG, ""),
    )
