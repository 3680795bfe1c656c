"""Host detection against fake filesystem roots, image choice and binary lookup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llamaman.runtime.detect import (
    choose_image,
    detect_gpu_vendor,
    detect_in_docker,
    drm_vendors,
    find_server_binary,
    gpu_groups,
)

HOST_MOUNTINFO = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "95 22 0:50 / /var/lib/docker/containers/abc/mounts/shm rw - tmpfs shm rw\n"
)
DOCKER_MOUNTINFO = (
    "600 500 0:60 / / rw - overlay overlay rw\n"
    "610 600 8:1 /var/lib/docker/containers/abc/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n"
)
K8S_CGROUP = "12:pids:/kubepods/burstable/pod1/abc\n0::/\n"


def write(root: Path, relative: str, text: str = "") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def card(root: Path, index: int, vendor: str) -> None:
    write(root, f"sys/class/drm/card{index}/device/vendor", vendor + "\n")


def test_bare_host_is_not_docker(tmp_path: Path) -> None:
    write(tmp_path, "proc/1/cgroup", "0::/init.scope\n")
    write(tmp_path, "proc/self/mountinfo", HOST_MOUNTINFO)
    assert detect_in_docker(None, tmp_path) is False


@pytest.mark.parametrize("marker", [".dockerenv", "run/.containerenv"])
def test_marker_files_mean_docker(tmp_path: Path, marker: str) -> None:
    write(tmp_path, marker)
    assert detect_in_docker(None, tmp_path) is True


@pytest.mark.parametrize(
    "cgroup", ["9:memory:/docker/abc\n", K8S_CGROUP, "1:name=systemd:/lxc/c1\n"]
)
def test_cgroup_v1_paths_mean_docker(tmp_path: Path, cgroup: str) -> None:
    write(tmp_path, "proc/1/cgroup", cgroup)
    assert detect_in_docker(None, tmp_path) is True


def test_cgroup_v2_container_is_found_by_its_hostname_bind(tmp_path: Path) -> None:
    write(tmp_path, "proc/1/cgroup", "0::/\n")
    write(tmp_path, "proc/self/mountinfo", DOCKER_MOUNTINFO)
    assert detect_in_docker(None, tmp_path) is True


@pytest.mark.parametrize("override", [True, False])
def test_override_wins(tmp_path: Path, override: bool) -> None:
    write(tmp_path, ".dockerenv")
    assert detect_in_docker(override, tmp_path) is override
    assert detect_in_docker(override, tmp_path / "empty") is override


def test_no_gpu(tmp_path: Path) -> None:
    card(tmp_path, 0, "0x1234")
    assert detect_gpu_vendor(None, tmp_path) is None


@pytest.mark.parametrize("marker", ["proc/driver/nvidia/version", "dev/nvidia0"])
def test_nvidia_markers(tmp_path: Path, marker: str) -> None:
    write(tmp_path, marker)
    assert detect_gpu_vendor(None, tmp_path) == "cuda"


def test_nvml_probe_finds_nvidia(tmp_path: Path) -> None:
    assert detect_gpu_vendor(None, tmp_path, nvml_probe=lambda: True) == "cuda"
    assert detect_gpu_vendor(None, tmp_path, nvml_probe=lambda: False) is None


def test_amd_by_kfd_or_drm_vendor(tmp_path: Path) -> None:
    write(tmp_path, "dev/kfd")
    assert detect_gpu_vendor(None, tmp_path) == "rocm"
    other = tmp_path / "other"
    card(other, 1, "0x1002")
    assert detect_gpu_vendor(None, other) == "rocm"


def test_intel_by_drm_vendor(tmp_path: Path) -> None:
    card(tmp_path, 0, "0x8086")
    assert detect_gpu_vendor(None, tmp_path) == "intel"


def test_nvidia_beats_an_intel_igpu(tmp_path: Path) -> None:
    card(tmp_path, 0, "0x8086")
    write(tmp_path, "dev/nvidia0")
    assert detect_gpu_vendor(None, tmp_path) == "cuda"


def test_gpu_type_override_wins(tmp_path: Path) -> None:
    write(tmp_path, "dev/nvidia0")
    assert detect_gpu_vendor("rocm", tmp_path) == "rocm"


def test_drm_vendors_lists_every_card(tmp_path: Path) -> None:
    card(tmp_path, 0, "0x8086")
    card(tmp_path, 1, "0x10DE")
    write(tmp_path, "sys/class/drm/renderD128/dev", "226:128")
    assert drm_vendors(tmp_path) == {"intel", "cuda"}


@pytest.mark.parametrize(
    "explicit, vendor, image",
    [
        (None, "cuda", "ghcr.io/ggml-org/llama.cpp:server-cuda"),
        (None, "rocm", "ghcr.io/ggml-org/llama.cpp:server-rocm"),
        (None, "intel", "ghcr.io/ggml-org/llama.cpp:server-sycl"),
        (None, None, "ghcr.io/ggml-org/llama.cpp:server"),
        ("my/llama:pinned", "cuda", "my/llama:pinned"),
    ],
)
def test_choose_image(explicit: str | None, vendor: str | None, image: str) -> None:
    assert choose_image(explicit, vendor) == image


def test_gpu_groups_use_numeric_gids_of_device_nodes(tmp_path: Path) -> None:
    node = write(tmp_path, "dev/kfd")
    gid = os.stat(node).st_gid
    expected = (str(gid),) if gid != 0 else ("video", "render")
    assert gpu_groups(tmp_path) == expected
    assert gpu_groups(tmp_path / "none") == ("video", "render")


def test_find_server_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = write(tmp_path, "bin/llama-server", "#!/bin/sh\n")
    assert find_server_binary(str(binary)) is None  # not executable
    binary.chmod(0o755)
    assert find_server_binary(str(binary)) == str(binary)
    assert find_server_binary(str(tmp_path / "missing")) is None
    monkeypatch.setenv("PATH", str(binary.parent))
    assert find_server_binary(None) == str(binary)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert find_server_binary(None) is None
