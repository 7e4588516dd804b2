"""SwAV and DINO methods: multi-crop training steps on 3-, 1- and 12-band inputs, teacher EMA, frozen layers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geossl.augment.views import ViewConfig
from geossl.errors import GeosslError
from geossl.methods._multicrop import local_crop_size, multicrop_forward
from geossl.methods.dino import DINO
from geossl.methods.swav import SwAV
from geossl.nn.backbones import build_backbone

B, GLOBAL, LOCAL = 4, 32, 16
SMALL = {
    "swav": (SwAV, {"hidden_dim": 64, "projection_dim": 32, "n_prototypes": 16}),
    "dino": (DINO, {"hidden_dim": 64, "bottleneck_dim": 16, "out_dim": 64}),
}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these tiny convolutions run ~10x slower with 2 threads on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyBackbone(nn.Sequential):
    """Two convolutions and global pooling: any resolution in, (B, 16) out, cheap enough for many steps on CPU."""

    feature_dim = 16

    def __init__(self, in_chans: int) -> None:
        super().__init__(
            nn.Conv2d(in_chans, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )


def make(name: str, in_chans: int, resnet: bool = False, **kw):
    """A small method; ``resnet`` uses the library's ResNet-18 builder (slower: only for the band-count test)."""
    torch.manual_seed(0)
    cls, small = SMALL[name]
    backbone = build_backbone("resnet18", in_chans=in_chans) if resnet else TinyBackbone(in_chans)
    return cls(backbone, **{**small, **kw})


def views(in_chans: int, n_local: int = 2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, in_chans, GLOBAL, GLOBAL, generator=g) for _ in range(2)] + [
        torch.randn(B, in_chans, LOCAL, LOCAL, generator=g) for _ in range(n_local)
    ]


@pytest.mark.parametrize("in_chans", [3, 1, 12])
@pytest.mark.parametrize("name", ["swav", "dino"])
def test_training_step_multicrop(name: str, in_chans: int) -> None:
    method = make(name, in_chans, resnet=True)
    # unfreeze the prototypes / last layer: pretend we are past the first steps
    method.on_optimizer_step(50, 100)
    out = method.training_step(views(in_chans))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.features.shape == (B, 512) and not out.features.requires_grad
    assert out.embeddings.shape[0] == B and not out.embeddings.requires_grad
    out.loss.backward()
    conv1 = method.backbone.conv1.weight
    assert conv1.shape[1] == in_chans
    assert conv1.grad is not None and conv1.grad.abs().sum() > 0
    head_last = method.prototypes.weight if name == "swav" else method.head.last_v
    assert head_last.grad is not None and head_last.grad.abs().sum() > 0
    if name == "dino":
        assert all(not p.requires_grad and p.grad is None for p in method.teacher_backbone.parameters())
        assert all(not p.requires_grad and p.grad is None for p in method.teacher_head.parameters())


@pytest.mark.parametrize("name", ["swav", "dino"])
def test_backbone_runs_once_per_resolution(name: str) -> None:
    method = make(name, 3)
    calls: list[tuple[int, ...]] = []
    method.backbone.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    method.training_step(views(3, n_local=3))
    assert calls == [(2 * B, 3, GLOBAL, GLOBAL), (3 * B, 3, LOCAL, LOCAL)]


def test_multicrop_forward_equals_per_view_forward() -> None:
    torch.manual_seed(0)
    backbone = TinyBackbone(2).eval()  # eval: BatchNorm does not depend on the grouping
    vs = [views(2, n_local=2)[i] for i in (2, 0, 3, 1)]  # sizes interleaved: grouping must restore the order
    grouped = multicrop_forward(backbone, vs)
    with torch.no_grad():
        for v, f in zip(vs, grouped):
            assert torch.allclose(f, backbone(v), atol=1e-5)


def test_dino_teacher_no_grad_and_ema_update() -> None:
    method = make("dino", 3, momentum=0.9)
    grad_enabled: list[bool] = []
    method.teacher_backbone.register_forward_hook(lambda m, i, o: grad_enabled.append(torch.is_grad_enabled()))
    method.on_optimizer_step(50, 100)
    out = method.training_step(views(3))
    assert grad_enabled == [False]
    out.loss.backward()
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    opt.step()
    before = {k: v.clone() for k, v in method.teacher_head.state_dict().items()}
    student = method.head.state_dict()
    assert not torch.equal(before["last_v"], student["last_v"])  # the student moved away from the teacher
    method.on_optimizer_step(60, 100)
    m = 1 - (1 - 0.9) * (math.cos(math.pi * 60 / 100) + 1) / 2  # BYOL/DINO cosine schedule written out
    after = method.teacher_head.state_dict()
    for k in ("last_v", "mlp.0.weight", "mlp.3.bias"):  # mlp.3: the bottleneck layer of the 2-layer head
        assert torch.allclose(after[k], m * before[k] + (1 - m) * student[k], atol=1e-6), k
    t_conv, s_conv = method.teacher_backbone[0].weight, method.backbone[0].weight
    assert not torch.equal(t_conv, s_conv) and t_conv.grad is None


@pytest.mark.parametrize("layers", [2, 3])
def test_dino_head_layers(layers: int) -> None:
    method = make("dino", 3, head_layers=layers)
    linears = [m for m in method.head.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 64)] + [(64, 64)] * (layers - 2) + [(64, 16)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in method.head.mlp) == layers - 1
    method.training_step(views(3)).loss.backward()
    assert all(m.weight.grad is not None for m in linears)
    with pytest.raises(GeosslError, match="head_layers must be >= 2"):
        make("dino", 3, head_layers=1)


def test_dino_teacher_temperature_default_is_constant() -> None:
    method = make("dino", 3)  # the authors' code default: 0.04 throughout
    for step in (0, 15, 99):
        method.on_optimizer_step(step, 100)
        assert method.current_teacher_temp() == pytest.approx(0.04)


def test_dino_teacher_temperature_warmup_and_center() -> None:
    method = make("dino", 3, teacher_temp=0.07)  # the paper's warm-up 0.04 -> 0.07
    assert method.current_teacher_temp() == pytest.approx(0.04)  # before the first step
    method.on_optimizer_step(0, 100)
    assert method.current_teacher_temp() == pytest.approx(0.04)
    method.on_optimizer_step(15, 100)  # 30 warm-up steps: linspace(0.04, 0.07, 30)[15]
    assert method.current_teacher_temp() == pytest.approx(0.04 + 0.03 * 15 / 29)
    method.on_optimizer_step(30, 100)
    assert method.current_teacher_temp() == pytest.approx(0.07)
    out = method.training_step(views(3))
    assert out.logs["teacher_temp"] == pytest.approx(0.07)
    assert 0 < out.logs["teacher_entropy"] <= math.log(64) + 1e-6
    assert method.criterion.center.abs().sum() > 0  # updated by the step


def test_dino_last_layer_frozen_first_steps() -> None:
    method = make("dino", 3)
    out = method.training_step(views(3))  # step 0: frozen
    out.loss.backward()
    assert out.logs["last_layer_frozen"] == 1.0
    assert method.head.last_v.grad is not None and method.head.last_v.grad.abs().max() == 0
    assert method.head.mlp[0].weight.grad.abs().sum() > 0
    assert not method.head.last_g.requires_grad  # norm_last_layer: gains fixed at 1


def test_swav_prototypes_frozen_then_trained_and_normalised() -> None:
    method = make("swav", 3)
    out = method.training_step(views(3))
    out.loss.backward()
    assert out.logs["prototypes_frozen"] == 1.0
    assert method.prototypes.weight.grad.abs().max() == 0
    assert method.projector[0].weight.grad.abs().sum() > 0
    method.zero_grad()
    with torch.no_grad():
        method.prototypes.weight.mul_(3.0)
    method.on_optimizer_step(1, 10)  # past 1 % of 10 steps; prototypes re-normalised
    assert torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(16), atol=1e-6)
    out = method.training_step(views(3))
    out.loss.backward()
    assert out.logs["prototypes_frozen"] == 0.0
    assert method.prototypes.weight.grad.abs().sum() > 0


def test_swav_loss_is_the_swav_loss_of_the_scores() -> None:
    """The method feeds SwAVLoss the cosine scores of normalised projections against normalised prototypes."""
    method = make("swav", 3).eval()
    method.on_optimizer_step(5, 10)
    vs = views(3)
    with torch.no_grad():
        loss = method.training_step(vs).loss
        scores = [F.normalize(method.projector(method.backbone(v)), dim=1) @ F.normalize(method.prototypes.weight, dim=1).T for v in vs]
        ref = method.criterion(scores[:2], scores[2:])
    assert loss.item() == pytest.approx(ref.item(), abs=1e-5)


def test_swav_queue_fills_then_joins() -> None:
    method = make("swav", 3, queue_length=2 * B, queue_start=0.0)
    method.on_optimizer_step(5, 10)
    logs = [method.training_step(views(3, seed=s)).logs["queue_used"] for s in range(3)]
    assert logs == [0.0, 0.0, 1.0]  # empty, half full, then used
    assert int(method.queue.count) == 3 * B


@pytest.mark.parametrize("cls", [SwAV, DINO])
def test_default_views(cls) -> None:
    vs = cls.default_views(64, overhead=True, n_local=6)
    assert len(vs) == 8 and all(isinstance(v, ViewConfig) for v in vs)
    assert [v.size for v in vs] == [64, 64] + [24] * 6
    assert all(v.vflip == 0.5 for v in vs)
    g_scale, l_scale = ((0.14, 1.0), (0.05, 0.14)) if cls is SwAV else ((0.4, 1.0), (0.05, 0.4))
    assert vs[0].crop_scale == g_scale and vs[-1].crop_scale == l_scale
    # Default number of local crops: none below 96 px (two crops did better at 64 px), 6 from 96 px.
    assert [v.size for v in cls.default_views(64, overhead=True)] == [64, 64]
    assert [v.size for v in cls.default_views(95, overhead=True)] == [95, 95]
    assert [v.size for v in cls.default_views(96, overhead=True)] == [96, 96] + [40] * 6
    assert [v.size for v in cls.default_views(224, overhead=False)] == [224, 224] + [96] * 6
    assert all(v.vflip == 0.0 for v in cls.default_views(224, overhead=False))
    assert {"optimizer", "lr", "weight_decay"} <= set(cls.optim_defaults)


def test_local_crop_size() -> None:
    assert [local_crop_size(s) for s in (224, 64, 120, 32, 8)] == [96, 24, 48, 16, 8]
