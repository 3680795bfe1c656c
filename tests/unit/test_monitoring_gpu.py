"""GPU readers: sysfs on a fake /sys/class/drm tree, NVML's absent paths, in-container tool output."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from llamaman.monitoring.gpu import GpuHost, GpuSampler, detect_host
from llamaman.monitoring.gpu_exec import parse_nvidia_smi, parse_rocm_smi, tools_for
from llamaman.monitoring.gpu_nvml import NvmlReader
from llamaman.monitoring.gpu_sysfs import read_drm_gpus
from tests.appkit import make_config

GIB = 1024 ** 3


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def amd_card(root: Path, card: int, total: int, used: int, busy: int, millideg: int | None) -> None:
    device = f"sys/class/drm/card{card}/device"
    write(root, f"{device}/vendor", "0x1002\n")
    write(root, f"{device}/device", "0x744c\n")
    write(root, f"{device}/mem_info_vram_total", f"{total}\n")
    write(root, f"{device}/mem_info_vram_used", f"{used}\n")
    write(root, f"{device}/gpu_busy_percent", f"{busy}\n")
    if millideg is not None:
        write(root, f"{device}/hwmon/hwmon3/temp1_input", f"{millideg}\n")
        write(root, f"{device}/hwmon/hwmon3/temp2_input", "99000\n")  # junction: not the one shown


def intel_card(root: Path, card: int) -> None:
    write(root, f"sys/class/drm/card{card}/device/vendor", "0x8086\n")
    write(root, f"sys/class/drm/card{card}/device/device", "0x56a0\n")
    write(root, f"sys/class/drm/card{card}/gt_cur_freq_mhz", "1200\n")
    write(root, f"sys/class/drm/card{card}/gt_max_freq_mhz", "2400\n")


def test_amd_cards_with_vram_busy_and_hwmon_temperature(tmp_path):
    amd_card(tmp_path, 0, 24 * GIB, 3 * GIB, 37, 45500)
    amd_card(tmp_path, 1, 16 * GIB, 0, 0, None)
    write(tmp_path, "sys/class/drm/card0-DP-1/status", "connected\n")  # a connector, not a card
    write(tmp_path, "sys/class/drm/card1/device/product_name", "Radeon PRO W7800\n")
    first, second = read_drm_gpus(tmp_path)
    assert first == {"index": 0, "name": "AMD GPU 744c", "vendor": "rocm", "card": "card0",
                     "memory_total_bytes": 24 * GIB, "memory_used_bytes": 3 * GIB, "utilization_pct": 37,
                     "temperature_c": 45.5, "clock_mhz": None, "clock_max_mhz": None}
    assert second["index"] == 1 and second["name"] == "Radeon PRO W7800"
    assert second["temperature_c"] is None and second["memory_used_bytes"] == 0


def test_intel_card_gives_what_i915_exposes_and_nvidia_drm_cards_are_skipped(tmp_path):
    write(tmp_path, "sys/class/drm/card0/device/vendor", "0x10de\n")  # NVIDIA's DRM node: NVML reads it
    intel_card(tmp_path, 1)
    write(tmp_path, "usr/share/misc/pci.ids",
          "# comment\n8086  Intel Corporation\n\t56a0  DG2 [Arc A770]\n\t\t1234 5678  sub\n1002  AMD\n")
    [gpu] = read_drm_gpus(tmp_path)
    assert gpu["index"] == 0 and gpu["card"] == "card1" and gpu["name"] == "DG2 [Arc A770]"
    assert (gpu["clock_mhz"], gpu["clock_max_mhz"]) == (1200, 2400)
    assert gpu["memory_total_bytes"] is None and gpu["utilization_pct"] is None


def test_cards_are_ordered_by_number_not_by_name(tmp_path):
    for card in (10, 2):
        amd_card(tmp_path, card, GIB * card, 0, card, None)
    assert [(g["card"], g["index"]) for g in read_drm_gpus(tmp_path)] == [("card2", 0), ("card10", 1)]


def test_nvml_absent_driver_is_a_reason_not_an_error():
    reader = NvmlReader()  # the real pynvml: this machine has no NVIDIA driver library
    gpus, reason = reader.read()
    assert gpus is None and reason.startswith("NVML unavailable: ")
    assert "NVML Shared Library Not Found" in reason and "deploy.resources.reservations" in reason
    reader.close()


def test_nvml_package_missing_is_a_reason_and_is_retried_later(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    now = [0.0]
    reader = NvmlReader(clock=lambda: now[0])
    assert reader.read() == (None, "NVML unavailable: the nvidia-ml-py package (pynvml) is not installed")
    monkeypatch.delitem(sys.modules, "pynvml")
    assert reader.read()[1].endswith("is not installed"), "retried before the back-off ended"
    now[0] = 61.0
    assert "NVML Shared Library Not Found" in reader.read()[1]


def test_sampler_reads_sysfs_for_amd(tmp_path):
    amd_card(tmp_path, 0, 8 * GIB, GIB, 5, 40000)
    host = detect_host(make_config(tmp_path), tmp_path)
    assert (host.vendor, host.vendor_source, host.image, host.image_auto) == (
        "rocm", "detected", "ghcr.io/ggml-org/llama.cpp:server-rocm", True)
    reading = GpuSampler(host, NvmlReader(), lambda: None, tmp_path).sample()
    assert reading["source"] == "sysfs" and reading["reason"] is None and len(reading["gpus"]) == 1


def test_no_gpu_is_an_empty_list_with_the_reasons(tmp_path):
    host = detect_host(make_config(tmp_path), tmp_path)
    assert host.vendor is None and host.image == "ghcr.io/ggml-org/llama.cpp:server"
    reading = GpuSampler(host, NvmlReader(), lambda: None, tmp_path).sample()
    assert reading["gpus"] == [] and reading["source"] == "none"
    assert reading["reason"].startswith("no GPU detected (CPU only): NVML unavailable")
    assert "/sys/class/drm" in reading["reason"] and "no running llama-server container" in reading["reason"]


def test_gpu_type_and_llama_image_overrides_are_reported(tmp_path):
    host = detect_host(make_config(tmp_path, GPU_TYPE="cuda", LLAMA_IMAGE="my/llama:pinned"), tmp_path)
    assert host == GpuHost("cuda", "GPU_TYPE", "my/llama:pinned", False)
    reading = GpuSampler(host, NvmlReader(), lambda: None, tmp_path).sample()
    assert reading["reason"].startswith("cuda GPU not readable: NVML unavailable")
    assert "/sys/class/drm" not in reading["reason"]  # an NVIDIA host is never read through sysfs


def test_nvidia_smi_csv_is_parsed_in_bytes_with_unsupported_fields_as_none():
    text = "0, NVIDIA H100 80GB HBM3, 81559, 1024, 37, 31\n1, Tesla T4, 15360, 0, [N/A], [Not Supported]\n"
    first, second = parse_nvidia_smi(text)
    assert first == {"index": 0, "name": "NVIDIA H100 80GB HBM3", "vendor": "cuda",
                     "memory_total_bytes": 81559 * 1024 * 1024, "memory_used_bytes": 1024 * 1024 * 1024,
                     "utilization_pct": 37, "temperature_c": 31}
    assert second["utilization_pct"] is None and second["temperature_c"] is None
    assert parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate") == []


def test_rocm_smi_json_is_parsed_per_card():
    text = ('WARNING: something\n{"card1": {"Card Series": "Radeon RX 7900 XTX", "VRAM Total Memory (B)": '
            '"25753026560", "VRAM Total Used Memory (B)": "1048576", "GPU use (%)": "12", '
            '"Temperature (Sensor edge) (C)": "41.0", "Temperature (Sensor junction) (C)": "50.0"}, '
            '"card0": {"Card Series": "Radeon PRO", "GPU use (%)": "0"}, "system": {"Driver version": "6"}}')
    first, second = parse_rocm_smi(text)
    assert (first["index"], first["name"], first["memory_total_bytes"]) == (0, "Radeon PRO", None)
    assert second == {"index": 1, "name": "Radeon RX 7900 XTX", "vendor": "rocm",
                      "memory_total_bytes": 25753026560, "memory_used_bytes": 1048576,
                      "utilization_pct": 12, "temperature_c": 41}
    assert parse_rocm_smi("not json {") == []


@pytest.mark.parametrize(("vendor", "tools"), [
    ("cuda", ["nvidia-smi"]), ("rocm", ["rocm-smi"]), ("intel", []), (None, ["nvidia-smi", "rocm-smi"])])
def test_in_container_tools_follow_the_vendor(vendor, tools):
    assert [argv[0] for argv, _ in tools_for(vendor)] == tools
