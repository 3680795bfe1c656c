"""Fallback GPU readings: run nvidia-smi / rocm-smi inside a running llama-server container.

Used when the manager has no native access (no NVML, no /sys/class/drm mount) but its
sibling containers do have the GPU. The readings are the whole host GPU's, not the container's.
"""
from __future__ import annotations

import json
import re
from typing import Any

MIB = 1024 * 1024
NVIDIA_QUERY = "index,name,memory.total,memory.used,utilization.gpu,temperature.gpu"
NVIDIA_SMI = ["nvidia-smi", f"--query-gpu={NVIDIA_QUERY}", "--format=csv,noheader,nounits"]
ROCM_SMI = ["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--showuse", "--showtemp",
            "--json"]
_CARD_KEY = re.compile(r"card(\d+)")


def tools_for(vendor: str | None) -> list[tuple[list[str], Any]]:
    """The commands worth trying for a vendor (both when it is unknown), with their parsers."""
    nvidia, rocm = (NVIDIA_SMI, parse_nvidia_smi), (ROCM_SMI, parse_rocm_smi)
    return {"cuda": [nvidia], "rocm": [rocm], "intel": []}.get(vendor or "", [nvidia, rocm])


def exec_gpus(container: Any, vendor: str | None) -> tuple[list[dict[str, Any]] | None, str]:
    """Readings from the first tool that works inside the container, else (None, why not)."""
    problems = []
    for argv, parse in tools_for(vendor):
        code, output = container.exec_run(argv, stdout=True, stderr=True)
        text = (output or b"").decode(errors="replace")
        if code == 0:
            gpus = parse(text)
            if gpus:
                return gpus, f"read with {argv[0]} inside container {container.name}"
            problems.append(f"{argv[0]} reported no GPU")
        else:
            problems.append(f"{argv[0]} failed (exit {code}): {_first_line(text)}")
    if not problems:
        return None, f"no in-container tool reads {vendor} GPUs"
    return None, f"in container {container.name}: " + "; ".join(problems)


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Parse `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` (MiB, %, C)."""
    gpus = []
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 6 or not cells[0].isdigit():
            continue
        index, name, total, used, util, temp = cells
        gpus.append({"index": int(index), "name": name, "vendor": "cuda",
                     "memory_total_bytes": _mib(total), "memory_used_bytes": _mib(used),
                     "utilization_pct": _number(util), "temperature_c": _number(temp)})
    return gpus


def parse_rocm_smi(text: str) -> list[dict[str, Any]]:
    """Parse `rocm-smi ... --json`: {"card0": {"VRAM Total Memory (B)": "...", ...}, ...}."""
    try:
        data = json.loads(text[text.find("{"):]) if "{" in text else {}
    except ValueError:
        return []
    cards = sorted((int(m.group(1)), fields) for key, fields in data.items()
                   if (m := _CARD_KEY.fullmatch(key)) and isinstance(fields, dict))
    return [_rocm_card(index, fields) for index, fields in cards]


def _rocm_card(index: int, fields: dict[str, Any]) -> dict[str, Any]:
    def pick(*needles: str) -> Any:
        for key, value in fields.items():
            if all(n in key.lower() for n in needles):
                return value
        return None
    return {"index": index, "name": str(pick("card series") or pick("card model") or f"AMD GPU {index}"),
            "vendor": "rocm", "memory_total_bytes": _int(pick("vram total memory")),
            "memory_used_bytes": _int(pick("vram total used")), "utilization_pct": _number(pick("gpu use")),
            "temperature_c": _number(pick("temperature", "edge") or pick("temperature"))}


def _number(value: Any) -> float | int | None:
    try:
        number = float(str(value).strip())
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"
    return int(number) if number.is_integer() else number


def _int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _mib(value: str) -> int | None:
    number = _number(value)
    return int(number * MIB) if number is not None else None


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[0][:300]
