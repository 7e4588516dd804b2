"""ot-sample, ot-feature, ot-coot and dense-ot: a training step on RGB and 12-band 64 px images."""

from __future__ import annotations


import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from geossl.errors import GeosslError
from geossl.methods.dense_ot import DenseOT, resnet_feature_map
from geossl.methods.ot_ssl import OTCOOT, OTFeature, OTSample
from geossl.nn.backbones import build_backbone
from geossl.train.optim import OPTIMIZERS

# Small heads keep the CPU tests fast; the defaults themselves are checked against the constructors below.
SMALL = {
    "ot-sample": (OTSample, {"hidden_dim": 64, "projection_dim": 32}),
    "ot-feature": (OTFeature, {"hidden_dim": 64, "projection_dim": 32}),
    "ot-coot": (OTCOOT, {"hidden_dim": 64, "projection_dim": 32}),
    "dense-ot": (DenseOT, {"hidden_dim": 64, "projection_dim": 32}),
}


def _tiny_resnet() -> nn.Module:
    """A one-block-per-stage torchvision ResNet (the stages DenseOT needs, half a ResNet-18's work)."""
    net = ResNet(BasicBlock, [1, 1, 1, 1])
    net.fc = nn.Identity()
    net.feature_dim = 512
    return net


def _views(in_chans: int, n: int = 3, size: int = 64, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, in_chans, size, size, generator=g) for _ in range(2)]


@pytest.mark.parametrize("in_chans", [3, 12])
@pytest.mark.parametrize("name", list(SMALL))
def test_training_step_finite_loss_and_gradient_reaches_the_backbone(name, in_chans):
    cls, kw = SMALL[name]
    torch.manual_seed(0)
    method = cls(build_backbone("resnet18", in_chans=in_chans), **kw)
    method.train()
    out = method.training_step(_views(in_chans))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.features.shape == (3, 512) and not out.features.requires_grad
    assert out.embeddings.shape == (3, 32) and not out.embeddings.requires_grad
    assert len(out.branches) == 2 and all(b.shape == (3, 32) and b.requires_grad for b in out.branches)
    assert out.logs and all(torch.isfinite(torch.tensor(v)) for v in out.logs.values())
    out.loss.backward()
    grad = method.backbone.conv1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(SMALL))
def test_registered_name_and_optimiser_known(name):
    cls, _ = SMALL[name]
    assert cls.name == name
    assert cls.optim_defaults["optimizer"] in OPTIMIZERS


def test_ot_methods_log_the_marginal_error():
    torch.manual_seed(0)
    method = OTSample(_tiny_resnet(), hidden_dim=64, projection_dim=32)
    out = method.training_step(_views(3, size=32))
    err = method.criterion.last_marginal_error
    assert out.logs["marginal_error"] == pytest.approx(float(err)) and float(err) >= 0
    coot = OTCOOT(_tiny_resnet(), hidden_dim=64, projection_dim=32)
    assert set(coot.training_step(_views(3, size=32)).logs) == {"marginal_error", "marginal_error_features"}


def test_resnet_feature_map_pools_to_the_backbone_features():
    backbone = build_backbone("resnet18", in_chans=5).eval()
    x = torch.randn(2, 5, 64, 64)
    with torch.no_grad():
        fmap = resnet_feature_map(backbone, x)
        pooled = backbone(x)  # torchvision's own avgpool + flatten (fc = Identity)
    assert fmap.shape == (2, 512, 2, 2)
    assert torch.allclose(fmap.mean((2, 3)), pooled, atol=1e-5)


def test_dense_ot_refuses_a_backbone_without_resnet_stages():
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    backbone.feature_dim = 8
    method = DenseOT(backbone, hidden_dim=16, projection_dim=8)
    with pytest.raises(GeosslError, match="ResNet"):
        method.training_step(_views(3, size=16))


def test_dense_ot_matching_on_backbone_maps_and_two_views_required():
    torch.manual_seed(0)
    method = DenseOT(_tiny_resnet(), hidden_dim=64, projection_dim=32, matcher="exact", match_on="backbone")
    out = method.training_step(_views(3, size=32))
    assert out.logs["target_mass"] == pytest.approx(1.0)
    with pytest.raises(GeosslError, match="2 views"):
        method.training_step(_views(3, size=32)[:1])
    with pytest.raises(GeosslError):
        DenseOT(_tiny_resnet(), match_on="layer3")
