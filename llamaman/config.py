"""Configuration: every environment variable of the README, read once and validated.

`Config.from_env()` raises ConfigError naming the offending variable; the entry
points print it as one line and exit with EX_CONFIG (78).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

EX_CONFIG = 78
GPU_TYPES = ("cuda", "rocm", "intel")
RUNTIMES = ("auto", "docker", "process")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


class ConfigError(Exception):
    """A configuration value is missing or invalid.

    Outside the LlamamanError tree on purpose: it stops the process at start (exit 78), before
    any request exists; a launch body parsed with these helpers turns it into Invalid."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True)
class PortRange:
    start: int
    end: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end

    def overlaps(self, other: PortRange) -> bool:
        return self.start <= other.end and other.start <= self.end

    def ports(self) -> range:
        return range(self.start, self.end + 1)


@dataclass(frozen=True)
class Config:
    node_name: str
    models_dir: Path
    data_dir: Path
    recordings_dir: Path
    logs_dir: Path
    host_models_dir: Path
    host_logs_dir: Path
    public_ports: PortRange
    internal_ports: PortRange
    proxy_port: int
    ui_port: int
    bind_host: str
    max_models: int
    idle_timeout_min: int
    secret_key: str | None
    database_url: str | None
    health_check_timeout: float
    model_load_timeout: float
    request_timeout: float
    llama_image: str | None
    llama_network: str
    container_prefix: str
    in_docker: bool | None
    llama_host_addr: str
    gpu_type: str | None
    gpu_devices: tuple[int, ...] | None
    runtime: str
    llama_server_bin: str | None
    cluster_enabled: bool
    cluster_secret: str | None
    cluster_advertise_url: str | None
    cluster_online_window_s: int
    hf_endpoint: str = "https://huggingface.co"
    hf_token: str | None = field(default=None, repr=False)
    llamactl_cache_dir: Path | None = None  # None: <MODELS_DIR>/llamactl-cache
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read and validate the configuration from environment variables."""
        return _Reader(os.environ if env is None else env).build()


class _Reader:
    """Reads typed values from an environment mapping, naming the variable on error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.warnings: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(name, f"expected an integer, got {value!r}") from None
        if not low <= number <= high:
            raise ConfigError(name, f"must be between {low} and {high}, got {number}")
        return number

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(name, f"expected a number, got {value!r}") from None
        if not low <= number <= high:
            raise ConfigError(name, f"must be between {low:g} and {high:g}, got {value}")
        return number

    def flag(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is None:
            return None
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(name, f"expected true or false, got {value!r}")

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        if value.lower() not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value.lower()

    def port_range(self, prefix: str, default: tuple[int, int]) -> PortRange:
        start = self.integer(f"{prefix}_START", default[0], 1, 65535)
        end = self.integer(f"{prefix}_END", default[1], 1, 65535)
        if end < start:
            raise ConfigError(f"{prefix}_END", f"{end} is below {prefix}_START {start}")
        return PortRange(start, end)

    def gpu_devices(self) -> tuple[int, ...] | None:
        value = self.raw("LLAMA_GPU_DEVICES")
        if value is None or value.lower() == "all":
            return None
        return parse_gpu_devices(value, "LLAMA_GPU_DEVICES")

    def node_name(self) -> str:
        value = self.raw("LLAMAMAN_NODE_NAME")
        if value is None:
            raise ConfigError(
                "LLAMAMAN_NODE_NAME",
                "is required: set it to a unique, stable name for this deployment "
                "(e.g. LLAMAMAN_NODE_NAME=srv1) and keep it",
            )
        if not _NODE_NAME.match(value):
            raise ConfigError(
                "LLAMAMAN_NODE_NAME",
                "use 1-128 letters, digits and . _ : @ - (starting with a letter or digit)",
            )
        return value

    def build(self) -> Config:
        node_name = self.node_name()
        data_dir = Path(self.text("DATA_DIR", "./data")).absolute()
        models_dir = Path(self.text("MODELS_DIR", "./models")).absolute()
        logs_dir = Path(self.text("LOGS_DIR", str(data_dir / "logs"))).absolute()
        public = self.port_range("PORT_RANGE", (8000, 8020))
        internal = self.port_range("INTERNAL_PORT_RANGE", (9000, 9020))
        proxy_port = self.integer("LLAMAMAN_PROXY_PORT", 42069, 1, 65535)
        ui_port = self.integer("LLAMAMAN_UI_PORT", 5000, 1, 65535)
        _check_ports(public, internal, proxy_port, ui_port)
        cluster = self.cluster()
        return Config(
            node_name=node_name,
            models_dir=models_dir,
            data_dir=data_dir,
            recordings_dir=Path(
                self.text("RECORDINGS_DIR", str(data_dir / "request_log"))
            ).absolute(),
            logs_dir=logs_dir,
            host_models_dir=Path(self.text("HOST_MODELS_DIR", str(models_dir))),
            host_logs_dir=Path(self.text("HOST_LOGS_DIR", str(logs_dir))),
            public_ports=public,
            internal_ports=internal,
            proxy_port=proxy_port,
            ui_port=ui_port,
            bind_host=self.text("LLAMAMAN_BIND", "0.0.0.0"),
            max_models=self.integer("LLAMAMAN_MAX_MODELS", 0, 0, 1000),
            idle_timeout_min=self.integer("LLAMAMAN_IDLE_TIMEOUT", 0, 0, 525600),
            secret_key=self.raw("SECRET_KEY"),
            database_url=self.raw("DATABASE_URL"),
            health_check_timeout=self.number("HEALTH_CHECK_TIMEOUT", 3, 0.1, 600),
            model_load_timeout=self.number("MODEL_LOAD_TIMEOUT", 300, 1, 86400),
            request_timeout=self.number("REQUEST_TIMEOUT", 300, 1, 86400),
            llama_image=self.raw("LLAMA_IMAGE"),
            llama_network=self.text("LLAMA_NETWORK", "llamaman-net"),
            container_prefix=self.text("LLAMA_CONTAINER_PREFIX", "llamaman-"),
            in_docker=self.flag("LLAMAMAN_IN_DOCKER"),
            llama_host_addr=self.text("LLAMA_HOST_ADDR", "localhost"),
            gpu_type=self.choice("GPU_TYPE", GPU_TYPES),
            gpu_devices=self.gpu_devices(),
            runtime=self.choice("LLAMAMAN_RUNTIME", RUNTIMES) or "auto",
            llama_server_bin=self.raw("LLAMA_SERVER_BIN"),
            **cluster,
            **self.downloads(),
            warnings=tuple(self.warnings),
        )

    def cluster(self) -> dict:
        enabled = bool(self.flag("CLUSTER_ENABLED"))
        secret = self.raw("CLUSTER_SECRET")
        if enabled and not secret:
            self.warnings.append("CLUSTER_ENABLED is set but CLUSTER_SECRET is empty: clustering is off")
            enabled = False
        return {
            "cluster_enabled": enabled,
            "cluster_secret": secret,
            "cluster_advertise_url": self.raw("CLUSTER_ADVERTISE_URL"),
            "cluster_online_window_s": self.integer("CLUSTER_NODE_ONLINE_WINDOW_S", 45, 1, 86400),
        }

    def downloads(self) -> dict:
        """HuggingFace endpoint and token, and the llamactl cache (LLAMACTL_LLAMACPP_CACHE_DIR
        wins over LLAMA_CACHE)."""
        cache = self.raw("LLAMACTL_LLAMACPP_CACHE_DIR") or self.raw("LLAMA_CACHE")
        endpoint = self.text("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigError("HF_ENDPOINT", f"expected an http(s) URL, got {endpoint!r}")
        return {"hf_endpoint": endpoint, "hf_token": self.raw("HF_TOKEN"),
                "llamactl_cache_dir": Path(cache).absolute() if cache else None}


def parse_gpu_devices(value: str, name: str = "gpu_devices") -> tuple[int, ...]:
    """Parse '0,1,3' into (0, 1, 3); raise ConfigError for anything else."""
    try:
        devices = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise ConfigError(name, f"expected comma-separated GPU indices, got {value!r}") from None
    if any(d < 0 or d > 255 for d in devices) or len(set(devices)) != len(devices):
        raise ConfigError(name, f"GPU indices must be distinct numbers 0-255, got {value!r}")
    return devices


def _check_ports(public: PortRange, internal: PortRange, proxy_port: int, ui_port: int) -> None:
    if public.overlaps(internal):
        raise ConfigError(
            "INTERNAL_PORT_RANGE_START",
            f"internal range {internal.start}-{internal.end} overlaps the public range "
            f"{public.start}-{public.end}",
        )
    for name, port in (("LLAMAMAN_PROXY_PORT", proxy_port), ("LLAMAMAN_UI_PORT", ui_port)):
        if port in public or port in internal:
            raise ConfigError(name, f"port {port} lies inside an instance port range")
    if proxy_port == ui_port:
        raise ConfigError("LLAMAMAN_PROXY_PORT", f"must differ from LLAMAMAN_UI_PORT ({ui_port})")
