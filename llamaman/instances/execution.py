"""Per-instance execution options: environment variables, command override, runtime choice,
and on-demand start. Validated here; whether the runtime is installed is the service's check."""
from __future__ import annotations

import re
from typing import Any

from llamaman.errors import Invalid
from llamaman.runtime.args import API_KEY_ENV
from llamaman.validation import get_bool

EXECUTION_DEFAULTS: dict[str, Any] = {
    "on_demand_start": False,
    "environment": {},
    "command_override": None,
    "runtime_kind": None,  # None: the global runtime (LLAMAMAN_RUNTIME)
}
RUNTIME_KINDS = ("docker", "process")
MAX_VARIABLES = 64
MAX_VALUE_LEN = 4096
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# The manager's own variables identify and secure the child: an instance may not set them.
_RESERVED_PREFIX = "LLAMAMAN_"
_RESERVED = frozenset({API_KEY_ENV})
# An override is one executable path, never a shell snippet (it is run without a shell anyway).
_SHELL_META = re.compile(r"[\s;&|$`<>(){}\[\]*?!~#'\"\\]")


def parse_execution(body: dict, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The execution options present in body, over base (or the defaults); Invalid when bad."""
    options = dict(base or EXECUTION_DEFAULTS)
    on_demand = get_bool(body, "on_demand_start")
    if on_demand is not None:
        options["on_demand_start"] = on_demand
    if "environment" in body:
        options["environment"] = parse_environment(body["environment"])
    if "command_override" in body:
        options["command_override"] = parse_command_override(body["command_override"])
    if "runtime_kind" in body:
        options["runtime_kind"] = parse_runtime_kind(body["runtime_kind"])
    return options


def parse_environment(raw: Any) -> dict[str, str]:
    """{NAME: value} with identifier names and string values."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise Invalid("'environment' must be an object of NAME: value", field="environment")
    if len(raw) > MAX_VARIABLES:
        raise Invalid(f"'environment' may hold at most {MAX_VARIABLES} variables", field="environment")
    env = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise Invalid(f"environment variable name {name!r} is not a valid identifier "
                          "(letters, digits and '_', not starting with a digit)", field="environment")
        if name in _RESERVED or name.startswith(_RESERVED_PREFIX):
            raise Invalid(f"environment variable {name} is set by llamaman itself", field="environment")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise Invalid(f"environment variable {name}: the value must be a string", field="environment")
        text = str(value)
        if "\x00" in text or len(text) > MAX_VALUE_LEN:
            raise Invalid(f"environment variable {name}: the value is too long or holds a NUL byte",
                          field="environment")
        env[name] = text
    return env


def parse_command_override(raw: Any) -> str | None:
    """An absolute executable path without shell metacharacters (None/"" clears it)."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or len(raw) > 1024:
        raise Invalid("'command_override' must be the path of an executable", field="command_override")
    if _SHELL_META.search(raw) or any(ord(c) < 32 for c in raw):
        raise Invalid("'command_override' must be a single executable path: no spaces or shell "
                      "metacharacters (; & | $ ` < > ( ) quotes …)", field="command_override")
    if not raw.startswith("/"):
        raise Invalid("'command_override' must be an absolute path", field="command_override")
    return raw


def parse_runtime_kind(raw: Any) -> str | None:
    """"docker", "process", or None for the global runtime."""
    if raw is None or raw == "":
        return None
    if raw not in RUNTIME_KINDS:
        raise Invalid(f"'runtime_kind' must be one of: {', '.join(RUNTIME_KINDS)} (or null for the "
                      "global runtime)", field="runtime_kind")
    return raw
