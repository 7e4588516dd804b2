"""Shared fixtures: small generated image folders, an isolated cache directory, process-group stores."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("GEOSSL_SHARED_DATA", REPO.parent / "shared" / "data"))


@contextlib.contextmanager
def gloo_group(rank: int, world: int, store: str) -> Iterator[None]:
    """Join a 2-process gloo test group on ``store`` (see :func:`gloo_store`) for the ``with`` body, then leave it.

    On success both ranks meet at a barrier before tearing gloo down: a rank that destroys the group while the other
    still runs its last collective can abort it ('terminate called without an active exception', seen once locally).
    """
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _run_rank(rank: int, worker, world: int, store: str, out) -> None:
    worker(rank, world, store, out)
    out[("__done__", rank)] = True  # this rank left gloo_group, so every rank passed its final barrier


def spawn_gloo(worker, world: int, out) -> None:
    """``mp.spawn(worker, args=(world, store, out), nprocs=world)`` on a fresh :func:`gloo_store`; workers use
    :func:`gloo_group`.

    gloo can abort a process as it exits ('terminate called without an active exception', SIGABRT; seen in a
    fresh-clone CI run on 2026-12-05 and once before). If the rank that failed had returned from its worker, it had
    passed the final barrier of :func:`gloo_group`, so every rank had run every collective and written its results
    before that barrier: the abort is ignored. An abort before that point is raised.
    """
    import torch.multiprocessing as mp

    try:
        mp.spawn(_run_rank, args=(worker, world, gloo_store(), out), nprocs=world, join=True)
    except mp.ProcessExitedException as e:
        if not out.get(("__done__", e.error_index), False):
            raise
    for rank in range(world):
        out.pop(("__done__", rank), None)


def gloo_store() -> str:
    """A fresh file-store path for a 2-process test group (``init_method=f"file://{path}"``).

    A file store cannot be taken by a concurrently running test, as a "free" TCP port can between the moment it is
    found and the moment the group binds it.
    """
    return os.path.join(tempfile.mkdtemp(prefix="geossl-gloo-"), "store")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Band statistics and other caches go to a per-session temporary folder, never ~/.cache."""
    monkeypatch.setenv("GEOSSL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "geossl-cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")


def make_rgb_folder(root: Path, classes: int = 3, per_class: int = 12, size: int = 16, seed: int = 0) -> Path:
    """A labelled folder of PNGs whose classes differ by colour (so they are learnable)."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        d = root / f"class_{c}"
        d.mkdir(parents=True, exist_ok=True)
        base = np.zeros(3)
        base[c % 3] = 180
        for i in range(per_class):
            img = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"img_{i}.png")
    return root


def make_npy_folder(root: Path, bands: int = 5, classes: int = 2, per_class: int = 10, size: int = 16, seed: int = 0) -> Path:
    """A labelled folder of (C, H, W) float32 .npy arrays."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        d = root / f"class_{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            np.save(d / f"img_{i}.npy", (rng.normal(c, 1.0, (bands, size, size))).astype(np.float32))
    return root


@pytest.fixture
def rgb_folder(tmp_path) -> Path:
    return make_rgb_folder(tmp_path / "rgb")


@pytest.fixture
def npy_folder(tmp_path) -> Path:
    return make_npy_folder(tmp_path / "npy")
