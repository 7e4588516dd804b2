"""Losses as ``nn.Module`` s (with functional twins), usable in a plain PyTorch loop."""

from geossl.losses.contrastive import NTXentLoss, info_nce, nt_xent

__all__ = ["NTXentLoss", "info_nce", "nt_xent"]
