"""The cgroup reader on fake v2 and v1 trees, and the system sampler over a limited cgroup."""
from __future__ import annotations

from pathlib import Path

import psutil

from llamaman.monitoring import cgroup as cg
from llamaman.monitoring.system import SystemSampler

MIB = 1024 * 1024
CID = "0123abcd"


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2_tree(root: Path, cpu_max: str, memory_max: str, usage_usec: int = 0) -> None:
    write(root, "proc/self/cgroup", f"0::/system.slice/docker-{CID}.scope\n")
    write(root, "sys/fs/cgroup/cgroup.controllers", "cpu memory\n")
    own = f"sys/fs/cgroup/system.slice/docker-{CID}.scope"
    write(root, f"{own}/cpu.max", cpu_max + "\n")
    write(root, f"{own}/memory.max", memory_max + "\n")
    write(root, f"{own}/memory.current", str(300 * MIB) + "\n")
    write(root, f"{own}/memory.stat", f"anon 1\ninactive_file {100 * MIB}\nactive_file 5\n")
    write(root, f"{own}/cpu.stat", f"usage_usec {usage_usec}\nuser_usec 1\n")


def test_v2_quota_limit_and_working_set(tmp_path):
    v2_tree(tmp_path, "50000 100000", str(512 * MIB), usage_usec=1_500_000)
    group = cg.cgroup_of("self", tmp_path)
    assert group.version == 2 and group.memory.name == f"docker-{CID}.scope"
    assert cg.cpu_quota_cores(group) == 0.5
    assert cg.memory_limit(group) == 512 * MIB
    assert cg.memory_working_set(group) == 200 * MIB  # usage less inactive page cache
    assert cg.cpu_usage_ns(group) == 1_500_000_000


def test_v2_unlimited_reads_as_none(tmp_path):
    v2_tree(tmp_path, "max 100000", "max")
    group = cg.cgroup_of("self", tmp_path)
    assert cg.cpu_quota_cores(group) is None and cg.memory_limit(group) is None


def test_v2_inside_a_container_namespace_reads_the_mount_root(tmp_path):
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/cgroup.controllers", "cpu memory\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", "150000 100000\n")
    group = cg.cgroup_of("self", tmp_path)
    assert group.cpu == tmp_path / "sys/fs/cgroup" and cg.cpu_quota_cores(group) == 1.5


def test_v1_hybrid_uses_the_controller_hierarchies(tmp_path):
    lines = ["9:name=systemd:/docker/x", "4:memory:/docker/x", "3:cpu,cpuacct:/docker/x", "0::/docker/x",
             "bad line"]
    write(tmp_path, "proc/42/cgroup", "\n".join(lines) + "\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us", "200000\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/docker/x/cpuacct.usage", "777\n")
    write(tmp_path, "sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes", str(256 * MIB))
    write(tmp_path, "sys/fs/cgroup/memory/docker/x/memory.usage_in_bytes", str(64 * MIB))
    write(tmp_path, "sys/fs/cgroup/memory/docker/x/memory.stat", f"cache 9\ntotal_inactive_file {MIB}\n")
    group = cg.cgroup_of(42, tmp_path)
    assert group.version == 1
    assert cg.cpu_quota_cores(group) == 2.0 and cg.cpu_usage_ns(group) == 777
    assert cg.memory_limit(group) == 256 * MIB and cg.memory_working_set(group) == 63 * MIB


def test_v1_no_limit_is_none(tmp_path):
    write(tmp_path, "proc/self/cgroup", "4:memory:/\n1:cpu:/\n")
    write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n")
    write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n")
    write(tmp_path, "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
    group = cg.cgroup_of("self", tmp_path)
    assert cg.cpu_quota_cores(group) is None and cg.memory_limit(group) is None


def test_no_cgroup_file_means_no_cgroup(tmp_path):
    assert cg.cgroup_of("self", tmp_path) is None


def test_system_sampler_reports_the_cgroup_limits_and_cpu_share(tmp_path):
    v2_tree(tmp_path, "50000 100000", str(512 * MIB), usage_usec=0)
    now = [100.0]
    sampler = SystemSampler(cg.cgroup_of("self", tmp_path), clock=lambda: now[0])
    sampler.sample()
    now[0] = 102.0  # two seconds at a half-CPU quota allow 1 CPU-second; 0.25 s were used
    write(tmp_path, f"sys/fs/cgroup/system.slice/docker-{CID}.scope/cpu.stat", "usage_usec 250000\n")
    reading = sampler.sample()
    assert reading["cpu_percent"] == 25.0
    assert (reading["cpu_cores"], reading["cpu_quota_cores"]) == (0.5, 0.5)
    assert (reading["ram_total_mb"], reading["ram_used_mb"], reading["ram_free_mb"]) == (512, 200, 312)
    assert reading["ram_percent"] == round(100 * 200 / 512, 1) and reading["ram_source"] == "cgroup"
    assert reading["in_container"] is True and reading["cgroup_version"] == 2
    assert reading["cpu_count"] == psutil.cpu_count()


def test_system_sampler_without_a_cgroup_matches_psutil():
    reading = SystemSampler(None).sample()
    vm = psutil.virtual_memory()
    assert reading["cpu_cores"] == reading["cpu_count"] == psutil.cpu_count()
    assert reading["ram_total_bytes"] == vm.total and reading["ram_source"] == "host"
    assert abs(reading["ram_used_bytes"] - (vm.total - vm.available)) < 0.05 * vm.total
    assert 0.0 <= reading["cpu_percent"] <= 100.0 and reading["in_container"] is False
