"""The memory check before decoding a dataset counts reclaimable page cache, and a container's limit."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from geossl.data import decode
from geossl.errors import GeosslError
from geossl.host_memory import available_memory_bytes

# The numbers of the CI machine whose run failed: 24 GB usable, 0.3 GB "free" after reading EuroSAT and torch.
_MEMINFO = """MemTotal:       25165824 kB
MemFree:          314572 kB
MemAvailable:   23068672 kB
Buffers:          102400 kB
Cached:         21000000 kB
"""


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _proc_cgroup(tmp_path, text="0::/\n"):
    return _write(tmp_path / "proc_self_cgroup", text)


def test_available_memory_counts_the_page_cache(tmp_path):
    meminfo = _write(tmp_path / "meminfo", _MEMINFO)
    assert available_memory_bytes(meminfo, tmp_path / "no-cgroup", _proc_cgroup(tmp_path)) == 23068672 * 1024


def test_a_cgroup_limit_tighter_than_the_machine_wins(tmp_path):
    meminfo, proc = _write(tmp_path / "meminfo", _MEMINFO), _proc_cgroup(tmp_path)
    cgroup = tmp_path / "cgroup"
    _write(cgroup / "memory.max", f"{4 * 2**30}\n")
    _write(cgroup / "memory.current", f"{3 * 2**30}\n")
    assert available_memory_bytes(meminfo, cgroup, proc) == 2**30
    # the container's inactive page cache is reclaimed before the limit is hit, so it counts as available
    _write(cgroup / "memory.stat", f"anon 1000\ninactive_file {2**29}\nactive_file 7\n")
    assert available_memory_bytes(meminfo, cgroup, proc) == 2**30 + 2**29
    _write(cgroup / "memory.max", "max\n")  # cgroup v2 without a limit
    assert available_memory_bytes(meminfo, cgroup, proc) == 23068672 * 1024


def test_the_process_sub_group_and_its_ancestors_limits_apply(tmp_path):
    # on a host (no cgroup namespace) the process sits in a systemd slice: its own limit, or a parent's, binds
    meminfo = _write(tmp_path / "meminfo", _MEMINFO)
    cgroup = tmp_path / "cgroup"
    proc = _proc_cgroup(tmp_path, "0::/user.slice/job-7\n")
    _write(cgroup / "user.slice" / "job-7" / "memory.max", f"{8 * 2**30}\n")
    _write(cgroup / "user.slice" / "job-7" / "memory.current", f"{2 * 2**30}\n")
    assert available_memory_bytes(meminfo, cgroup, proc) == 6 * 2**30
    _write(cgroup / "user.slice" / "memory.max", f"{5 * 2**30}\n")
    _write(cgroup / "user.slice" / "memory.current", f"{4 * 2**30}\n")
    assert available_memory_bytes(meminfo, cgroup, proc) == 2**30


def test_cgroup_v1_limits_are_read_and_its_no_limit_value_ignored(tmp_path):
    meminfo = _write(tmp_path / "meminfo", _MEMINFO)
    cgroup = tmp_path / "cgroup"
    proc = _proc_cgroup(tmp_path, "5:devices:/\n4:memory:/docker/abc\n0::/\n")
    group = cgroup / "memory" / "docker" / "abc"
    _write(group / "memory.limit_in_bytes", f"{2 * 2**30}\n")
    _write(group / "memory.usage_in_bytes", f"{2**29}\n")
    assert available_memory_bytes(meminfo, cgroup, proc) == 2 * 2**30 - 2**29
    _write(group / "memory.stat", f"cache 5\ntotal_inactive_file {2**28}\n")
    assert available_memory_bytes(meminfo, cgroup, proc) == 2 * 2**30 - 2**29 + 2**28
    _write(group / "memory.limit_in_bytes", "9223372036854771712\n")
    assert available_memory_bytes(meminfo, cgroup, proc) == 23068672 * 1024


@pytest.mark.skipif(not hasattr(os, "sysconf"), reason="no sysconf on this platform")
def test_without_memavailable_it_falls_back_to_free_memory(tmp_path):
    meminfo = _write(tmp_path / "meminfo", "MemTotal: 1024 kB\n")
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert abs(available_memory_bytes(meminfo, tmp_path / "none", _proc_cgroup(tmp_path)) - free) < 2**28  # free memory moves a little


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/meminfo is Linux's")
def test_this_machine_reports_at_least_its_free_memory():
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert available_memory_bytes() >= 0.5 * free  # MemAvailable includes MemFree (allowing for it moving)


def test_the_decode_check_uses_available_not_free_memory(monkeypatch):
    # 27,000 EuroSAT images need 0.33 GB: refused with 0.3 GB, accepted with the cache counted.
    monkeypatch.setattr(decode, "available_memory_bytes", lambda: 300 * 2**20)
    with pytest.raises(GeosslError, match="needs 0.3 GiB of memory but only 0.3 GiB is available; pass --image-size"):
        decode._check_memory(27000, (3, 64, 64), torch.uint8)
    monkeypatch.setattr(decode, "available_memory_bytes", lambda: 22 * 2**30)
    decode._check_memory(27000, (3, 64, 64), torch.uint8)
    monkeypatch.setattr(decode, "available_memory_bytes", lambda: None)
    decode._check_memory(27000, (3, 64, 64), torch.uint8)
