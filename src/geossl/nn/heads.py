"""Projection and prediction heads (MLPs), one small class per paper."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class ProjectionHead(nn.Sequential):
    """MLP head: Linear → [BatchNorm] → ReLU blocks, the last layer linear.

    Args:
        dims: layer widths including input and output, e.g. (512, 2048, 128).
        batch_norm: BatchNorm1d after every hidden linear layer.
        last_batch_norm: BatchNorm1d (no affine) on the output, as in BYOL/Barlow Twins heads.

    Shapes:
        (B, dims[0]) -> (B, dims[-1]).
    """

    def __init__(self, dims: Sequence[int], batch_norm: bool = True, last_batch_norm: bool = False) -> None:
        if len(dims) < 2:
            raise ValueError(f"a head needs at least input and output dims, got {list(dims)}")
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == len(dims) - 2
            # A bias right before a BatchNorm is cancelled by its mean subtraction.
            followed_by_norm = last_batch_norm if last else batch_norm
            layers.append(nn.Linear(d_in, d_out, bias=not followed_by_norm))
            if not last:
                if batch_norm:
                    layers.append(nn.BatchNorm1d(d_out))
                layers.append(nn.ReLU(inplace=True))
            elif last_batch_norm:
                layers.append(nn.BatchNorm1d(d_out, affine=False))
        super().__init__(*layers)
        self.dims = tuple(dims)


class SimCLRProjectionHead(ProjectionHead):
    """SimCLR projector g(·): input → hidden → output, ReLU (Chen et al. 2020, §2.1).

    The paper uses 2048 → 2048 → 128 for ResNet-50; SimCLR v2 adds BatchNorm, kept here because
    it trains faster at small batch sizes.
    """

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 2048, output_dim: int = 128) -> None:
        super().__init__((input_dim, hidden_dim, output_dim), batch_norm=True)
