"""Shared pieces of the manual-loop collapse diagnoses (``bam_variants.py``, ``swav_variants.py``,
``dino_variants.py``): the variant string, its method arguments and optimiser, a fixed 2,560-image EuroSAT training
subset, and the per-step collapse statistics."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import SHARED_DATA  # noqa: E402

from geossl.data import load_data  # noqa: E402
from geossl.eval.monitors import rankme  # noqa: E402
from geossl.train.optim import build_optimizer, parameter_groups  # noqa: E402

BATCH = 256


def parse_variant(argv: list[str]) -> tuple[str, dict[str, str], set[str], int]:
    """``VARIANT STEPS`` → (variant, its key=value options, its flags, steps)."""
    variant, steps = argv[1], int(argv[2])
    opts = dict(p.split("=") for p in variant.split(",") if "=" in p)
    flags = {p for p in variant.split(",") if "=" not in p}
    return variant, opts, flags, steps


def method_args(opts: dict[str, str]) -> dict[str, int | float]:
    """The variant's ``m.NAME=VALUE`` options as method keyword arguments (integers where the value is one)."""
    return {k[2:]: (int(v) if v.isdigit() else float(v)) for k, v in opts.items() if k.startswith("m.")}


def variant_optimizer(method: torch.nn.Module, opts: dict[str, str], lr: float, weight_decay: float, name: str = "lars"):
    """The variant's optimiser (``opt``, ``lr`` per 256 images, ``wd`` options, else the given defaults) and its lr."""
    lr = float(opts.get("lr", lr)) * BATCH / 256
    groups = parameter_groups(method, float(opts.get("wd", weight_decay)))
    return build_optimizer(opts.get("opt", name), groups, lr), lr


def train_subset(n_batches: int = 10):
    """The EuroSAT data (60/20/20 split, seed 0) and ``n_batches`` x 256 of its train images (a seeded draw), (N, C, H, W)."""
    torch.set_num_threads(2)
    data = load_data(str(SHARED_DATA / "EuroSAT_RGB"), split=(0.6, 0.2, 0.2), seed=0)
    idx = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[: BATCH * n_batches]
    return data, torch.stack([data.train[int(i)][0] for i in idx])


def batch_views(augment, x: torch.Tensor, step: int, two_views: bool) -> list[torch.Tensor]:
    """The augmented views of batch ``step`` (cycled over the subset), channels-last; only the global crops if ``two_views``."""
    n = x.shape[0] // BATCH
    views = [v.contiguous(memory_format=torch.channels_last) for v in augment(x[(step % n) * BATCH:(step % n + 1) * BATCH])]
    return views[:2] if two_views else views


def collapse_stats(z: torch.Tensor, f: torch.Tensor) -> str:
    """Mean pairwise cosine of the (normalised) embeddings ``z`` (n, d), and the RankMe of ``z`` and the features ``f``."""
    n = z.shape[0]
    mean_cos = float(((z @ z.T).sum() - n) / (n * n - n))
    return f"mean cos {mean_cos:.3f} RankMe z {rankme(z):.1f} f {rankme(f):.1f}"
