"""Negative cosine similarity: the prediction losses of SimSiam and BYOL.

SimSiam (Chen & He, CVPR 2021, eq. 1): ``D(p, z) = −cos(p, z)``.
BYOL (Grill et al., NeurIPS 2020, eq. 2): ``‖p̄ − z̄‖² = 2 − 2 cos(p, z)`` for the normalised p̄, z̄.

Both are per-pair losses averaged over the batch: no batch statistics, hence nothing to gather under DDP
(DDP's gradient averaging of the per-process means gives the global mean). The stop-gradient on the target
is the caller's job (``z.detach()`` or a ``no_grad`` teacher), so that the same loss also serves the
"without stop-gradient" ablation in which SimSiam collapses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geossl.errors import GeosslError
from geossl.losses.precision import float32_loss

__all__ = ["NegativeCosineSimilarity", "negative_cosine_similarity"]

FORMS = ("simsiam", "byol")


@float32_loss
def negative_cosine_similarity(p: torch.Tensor, z: torch.Tensor, form: str = "simsiam") -> torch.Tensor:
    """Mean negative cosine similarity between predictions and targets.

    Args:
        p: predictions, shape (N, D) (any leading shape (..., D) works).
        z: targets, same shape as ``p``; detach them first for the papers' stop-gradient.
        form: ``"simsiam"`` for ``−cos`` (range [−1, 1]) or ``"byol"`` for ``2 − 2 cos`` (range [0, 4]).

    Returns:
        Scalar, the mean over all pairs.
    """
    if form not in FORMS:
        raise GeosslError(f"form must be one of {FORMS}, got {form!r}")
    if p.shape != z.shape:
        raise GeosslError(f"p and z must have the same shape, got {tuple(p.shape)} and {tuple(z.shape)}")
    # Normalisation z / max(‖z‖, 1e-12), the library's convention (spec ssl_methods.md §0.1).
    cos = (F.normalize(p, dim=-1) * F.normalize(z, dim=-1)).sum(dim=-1)
    if form == "byol":
        return (2 - 2 * cos).mean()
    return -cos.mean()


class NegativeCosineSimilarity(nn.Module):
    """Negative cosine similarity loss of SimSiam (``−cos``) or BYOL (``2 − 2 cos``).

    Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021;
    Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020. The methods symmetrise it over the two views:
    SimSiam ``½ D(p₁, sg(z₂)) + ½ D(p₂, sg(z₁))``, BYOL ``L(q₁, sg(z'₂)) + L(q₂, sg(z'₁))``.

    Args:
        form: ``"simsiam"`` (default) or ``"byol"``.

    Shapes:
        forward(p (N, D), z (N, D)) -> scalar.

    Example:
        >>> loss_fn = NegativeCosineSimilarity(form="byol")
        >>> p, z = torch.randn(8, 256), torch.randn(8, 256)
        >>> loss = loss_fn(p, z.detach())
    """

    def __init__(self, form: str = "simsiam") -> None:
        super().__init__()
        if form not in FORMS:
            raise GeosslError(f"form must be one of {FORMS}, got {form!r}")
        self.form = form

    @float32_loss
    def forward(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return negative_cosine_similarity(p, z, self.form)

    def extra_repr(self) -> str:
        return f"form={self.form!r}"
