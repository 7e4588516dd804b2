"""BAM method: a short training on 3- and 5-band images through its own multi-crop views, and the EMA teacher."""

from __future__ import annotations

import math

import pytest
import torch

from geossl.augment.views import MultiViewAugment, Normalization, ViewAugment
from geossl.methods.bam import BAM
from geossl.methods.registry import get_method
from geossl.nn import build_backbone
from geossl.train.run import default_views

B, SIZE = 4, 32
SMALL = {"hidden_dim": 64, "projection_dim": 32}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these tiny convolutions run ~10x slower with 2 threads on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_views(in_chans: int, n_local: int = 2):
    """The method's default views (2 global + ``n_local`` local crops) on random raw images."""
    rgb = in_chans == 3
    norm = Normalization(mean=[0.5] * in_chans, std=[0.25] * in_chans, value_scale=1 / 255 if rgb else 1.0)
    configs = default_views(BAM, SIZE, overhead=not rgb, local_crops=n_local, rgb=rgb)  # what the engine runs
    augment = MultiViewAugment([ViewAugment(cfg, norm, rgb=rgb) for cfg in configs])
    g = torch.Generator().manual_seed(in_chans)

    def batch() -> list[torch.Tensor]:
        raw = torch.randint(0, 256, (B, in_chans, SIZE, SIZE), generator=g).float() if rgb else torch.rand(B, in_chans, SIZE, SIZE, generator=g)
        return augment(raw, g)

    return batch


def test_registered_and_default_views() -> None:
    assert get_method("bam") is BAM
    views = BAM.default_views(224, overhead=False)
    assert len(views) == 8 and [v.size for v in views] == [224, 224] + [96] * 6
    assert views[0].crop_scale == (0.25, 1.0) and views[2].crop_scale == (0.05, 0.25)
    # The released recipe (see the class docstring for the measured collapse of the LARS alternative).
    assert BAM.optim_defaults == {"optimizer": "adamw", "lr": 3e-4, "weight_decay": 0.04, "gradient_clip": 0.3}
    assert BAM.defaults["teacher_momentum"] == 0.995 and BAM.defaults["top_k"] == 128


@pytest.mark.parametrize("in_chans", [3, 5])
def test_trains_two_steps(in_chans: int) -> None:
    torch.manual_seed(0)
    method = BAM(build_backbone("resnet18", in_chans), **SMALL)
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    batch = make_views(in_chans)
    for step in range(2):
        views = batch()
        assert len(views) == 4 and views[0].shape == (B, in_chans, SIZE, SIZE) and views[2].shape[-1] == 16
        out = method.training_step(views)
        assert out.loss.dim() == 0 and math.isfinite(out.loss.item())
        assert out.features.shape == (B, 512) and not out.features.requires_grad
        assert out.embeddings.shape == (B, 32) and not out.embeddings.requires_grad
        assert torch.allclose(out.embeddings.norm(dim=1), torch.ones(B), atol=1e-5)
        assert len(out.branches) == 2 and all(z.requires_grad and z.shape == (B, 32) for z in out.branches)
        assert 0 <= out.logs["target_column_mass_cv"] < 10
        opt.zero_grad()
        out.loss.backward()
        conv1 = method.backbone.conv1.weight
        assert conv1.shape[1] == in_chans and conv1.grad is not None and conv1.grad.abs().sum() > 0
        opt.step()
        method.on_optimizer_step(step + 1, 2)


def test_teacher_variant_moves_after_optimizer_step() -> None:
    torch.manual_seed(0)
    method = BAM(build_backbone("resnet18", 3), teacher_momentum=0.995, **SMALL)
    assert all(not p.requires_grad for p in method.teacher_backbone.parameters())
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.05)
    before = [p.detach().clone() for p in method.teacher_projector.parameters()]
    out = method.training_step(make_views(3)())
    assert math.isfinite(out.loss.item())
    opt.zero_grad()
    out.loss.backward()
    assert all(p.grad is None for p in method.teacher_backbone.parameters())
    opt.step()
    method.on_optimizer_step(0, 100)
    after = list(method.teacher_projector.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))
    # teacher <- 0.995 teacher + 0.005 student at step 0
    for a, b, s in zip(after, before, method.projector.parameters()):
        assert torch.allclose(a, 0.995 * b + 0.005 * s.detach(), atol=1e-6)
