"""AMD and Intel GPUs read from /sys/class/drm (amdgpu, i915 and xe drivers).

Every function takes the filesystem root so tests can lay out a fake sysfs tree. A value
the driver does not expose is None: i915, for one, has no VRAM or busy counters.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from llamaman.runtime.detect import ROOT, card_vendor

SYSFS_VENDORS = ("rocm", "intel")
_CARD = re.compile(r"card(\d+)")
_PCI_IDS = ("usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids")
_VENDOR_HEX = {"rocm": "1002", "intel": "8086"}
_VENDOR_NAME = {"rocm": "AMD", "intel": "Intel"}


def read_drm_gpus(root: Path = ROOT) -> list[dict[str, Any]]:
    """Return one reading per AMD/Intel card, indexed in card order from 0."""
    gpus: list[dict[str, Any]] = []
    for card in _cards(root):
        vendor = card_vendor(card)
        if vendor in SYSFS_VENDORS:
            gpus.append(_read_card(root, card, vendor, len(gpus)))
    return gpus


def _cards(root: Path) -> list[Path]:
    """The cardN directories (not their connectors such as card0-DP-1), in number order."""
    found = [(int(m.group(1)), p) for p in (root / "sys/class/drm").glob("card*")
             if (m := _CARD.fullmatch(p.name))]
    return [path for _, path in sorted(found)]


def _read_card(root: Path, card: Path, vendor: str, index: int) -> dict[str, Any]:
    device = card / "device"
    return {
        "index": index,
        "name": _card_name(root, device, vendor),
        "vendor": vendor,
        "card": card.name,
        "memory_total_bytes": read_int(device / "mem_info_vram_total"),
        "memory_used_bytes": read_int(device / "mem_info_vram_used"),
        "utilization_pct": read_int(device / "gpu_busy_percent"),
        "temperature_c": hwmon_temperature(device),
        "clock_mhz": read_int(card / "gt_cur_freq_mhz"),  # i915 exposes its GT clock here
        "clock_max_mhz": read_int(card / "gt_max_freq_mhz"),
    }


def hwmon_temperature(device: Path) -> float | None:
    """Degrees C from the card's hwmon: temp1_input (AMD's edge sensor) or the first one there."""
    for hwmon in sorted(device.glob("hwmon/hwmon*")):
        inputs = [hwmon / "temp1_input", *sorted(hwmon.glob("temp*_input"))]
        for path in inputs:
            millis = read_int(path)
            if millis is not None:
                return round(millis / 1000, 1)
    return None


def _card_name(root: Path, device: Path, vendor: str) -> str:
    """The board's product name when the driver gives one, else the PCI ids database's name."""
    product = _read(device / "product_name").strip()
    if product:
        return product
    device_id = _read(device / "device").strip().lower().removeprefix("0x")
    named = pci_device_name(root, _VENDOR_HEX[vendor], device_id) if device_id else None
    return named or f"{_VENDOR_NAME[vendor]} GPU {device_id or '?'}"


def pci_device_name(root: Path, vendor_hex: str, device_hex: str) -> str | None:
    """Look a device up in the system's pci.ids (hwdata), when it is installed."""
    for relative in _PCI_IDS:
        in_vendor = False
        for line in _read(root / relative).splitlines():
            if line and not line.startswith(("\t", "#")):
                in_vendor = line.startswith(vendor_hex + " ")
            elif in_vendor and line.startswith("\t") and not line.startswith("\t\t"):
                code, _, name = line.strip().partition(" ")
                if code == device_hex:
                    return name.strip()
    return None


def read_int(path: Path) -> int | None:
    """An integer sysfs attribute, or None when absent or unreadable."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
