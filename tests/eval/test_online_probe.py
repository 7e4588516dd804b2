"""Online linear probe (evaluation.md §4): no gradient to the backbone, unlabeled samples ignored."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geossl.errors import GeosslError
from geossl.eval import OnlineLinearProbe, knn_accuracy_on_split


def _backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8))


def test_probe_loss_sends_no_gradient_to_backbone():
    backbone, probe = _backbone(), OnlineLinearProbe(8, 3)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    loss, acc = probe(backbone(x), y)
    loss.backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in probe.parameters())
    assert 0.0 <= acc.item() <= 100.0 and not acc.requires_grad


def test_joint_step_backbone_gradient_is_the_ssl_gradient_alone():
    backbone, probe = _backbone(), OnlineLinearProbe(8, 3)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    feats = backbone(x)
    ssl_loss = feats.pow(2).mean()
    (ssl_grad,) = torch.autograd.grad(ssl_loss, backbone[0].weight, retain_graph=True)
    probe_loss, _ = probe(feats, y)
    (joint_grad,) = torch.autograd.grad(ssl_loss + probe_loss, backbone[0].weight)
    assert torch.equal(ssl_grad, joint_grad)


def test_unlabeled_samples_are_ignored():
    probe = OnlineLinearProbe(8, 3)
    feats, y = torch.randn(10, 8), torch.tensor([0, 1, 2, -1, -1, 0, -1, 2, 1, -1])
    loss, acc = probe(feats, y)
    labelled = y >= 0
    with torch.no_grad():
        logits = probe.linear(feats[labelled])
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y[labelled]).item())
    assert acc.item() == pytest.approx(100.0 * (logits.argmax(1) == y[labelled]).float().mean().item())
    other = feats.clone()
    other[~labelled] = 100.0 * torch.randn(int((~labelled).sum()), 8)  # changing unlabeled rows changes nothing
    assert probe(other, y)[0].item() == pytest.approx(loss.item())


def test_batch_without_labels_gives_zero_loss_and_nan_accuracy():
    probe = OnlineLinearProbe(8, 3)
    loss, acc = probe(torch.randn(4, 8), torch.full((4,), -1))
    assert loss.item() == 0.0 and math.isnan(acc.item())
    loss.backward()  # still connected to the probe's parameters
    assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in probe.parameters())


def test_param_group_and_training():
    probe = OnlineLinearProbe(8, 3, lr=0.5)
    group = probe.param_group()
    assert group["lr"] == 0.5 and group["weight_decay"] == 0.0
    assert "lr" not in OnlineLinearProbe(8, 3).param_group()
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=g) * 3
    y = torch.arange(96) % 3
    feats = centers[y] + torch.randn(96, 8, generator=g)
    opt = torch.optim.SGD([group], lr=0.01)
    for _ in range(100):
        loss, acc = probe(feats, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert acc.item() > 90.0


def test_user_errors():
    probe = OnlineLinearProbe(8, 3)
    with pytest.raises(GeosslError, match="out of range"):
        probe(torch.randn(2, 8), torch.tensor([0, 3]))
    with pytest.raises(GeosslError):
        probe(torch.randn(2, 8), torch.tensor([0, 1, 2]))


def test_knn_accuracy_on_split():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 1, 4, 4, generator=g) * 5
    y_tr, y_te = torch.arange(60) % 3, torch.arange(30) % 3
    y_tr[:5] = -1  # unlabeled bank entries are dropped
    train = list(zip(centers[y_tr.clamp(min=0)] + 0.1 * torch.randn(60, 1, 4, 4, generator=g), y_tr.tolist()))
    test = list(zip(centers[y_te] + 0.1 * torch.randn(30, 1, 4, 4, generator=g), y_te.tolist()))
    out = knn_accuracy_on_split(nn.Flatten(), train, test, k=5, batch_size=16)
    assert out["top1"] == 100.0 and out["n_train"] == 55 and out["n_test"] == 30
