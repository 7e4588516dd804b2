"""How much memory the process can still take before the system (or its container) runs out.

Used to refuse, with advice, a dataset that would not fit in memory before spending minutes decoding it. The free
memory that ``sysconf(SC_AVPHYS_PAGES)`` reports (``MemFree``) is the wrong number for that: it leaves out the page
cache, which the kernel drops on demand, so on a machine that has just read a few GB of files (a dataset, a pip
install) it can read 0.3 GB with 24 GB usable. Linux's own estimate, ``MemAvailable`` in ``/proc/meminfo``, counts
the reclaimable cache; a cgroup limit (a container, a batch scheduler's job) can be tighter, so the smaller of the
two is returned (the cgroup's usage without its inactive page cache, for the same reason).
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC_MEMINFO = Path("/proc/meminfo")
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def _meminfo_available(meminfo: Path) -> int | None:
    """``MemAvailable`` in bytes, or None when the file or the field is missing (kernels before 3.14)."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, rest = line.partition(":")
        if key.strip() == "MemAvailable":
            fields = rest.split()
            if fields and fields[0].isdigit():
                unit = fields[1].lower() if len(fields) > 1 else "b"
                return int(fields[0]) * (1024 if unit == "kb" else 1)
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) and unreadable files give None


def _stat_value(path: Path, key: str) -> int:
    """One field of a cgroup ``memory.stat`` file (0 when missing)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _cgroup_dirs(root: Path, proc_self_cgroup: Path) -> list[tuple[Path, str]]:
    """The process's memory cgroup directories with their version, own group first, then its ancestors up to ``root``.

    Inside a container the cgroup namespace makes the container's group the root, so ``root`` alone is right; on a
    host the process sits in a sub-group (systemd's slices), whose limit and its ancestors' all apply."""
    own: list[tuple[Path, str]] = []
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, rel = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        if controllers == "" and rel.startswith("/"):  # v2: "0::/user.slice/..."
            base, version = root, "v2"
        elif "memory" in controllers.split(",") and rel.startswith("/"):  # v1: "4:memory:/docker/..."
            base, version = root / "memory", "v1"
        else:
            continue
        d = base / rel.lstrip("/")
        while True:
            own.append((d, version))
            if d == base or base not in d.parents:
                break
            d = d.parent
    return own or [(root, "v2"), (root / "memory", "v1")]


def _cgroup_headroom(root: Path, proc_self_cgroup: Path) -> int | None:
    """The tightest limit minus usage over the process's memory cgroups, or None when none has a limit.

    Usage leaves out the inactive page cache, which the kernel reclaims before it hits the limit (``docker stats``
    counts it the same way); otherwise a container that has read its dataset once would look full."""
    headrooms = []
    for d, version in _cgroup_dirs(root, proc_self_cgroup):
        if version == "v2":
            limit, usage = _read_int(d / "memory.max"), _read_int(d / "memory.current")
            cache = _stat_value(d / "memory.stat", "inactive_file")
        else:
            limit, usage = _read_int(d / "memory.limit_in_bytes"), _read_int(d / "memory.usage_in_bytes")
            cache = _stat_value(d / "memory.stat", "total_inactive_file")
        # cgroup v1 spells "no limit" as a huge number (PAGE_COUNTER_MAX pages), not "max".
        if limit is not None and usage is not None and limit < 2**60:
            headrooms.append(max(limit - max(usage - cache, 0), 0))
    return min(headrooms) if headrooms else None


def available_memory_bytes(meminfo: Path = _PROC_MEMINFO, cgroup_root: Path = _CGROUP_ROOT,
                           proc_self_cgroup: Path = _PROC_SELF_CGROUP) -> int | None:
    """Bytes of memory a new allocation can still get without swapping or being killed.

    Args:
        meminfo: the ``/proc/meminfo`` to read (a parameter for tests).
        cgroup_root: the cgroup file system root to read (a parameter for tests).
        proc_self_cgroup: the process's ``/proc/self/cgroup`` (a parameter for tests).

    Returns:
        The smaller of ``MemAvailable`` and the cgroup's headroom; ``MemFree`` (``sysconf``) where ``/proc/meminfo``
        has no ``MemAvailable``; None where none of them can be read (not Linux and no ``sysconf``).
    """
    system = _meminfo_available(meminfo)
    if system is None:
        try:
            system = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            pass
    estimates = [v for v in (system, _cgroup_headroom(cgroup_root, proc_self_cgroup)) if v is not None]
    return min(estimates) if estimates else None
