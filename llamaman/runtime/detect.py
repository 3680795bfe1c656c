"""Host detection: are we in a container, which GPU vendor is present, which image fits.

Every function takes the filesystem root as a parameter so tests can point it at a
temporary directory laid out like a host.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

ROOT = Path("/")
IMAGE_BASE = "ghcr.io/ggml-org/llama.cpp"
IMAGES = {"cuda": "server-cuda", "rocm": "server-rocm", "intel": "server-sycl", None: "server"}
_CGROUP_HINTS = ("docker", "kubepods", "containerd", "libpod", "lxc")
_BIND_HINTS = ("/containers/", "docker", "containerd", "kubelet", "libpod")
_VENDOR_IDS = {"0x10de": "cuda", "0x1002": "rocm", "0x8086": "intel"}


def detect_in_docker(override: bool | None = None, root: Path = ROOT) -> bool:
    """Return whether this process runs inside a container; `override` (LLAMAMAN_IN_DOCKER) wins."""
    if override is not None:
        return override
    if (root / ".dockerenv").exists() or (root / "run/.containerenv").exists():
        return True
    return _cgroup_says_container(root) or _mounts_say_container(root)


def _cgroup_says_container(root: Path) -> bool:
    """cgroup v1 (and hybrid) paths of PID 1 name the container engine."""
    text = _read(root / "proc/1/cgroup")
    return any(hint in text for hint in _CGROUP_HINTS)


def _mounts_say_container(root: Path) -> bool:
    """cgroup v2 hides the engine, but engines bind-mount /etc/hostname from their state dir.

    Only the mount point of that bind counts: the host itself lists its containers'
    mounts (e.g. /var/lib/docker/containers/<id>/mounts/shm) but never at /etc/hostname.
    """
    for line in _read(root / "proc/self/mountinfo").splitlines():
        parts = line.split()
        if (
            len(parts) > 4
            and parts[4] in ("/etc/hostname", "/etc/hosts")
            and any(hint in parts[3] for hint in _BIND_HINTS)
        ):
            return True
    return False


def detect_gpu_vendor(
    override: str | None = None,
    root: Path = ROOT,
    nvml_probe: Callable[[], bool] | None = None,
) -> str | None:
    """Return "cuda", "rocm", "intel" or None (CPU); `override` (GPU_TYPE) wins.

    NVIDIA first (driver proc entry, device node, or NVML), then AMD (/dev/kfd or a DRM
    card with AMD's PCI vendor id), then Intel (a DRM card with vendor 0x8086).
    """
    if override:
        return override
    if (root / "proc/driver/nvidia").exists() or (root / "dev/nvidia0").exists():
        return "cuda"
    if nvml_probe is not None and nvml_probe():
        return "cuda"
    vendors = drm_vendors(root)
    if (root / "dev/kfd").exists() or "rocm" in vendors:
        return "rocm"
    if "intel" in vendors:
        return "intel"
    return "cuda" if "cuda" in vendors else None


def drm_vendors(root: Path = ROOT) -> set[str]:
    """Return the GPU vendors of the DRM cards listed in /sys/class/drm."""
    found = set()
    for vendor_file in sorted((root / "sys/class/drm").glob("card*/device/vendor")):
        vendor = card_vendor(vendor_file.parent.parent)
        if vendor:
            found.add(vendor)
    return found


def card_vendor(card: Path) -> str | None:
    """Return "cuda", "rocm" or "intel" for a /sys/class/drm/cardN directory, else None."""
    return _VENDOR_IDS.get(_read(card / "device/vendor").strip().lower())


def probe_nvml() -> bool:
    """Return True when pynvml is installed and reports at least one NVIDIA GPU."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetCount() > 0
        finally:
            pynvml.nvmlShutdown()
    except (pynvml.NVMLError, OSError):  # any NVML failure means "no usable NVIDIA GPU"
        return False


def choose_image(explicit: str | None, vendor: str | None) -> str:
    """Return LLAMA_IMAGE when set, else the official llama.cpp server image for the vendor."""
    if explicit:
        return explicit
    return f"{IMAGE_BASE}:{IMAGES.get(vendor, IMAGES[None])}"


def gpu_groups(root: Path = ROOT) -> tuple[str, ...]:
    """Return the group ids owning the AMD/Intel device nodes, for the container's group_add.

    Numeric host gids are used because the image may lack a "render" group; the names
    are the fallback when the nodes are not visible here (e.g. the manager in a container).
    """
    nodes = [
        root / "dev/kfd",
        *sorted((root / "dev/dri").glob("renderD*")),
        *sorted((root / "dev/dri").glob("card*")),
    ]
    gids = []
    for node in nodes:
        try:
            gid = str(node.stat().st_gid)
        except OSError:
            continue
        if gid != "0" and gid not in gids:
            gids.append(gid)
    return tuple(gids) or ("video", "render")


def find_server_binary(configured: str | None) -> str | None:
    """Return the llama-server binary: LLAMA_SERVER_BIN when set (and executable), else PATH."""
    if configured:
        path = Path(configured)
        return str(path) if path.is_file() and _executable(path) else None
    return shutil.which("llama-server")


def _executable(path: Path) -> bool:
    return os.access(path, os.X_OK)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
