"""Small typed readers for client input; every failure is an `Invalid` naming the field."""
from __future__ import annotations

import math
from typing import Any

from llamaman.errors import Invalid

_MISSING = object()


def require_object(data: Any, what: str = "request body") -> dict:
    """Return data when it is a JSON object, else raise Invalid."""
    if not isinstance(data, dict):
        raise Invalid(f"{what} must be a JSON object")
    return data


def get_str(
    body: dict, key: str, *, required: bool = False, default: str | None = None,
    max_len: int = 255, min_len: int = 0, allow_empty: bool = True,
) -> str | None:
    """Read a string field; strips surrounding whitespace."""
    value = body.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise Invalid(f"'{key}' is required")
        return default
    if not isinstance(value, str):
        raise Invalid(f"'{key}' must be a string")
    value = value.strip()
    if not value and not allow_empty:
        raise Invalid(f"'{key}' must not be empty")
    if len(value) > max_len:
        raise Invalid(f"'{key}' is longer than {max_len} characters")
    if len(value) < min_len:
        raise Invalid(f"'{key}' must be at least {min_len} characters")
    if any(ord(ch) < 32 for ch in value):
        raise Invalid(f"'{key}' contains control characters")
    return value


def get_bool(body: dict, key: str, *, default: bool | None = None) -> bool | None:
    """Read a boolean field (JSON true/false only)."""
    value = body.get(key, _MISSING)
    if value is _MISSING or value is None:
        return default
    if not isinstance(value, bool):
        raise Invalid(f"'{key}' must be true or false")
    return value


def get_int(
    body: dict, key: str, *, low: int, high: int, default: int | None = None,
    required: bool = False,
) -> int | None:
    """Read an integer field within [low, high]."""
    value = body.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise Invalid(f"'{key}' is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"'{key}' must be an integer")
    if not low <= value <= high:
        raise Invalid(f"'{key}' must be between {low} and {high}")
    return value


def get_float(
    body: dict, key: str, *, low: float, high: float, default: float | None = None,
) -> float | None:
    """Read a finite number field within [low, high]."""
    value = body.get(key, _MISSING)
    if value is _MISSING or value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Invalid(f"'{key}' must be a number")
    if not low <= value <= high:
        raise Invalid(f"'{key}' must be between {low:g} and {high:g}")
    return float(value)


def get_choice(body: dict, key: str, choices: tuple[str, ...], *, default: str | None = None) -> str | None:
    """Read a string field that must be one of choices."""
    value = get_str(body, key, default=default)
    if value is not None and value not in choices:
        raise Invalid(f"'{key}' must be one of: {', '.join(choices)}")
    return value


def reject_unknown(body: dict, allowed: set[str] | frozenset[str]) -> None:
    """Raise Invalid when body has keys outside allowed."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(unknown)}")
