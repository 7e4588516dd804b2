"""Multi-crop helpers shared by the methods (Caron et al. 2020, §3.2; Caron et al. 2021, §3.1).

Multi-crop adds V_l small "local" crops to the 2 "global" crops: more views per image at little extra cost,
because the local crops are small. The backbone (global-average-pooled) accepts any resolution, but one batch
must have one resolution, so views are grouped by size and each group goes through the backbone once, as DINO's
``MultiCropWrapper`` does. BatchNorm therefore normalises each resolution group with its own statistics, as in
the authors' code.

SwAV and DINO are defined for multi-crop. The two-view methods (SimCLR, BYOL, SimSiam, Barlow Twins, VICReg) take
local crops as SwAV's paper applies multi-crop to SimCLR (§4.1, Fig. 3): the first two views are the global ones, and
the two-view loss is averaged over the pairs that contain a global view (:func:`view_pairs`), or, for methods that
predict a target (BYOL, SimSiam), over every (view, other global view) direction (:func:`prediction_pairs`); only the
global views make targets, as DINO's teacher sees only the global crops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from geossl.augment.views import ViewConfig, paper_blur_sigma
from geossl.errors import GeosslError


#: Local crops SwAV and DINO take by default on images of at least :data:`MULTICROP_MIN_IMAGE_SIZE` px (the SwAV
#: paper's 6; DINO's paper has 10).
DEFAULT_LOCAL_CROPS = 6
#: Below this image side SwAV and DINO default to the two global crops only. At 64 px (local crops of 24 px) and 40
#: CPU minutes, two crops beat 2 + 6 on EuroSAT: SwAV +10.5 and +9.6 kNN over random init (two seeds) against +7.3,
#: DINO +7.3 against +2.5 (``benchmarks/results/zoo_eurosat.md``; all four with the unscaled blur of the time, see
#: :func:`multicrop_views`); lightly's CIFAR-10 benchmark (32 px) also trains
#: both with two crops and its Imagenette one (128 px) with 6 local crops.
MULTICROP_MIN_IMAGE_SIZE = 96


def default_local_crops(image_size: int) -> int:
    """SwAV's and DINO's default number of local crops: :data:`DEFAULT_LOCAL_CROPS` for images of at least
    :data:`MULTICROP_MIN_IMAGE_SIZE` px, none below (``--local-crops N`` sets it either way)."""
    return DEFAULT_LOCAL_CROPS if image_size >= MULTICROP_MIN_IMAGE_SIZE else 0


def local_crop_size(image_size: int) -> int:
    """Side of the local crops: the papers' 96/224 of the global size, a multiple of 8, at least 16 px.

    Never larger than ``image_size`` (upsampling tiny images would only add cost).
    """
    size = max(16, round(image_size * 96 / 224 / 8) * 8)
    return min(size, image_size)


def multicrop_views(
    image_size: int,
    overhead: bool,
    *,
    n_local: int,
    global_scale: tuple[float, float],
    local_scale: tuple[float, float],
    global_blur: Sequence[float],
    local_blur: float,
    color_strength: float,
) -> list[ViewConfig]:
    """Two global views then ``n_local`` local views (see :func:`local_crop_size`).

    The blur's σ is the papers' 0.1-2.0 px scaled to ``image_size`` (:func:`~geossl.augment.views.paper_blur_sigma`)
    on every view: the papers blur their 96-px local crops with the σ of their 224-px global ones, and the local crops
    here keep that ratio to the global size. Until 2026-12-05 the σ was not scaled (2 px at 64 px), see
    ``benchmarks/results/zoo_eurosat.md``.

    Args:
        image_size: side of the input images (the global crops keep it).
        overhead: aerial/satellite imagery: vertical flips too (no canonical orientation).
        n_local: number of local crops.
        global_scale: crop-area range of the global crops.
        local_scale: crop-area range of the local crops.
        global_blur: blur probability of each of the two global views.
        local_blur: blur probability of the local views.
        color_strength: colour-jitter strength s (RGB only).
    """
    if isinstance(n_local, bool) or not isinstance(n_local, int) or n_local < 0:
        raise GeosslError(f"n_local must be a non-negative integer, got {n_local!r}.")
    vflip = 0.5 if overhead else 0.0
    common = {"vflip": vflip, "color_strength": color_strength, "blur_sigma": paper_blur_sigma(image_size)}
    views = [ViewConfig(size=image_size, crop_scale=global_scale, blur=p, **common) for p in global_blur]
    small = local_crop_size(image_size)
    views += [ViewConfig(size=small, crop_scale=local_scale, blur=local_blur, **common) for _ in range(n_local)]
    return views


def multicrop_forward(backbone: nn.Module, views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Backbone features of every view, one forward pass per distinct resolution.

    Args:
        backbone: module mapping (B, C, H, W) to (B, D) for any H, W.
        views: V tensors (B_v, C, H_v, W_v).

    Returns:
        V feature tensors (B_v, D), in the order of ``views``.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, v in enumerate(views):
        groups.setdefault(tuple(v.shape[1:]), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(views)
    for idx in groups.values():
        feats = backbone(torch.cat([views[i] for i in idx]))
        for i, f in zip(idx, feats.split([views[i].shape[0] for i in idx])):
            out[i] = f
    return out  # type: ignore[return-value]


def view_pairs(n_views: int, n_global: int = 2) -> list[tuple[int, int]]:
    """Unordered pairs ``(i, j)``, ``i < j``, of views of which ``i`` is a global one.

    Two views give ``[(0, 1)]``, so a method's multi-crop loss (the mean over these pairs) is its two-view loss.
    ``V`` views give ``1 + 2 (V - 2)`` pairs: the two globals together, and each global with each local.
    """
    return [(i, j) for i in range(min(n_global, n_views)) for j in range(i + 1, n_views)]


def mean_over_view_pairs(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], z: Sequence[torch.Tensor]
) -> torch.Tensor:
    """A symmetric two-view loss averaged over :func:`view_pairs` of the V embeddings ``z``; with 2 views, the loss."""
    pairs = view_pairs(len(z))
    return sum(loss_fn(z[i], z[j]) for i, j in pairs) / len(pairs)


def prediction_pairs(n_views: int, n_global: int = 2) -> list[tuple[int, int]]:
    """Directions ``(source, target)``: every view predicts every global view but itself.

    Two views give ``[(1, 0), (0, 1)]``, the two terms of a symmetrised BYOL/SimSiam loss; ``V`` views give
    ``2 (V - 1)``.
    """
    return [(j, g) for g in range(min(n_global, n_views)) for j in range(n_views) if j != g]


def project_views(backbone: nn.Module, projector: nn.Module, views: Sequence[torch.Tensor]) -> tuple[list, list]:
    """Backbone features and projections of every view.

    The backbone runs once per resolution (:func:`multicrop_forward`); the projector runs once on all views, so its
    BatchNorm sees them together, as in the two-view methods.

    Returns:
        (features, projections): two lists of V tensors, (B_v, D) and (B_v, E), in the order of ``views``.
    """
    feats = multicrop_forward(backbone, views)
    z = projector(torch.cat(feats)).split([f.shape[0] for f in feats])
    return feats, list(z)


def check_views(method: str, views: Sequence[torch.Tensor], local_crops: bool) -> None:
    """One-line errors for a view list the method cannot take (fewer than 2; more, without local-crop support)."""
    if len(views) < 2 or (len(views) > 2 and not local_crops):
        wanted = "at least 2 views (2 global, then local crops)" if local_crops else "exactly 2 views (no local crops)"
        raise GeosslError(f"{method} needs {wanted}, got {len(views)}; configure two views" +
                          (" or add local crops with --local-crops" if local_crops else ""))


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` in the forward pass, ``factor * grad`` in the backward pass.

    With ``factor = 0`` it freezes a layer for a few steps (SwAV's prototypes, DINO's last layer) while keeping it in
    the graph: DDP then still sees a gradient for it (zero), and the run does not need
    ``find_unused_parameters``. The papers set the gradient to None instead; with the weight re-normalised after
    each step (both layers are normalised) weight decay on a zero gradient only rescales it, so the effect is the
    same.
    """
    if factor == 1.0:
        return x
    return x.detach() + factor * (x - x.detach())


def training_fraction_reached(step: int, total_steps: int, fraction: float) -> bool:
    """Whether ``step`` is past ``fraction`` of ``total_steps`` (False before the total is known, unless 0)."""
    if fraction <= 0:
        return True
    if total_steps <= 0:
        return False
    return step >= fraction * total_steps
