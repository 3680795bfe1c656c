"""What a llama-server child process gets: its environment (identity, internal key, GPU
choice), its address-space cap, and how its exit is described."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

from llamaman.errors import Invalid
from llamaman.runtime.args import API_KEY_ENV
from llamaman.runtime.base import (
    LaunchSpec,
    RuntimeRef,
    RuntimeState,
    exit_reason,
    tail_lines,
)
from llamaman.runtime.launch_settings import format_memory_limit

ENV_MANAGED = "LLAMAMAN_MANAGED"
ENV_INSTANCE = "LLAMAMAN_INSTANCE_ID"
ENV_NODE = "LLAMAMAN_NODE"
ENV_PORT = "LLAMAMAN_INTERNAL_PORT"
ENV_LOG = "LLAMAMAN_LOG_PATH"
ENV_BIN = "LLAMAMAN_BINARY"
# Only these reach the child: the manager's own secrets (SECRET_KEY, DATABASE_URL, …) must not.
_PASS_ENV = ("PATH", "HOME", "USER", "LANG", "TZ", "TMPDIR", "LD_LIBRARY_PATH")
_PASS_PREFIXES = ("LC_", "CUDA_", "ROCR_", "HIP_", "HSA_", "GGML_", "ZE_", "ONEAPI_", "SYCL_")
MEMORY_HINT = (
    "Memory Limit {} is enforced as RLIMIT_AS, a cap on virtual memory (the mapped model, "
    "thread stacks and allocator arenas all count): raise it if the log shows failed "
    "allocations or threads"
)


def child_environment(
    spec: LaunchSpec, devices: tuple[int, ...] | None, vendor: str | None
) -> dict[str, str]:
    """Return the child's environment: a safe subset of ours, identity, key and GPUs."""
    env = {k: v for k, v in os.environ.items() if k in _PASS_ENV or k.startswith(_PASS_PREFIXES)}
    env.update(spec.environment)  # before the identity and key below, which must win
    env.update(
        {
            ENV_MANAGED: "1",
            ENV_INSTANCE: spec.instance_id,
            ENV_NODE: spec.node,
            ENV_PORT: str(spec.internal_port),
            ENV_LOG: str(spec.log_path),
            API_KEY_ENV: spec.api_key,
        }
    )
    env.update(gpu_environment(vendor, devices))
    return env


def gpu_environment(vendor: str | None, devices: tuple[int, ...] | None) -> dict[str, str]:
    """Return the variables that restrict llama-server to the selected GPUs (none: all)."""
    if not devices:
        return {}
    value = ",".join(map(str, devices))
    if vendor == "intel":
        raise Invalid("GPU Devices is not supported on Intel Arc: leave it empty (all GPUs)")
    if vendor == "cuda":
        return {"CUDA_VISIBLE_DEVICES": value}
    if vendor == "rocm":
        return {"ROCR_VISIBLE_DEVICES": value}
    return {"CUDA_VISIBLE_DEVICES": value, "ROCR_VISIBLE_DEVICES": value}


def address_space_limit(limit: int | None) -> Callable[[], None] | None:
    """Return a preexec function capping the child's address space, or None.

    RLIMIT_AS caps *virtual* memory: mmap'd model files, thread stacks and allocator
    arenas all count, so the limit must sit well above the model size. preexec_fn is
    used despite its fork-safety warning because it only runs one C call (a pre-bound
    setrlimit) between fork and exec.
    """
    if limit is None:
        return None
    if not sys.platform.startswith("linux"):
        raise Invalid(
            "memory_limit: the process runtime enforces it only on Linux (RLIMIT_AS); "
            "leave it empty"
        )
    import resource

    return functools.partial(resource.setrlimit, resource.RLIMIT_AS, (limit, limit))


def exited_state(code: int, ref: RuntimeRef, memory_limit: int | None = None) -> RuntimeState:
    """Popen reports death by signal N as -N; report 128+N like Docker and shells do."""
    normal = 128 - code if code < 0 else code
    reason = exit_reason(normal, tail_lines(ref.log_path))
    if memory_limit is not None and normal != 0:
        head, sep, tail = reason.partition(":\n")
        reason = f"{head}; {MEMORY_HINT.format(format_memory_limit(memory_limit))}{sep}{tail}"
    return RuntimeState("exited", normal, reason)
