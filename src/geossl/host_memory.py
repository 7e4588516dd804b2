"""How much memory the process can still take before the system (or its container) runs out.

Used to refuse, with advice, a dataset that would not fit in memory before spending minutes decoding it. The free
memory that ``sysconf(SC_AVPHYS_PAGES)`` reports (``MemFree``) is the wrong number for that: it leaves out the page
cache, which the kernel drops on demand, so on a machine that has just read a few GB of files (a dataset, a pip
install) it can read 0.3 GB with 24 GB usable. Linux's own estimate, ``MemAvailable`` in ``/proc/meminfo``, counts
the reclaimable cache; a cgroup limit (a container, a batch scheduler's job) can be tighter, so the smaller of the
two is returned.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC_MEMINFO = Path("/proc/meminfo")
_CGROUP_ROOT = Path("/sys/fs/cgroup")


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


def _cgroup_headroom(root: Path) -> int | None:
    """Limit minus usage of the process's memory cgroup (v2, then v1), or None when there is no limit."""
    for limit_name, usage_name in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit, usage = _read_int(root / limit_name), _read_int(root / usage_name)
        # cgroup v1 spells "no limit" as a huge number (PAGE_COUNTER_MAX pages), not "max".
        if limit is not None and usage is not None and limit < 2**60:
            return max(limit - usage, 0)
    return None


def available_memory_bytes(meminfo: Path = _PROC_MEMINFO, cgroup_root: Path = _CGROUP_ROOT) -> int | None:
    """Bytes of memory a new allocation can still get without swapping or being killed.

    Args:
        meminfo: the ``/proc/meminfo`` to read (a parameter for tests).
        cgroup_root: the cgroup file system root to read (a parameter for tests).

    Returns:
        The smaller of ``MemAvailable`` and the cgroup's headroom; ``MemFree`` (``sysconf``) where ``/proc/meminfo``
        has no ``MemAvailable``; None where none of them can be read (not Linux and no ``sysconf``).
    """
    estimates = []
    system = _meminfo_available(meminfo)
    if system is None:
        try:
            system = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            system = None
    for value in (system, _cgroup_headroom(cgroup_root)):
        if value is not None:
            estimates.append(value)
    return min(estimates) if estimates else None
