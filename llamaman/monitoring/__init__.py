"""GPU (NVML, sysfs, in-container tools) and CPU/RAM monitoring, sampled off the request path."""
