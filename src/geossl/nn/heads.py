"""Projection and prediction heads (MLPs), one small class per paper."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from geossl.errors import GeosslError


def mlp_dims(input_dim: int, hidden_dim: int, output_dim: int, layers: int, name: str = "layers") -> tuple[int, ...]:
    """The widths of an MLP of ``layers`` linear layers, for :class:`ProjectionHead`: input, hidden ones, output.

    Args:
        name: the argument's name in the error (e.g. a method's ``projector_layers``).

    Raises:
        GeosslError: ``layers`` < 2 (a hidden layer and the output layer are the least a head has here).
    """
    if layers < 2:
        raise GeosslError(f"{name} must be >= 2 (a hidden layer and the output layer), got {layers}")
    return (input_dim, *[hidden_dim] * (layers - 1), output_dim)


class ProjectionHead(nn.Sequential):
    """MLP head: Linear → [BatchNorm] → ReLU blocks, the last layer linear.

    Args:
        dims: layer widths including input and output, e.g. (512, 2048, 128).
        batch_norm: BatchNorm1d after every hidden linear layer.
        last_batch_norm: BatchNorm1d on the output (SimSiam, MoCo v3; SimCLR v2 and lightly's SimCLR head).
        last_affine: whether that output BatchNorm learns a scale and shift (``False``: plain standardisation).

    Shapes:
        (B, dims[0]) -> (B, dims[-1]).
    """

    def __init__(
        self, dims: Sequence[int], batch_norm: bool = True, last_batch_norm: bool = False, last_affine: bool = False
    ) -> None:
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
                layers.append(nn.BatchNorm1d(d_out, affine=last_affine))
        super().__init__(*layers)
        self.dims = tuple(dims)


class SimCLRProjectionHead(ProjectionHead):
    """SimCLR projector g(·): input → hidden → output, ReLU (Chen et al. 2020, §2.1).

    The paper uses 2048 → 2048 → 128 for ResNet-50. SimCLR v2 (Chen et al. 2020b) adds BatchNorm after every
    layer, the output included; so does lightly's head. Kept here because it trains faster at small batch sizes.
    The output BatchNorm matters: 2 epochs on a fifth of EuroSAT (``benchmarks/lightly_compare.py``, seeds 0-3) gave
    a mean kNN of 58.9 without it and 60.4 with it (lightly's head: 62.7).
    """

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 2048, output_dim: int = 128) -> None:
        super().__init__((input_dim, hidden_dim, output_dim), batch_norm=True, last_batch_norm=True, last_affine=True)
