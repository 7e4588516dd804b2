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


def test_available_memory_counts_the_page_cache(tmp_path):
    meminfo = _write(tmp_path / "meminfo", _MEMINFO)
    assert available_memory_bytes(meminfo, tmp_path / "no-cgroup") == 23068672 * 1024


def test_a_cgroup_limit_tighter_than_the_machine_wins(tmp_path):
    meminfo = _write(tmp_path / "meminfo", _MEMINFO)
    cgroup = tmp_path / "cgroup"
    _write(cgroup / "memory.max", f"{4 * 2**30}\n")
    _write(cgroup / "memory.current", f"{3 * 2**30}\n")
    assert available_memory_bytes(meminfo, cgroup) == 2**30
    _write(cgroup / "memory.max", "max\n")  # cgroup v2 without a limit
    assert available_memory_bytes(meminfo, cgroup) == 23068672 * 1024


def test_cgroup_v1_limits_are_read_and_its_no_limit_value_ignored(tmp_path):
    meminfo = _write(tmp_path / "meminfo", _MEMINFO)
    cgroup = tmp_path / "cgroup"
    _write(cgroup / "memory" / "memory.limit_in_bytes", f"{2 * 2**30}\n")
    _write(cgroup / "memory" / "memory.usage_in_bytes", f"{2**29}\n")
    assert available_memory_bytes(meminfo, cgroup) == 2 * 2**30 - 2**29
    _write(cgroup / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    assert available_memory_bytes(meminfo, cgroup) == 23068672 * 1024


@pytest.mark.skipif(not hasattr(os, "sysconf"), reason="no sysconf on this platform")
def test_without_memavailable_it_falls_back_to_free_memory(tmp_path):
    meminfo = _write(tmp_path / "meminfo", "MemTotal: 1024 kB\n")
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert abs(available_memory_bytes(meminfo, tmp_path / "none") - free) < 2**28  # free memory moves a little


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
