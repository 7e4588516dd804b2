"""Keep freed CPU memory in the process, so that training steps stop paying the kernel for fresh pages.

PyTorch's CPU allocator takes every tensor from the C library's ``malloc``. glibc serves blocks above its mmap
threshold (at most 32 MB) with a fresh ``mmap`` and gives them back with ``munmap`` when they are freed. A ResNet
step at batch 256 allocates activations of tens to hundreds of MB, so every step maps them again and the kernel
zeroes every page on first touch: 300,000-500,000 minor page faults and 0.5-1.1 s of kernel CPU time per step of
2.5-4 s on the 2-core machine the benchmarks run on (``benchmarks/diagnostics/step_faults.py``). Serving every
block from the heap instead (``M_MMAP_MAX = 0``) and returning only more than 2 GB of free heap top to the system
(``M_TRIM_THRESHOLD``) lets the next step reuse the same pages: the faults and the kernel time go to about zero.
jemalloc or tcmalloc preloaded with ``LD_PRELOAD`` (the PyTorch CPU tuning guide's advice) do the same when they are
installed; this needs nothing installed.

The cost: memory freed by training stays in the process (up to the 2 GB trim threshold above what is in use), so
the resident size stays at its peak instead of breathing between steps, and the heap may fragment: blocks freed in
one order and requested again in another do not always fit, so glibc grows the heap for the first few steps until
every request finds a free block. In a synthetic step of four tensors (40, 80, 48 and 40 MB) the process settled at
1.3 GB after seven steps. Measured on EuroSAT at batch 256 (``benchmarks/cpu_memory.py``, 2 CPU cores): SimCLR
and BYOL steps 1.10x faster, kernel time per step from 0.5-0.8 s to under 0.01 s, peak resident size 0.4-0.5 GB
higher (2.4-2.7 GB to 2.8-3.1 GB, data included).
"""

from __future__ import annotations

import ctypes
import platform
import sys

#: glibc's ``mallopt`` parameter numbers (``malloc.h``).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: Free memory at the top of the heap above this is still returned to the system.
TRIM_THRESHOLD_BYTES = 2**31 - 1

_applied = False


def is_glibc() -> bool:
    """True on Linux with the GNU C library (the only ``malloc`` these settings are for)."""
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` reuse freed blocks instead of unmapping them (see the module docstring).

    Process-wide and permanent for the process (child processes forked later inherit it); calling it again does
    nothing. ``pretrain`` calls it for runs on the CPU unless ``reuse_freed_memory`` is off.

    Returns:
        True when the settings are in effect, False where they do not apply (not glibc, or ``mallopt`` refused).
    """
    global _applied
    if _applied:
        return True
    if not is_glibc():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # mallopt returns 1 on success and 0 on error.
    _applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _applied
