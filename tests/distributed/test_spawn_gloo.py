"""``spawn_gloo`` (tests/conftest.py) ignores a rank that aborts as its process exits after the final barrier, and only that."""

from __future__ import annotations

import atexit
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..conftest import gloo_group, spawn_gloo


def _abort_at_exit(rank: int, world: int, store: str, out: dict) -> None:
    with gloo_group(rank, world, store):
        total = torch.tensor([float(rank + 1)])
        dist.all_reduce(total)
        out[rank] = float(total)
    if rank == 1:
        atexit.register(os.abort)  # as gloo's 'terminate called without an active exception' at process exit


def _abort_before_barrier(rank: int, world: int, store: str, out: dict) -> None:
    with gloo_group(rank, world, store):
        if rank == 1:
            os.abort()
        out[rank] = 1.0


def test_an_abort_at_exit_after_the_final_barrier_keeps_the_complete_results() -> None:
    out = mp.Manager().dict()
    spawn_gloo(_abort_at_exit, 2, out)
    assert dict(out) == {0: 3.0, 1: 3.0}


def test_an_abort_before_the_final_barrier_is_raised() -> None:
    with pytest.raises(mp.ProcessExitedException):
        spawn_gloo(_abort_before_barrier, 2, mp.Manager().dict())
