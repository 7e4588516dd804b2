"""MoCo v2/v3, BYOL, SimSiam, Barlow Twins, VICReg and MMCR: smoke steps, teachers, and the wiring of the views."""

import math

import pytest
import torch
import torch.nn.functional as F
from lightly.loss import BarlowTwinsLoss as LightlyBarlowTwins
from lightly.loss import NegativeCosineSimilarity as LightlyNegCos
from lightly.loss import NTXentLoss as LightlyNTXent
from lightly.loss import VICRegLoss as LightlyVICReg

from geossl.errors import GeosslError
from geossl.losses.mmcr import mmcr_loss
from geossl.methods.barlow_twins import BarlowTwins
from geossl.methods.byol import BYOL
from geossl.methods.mmcr import MMCR
from geossl.methods.moco import MoCoV2, MoCoV3
from geossl.methods.simsiam import SimSiam
from geossl.methods.vicreg import VICReg
from geossl.nn.backbones import build_backbone
from geossl.train.optim import OPTIMIZERS

# Small heads keep the CPU tests fast; the defaults themselves are checked against the constructors.
SMALL = {
    "moco-v2": (MoCoV2, {"hidden_dim": 64, "projection_dim": 32, "queue_size": 48}),
    "moco-v3": (MoCoV3, {"hidden_dim": 64, "projection_dim": 32}),
    "byol": (BYOL, {"hidden_dim": 64, "projection_dim": 32}),
    "simsiam": (SimSiam, {"projection_dim": 64, "prediction_dim": 16}),
    "barlow-twins": (BarlowTwins, {"hidden_dim": 64, "projection_dim": 48}),
    "vicreg": (VICReg, {"hidden_dim": 64, "projection_dim": 48}),
    "mmcr": (MMCR, {"hidden_dim": 64, "projection_dim": 32}),
}
TEACHER_MOMENTUM = {"moco-v2": ("constant", 0.999), "moco-v3": ("cosine", 0.99), "byol": ("cosine", 0.99)}


def _build(name: str, in_chans: int = 3, seed: int = 0, **overrides):
    cls, kw = SMALL[name]
    torch.manual_seed(seed)
    return cls(build_backbone("resnet18", in_chans=in_chans), **{**kw, **overrides})


def _views(in_chans: int, n: int = 8, k: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, in_chans, 32, 32, generator=g) for _ in range(k)]


def _teacher_params(method) -> dict[str, torch.Tensor]:
    return {n: p for n, p in method.named_parameters() if n.startswith("teacher_")}


@pytest.mark.parametrize("in_chans", [3, 12])
@pytest.mark.parametrize("name", list(SMALL))
def test_training_step_backward_and_hook(name, in_chans):
    method = _build(name, in_chans)
    method.train()
    teacher = _teacher_params(method)
    assert bool(teacher) == (name in TEACHER_MOMENTUM)
    assert not any(p.requires_grad for p in teacher.values())
    before = {n: p.detach().clone() for n, p in teacher.items()}

    out = method.training_step(_views(in_chans))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.features.shape == (8, 512) and not out.features.requires_grad
    assert out.embeddings.shape[0] == 8 and not out.embeddings.requires_grad
    out.loss.backward()
    grad = method.backbone.conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.values())

    torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5).step()
    step, total = 3, 10
    method.on_optimizer_step(step, total)
    if not teacher:
        return
    for n, p in teacher.items():
        if p.dim() > 1:  # weights: the student's moved, so the EMA teacher moves too
            assert not torch.equal(p, before[n]), n
    kind, m0 = TEACHER_MOMENTUM[name]
    # BYOL's cosine schedule written out: m_k = 1 − (1 − m₀)(cos(πk/K) + 1)/2.
    m = m0 if kind == "constant" else 1 - (1 - m0) * (math.cos(math.pi * step / total) + 1) / 2
    expected = m * before["teacher_backbone.conv1.weight"] + (1 - m) * method.backbone.conv1.weight.detach()
    assert torch.allclose(method.teacher_backbone.conv1.weight, expected, atol=1e-7)


@pytest.mark.parametrize("name", list(TEACHER_MOMENTUM))
def test_teacher_follows_memory_format_and_dtype(name):
    method = _build(name).to(memory_format=torch.channels_last)
    assert method.teacher_backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    method = method.double()
    assert method.teacher_backbone.conv1.weight.dtype == torch.float64
    views = [v.double().contiguous(memory_format=torch.channels_last) for v in _views(3)]
    assert torch.isfinite(method.training_step(views).loss)


@pytest.mark.parametrize("name", list(SMALL))
def test_registered_name_and_optimiser_defaults(name):
    cls = SMALL[name][0]
    assert cls.name == name
    assert cls.optim_defaults["optimizer"] in OPTIMIZERS
    assert cls.optim_defaults["lr"] > 0 and cls.optim_defaults["weight_decay"] >= 0


def test_paper_head_sizes():
    torch.manual_seed(0)
    byol = BYOL(build_backbone("resnet18"))
    assert [m.out_features for m in byol.projector if isinstance(m, torch.nn.Linear)] == [4096, 256]
    assert [m.out_features for m in byol.predictor if isinstance(m, torch.nn.Linear)] == [4096, 256]
    moco = MoCoV2(build_backbone("resnet18"))
    assert [m.out_features for m in moco.projector if isinstance(m, torch.nn.Linear)] == [2048, 128]
    assert moco.criterion.queue.keys.shape == (3072, 128)


# -- the views are wired as in the papers: eval mode (per-sample BatchNorm) against per-view references ----------


def _eval(name: str, **overrides):
    method = _build(name, **overrides)
    method.eval()
    return method


def test_byol_loss_pairs_online_predictions_with_the_other_views_targets():
    method = _eval("byol")
    x_a, x_b = _views(3)
    with torch.no_grad():
        loss = method.training_step([x_a, x_b]).loss
        q = [method.predictor(method.projector(method.backbone(x))) for x in (x_a, x_b)]
        t = [method.teacher_projector(method.teacher_backbone(x)) for x in (x_a, x_b)]
    expected = (2 + 2 * LightlyNegCos()(q[0], t[1])) + (2 + 2 * LightlyNegCos()(q[1], t[0]))
    assert torch.allclose(loss, expected, atol=1e-5)


def test_byol_bn_splits_normalise_each_group_of_images_on_its_own():
    """Train mode (batch statistics): with ``bn_splits=2`` the step equals two independent half-batch steps, each
    half with both its views, and differs from the one-pass step because BatchNorm sees other statistics."""
    x_a, x_b = _views(3, n=8)
    split = _build("byol", bn_splits=2).train()
    whole = _build("byol").train()
    halves = [whole.training_step([x_a[s], x_b[s]]) for s in (slice(0, 4), slice(4, 8))]
    out = split.training_step([x_a, x_b])
    assert torch.allclose(out.loss, (halves[0].loss + halves[1].loss) / 2, atol=1e-5)
    assert torch.allclose(out.features, torch.cat([h.features for h in halves]), atol=1e-5)
    assert [b.shape for b in out.branches] == [(8, 32), (8, 32)]
    assert not torch.allclose(out.loss, whole.training_step([x_a, x_b]).loss, atol=1e-3)
    out.loss.backward()
    assert all(p.grad is not None for p in split.backbone.parameters() if p.requires_grad)
    # Three images cannot make two BatchNorm groups of >= 2: one pass, as with bn_splits=1.
    small = [x[:3] for x in (x_a, x_b)]
    assert torch.allclose(split.training_step(small).loss, _build("byol").train().training_step(small).loss, atol=1e-5)


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_byol_refuses_bad_bn_splits(bad):
    with pytest.raises(GeosslError, match="bn_splits"):
        _build("byol", bn_splits=bad)


def test_byol_predictor_lr_scale():
    """10x by default (the zoo's EuroSAT runs); 1 is the paper's single lr, with no scaled group."""
    assert _build("byol").lr_scales() == {"predictor": 10.0}
    assert _build("byol", predictor_lr_scale=1).lr_scales() == {}
    assert _build("byol", predictor_lr_scale=3).lr_scales() == {"predictor": 3.0}
    with pytest.raises(GeosslError, match="predictor_lr_scale"):
        _build("byol", predictor_lr_scale=0)


def test_simsiam_loss_and_stop_gradient():
    method = _eval("simsiam")
    x_a, x_b = _views(3)
    with torch.no_grad():
        loss = method.training_step([x_a, x_b]).loss
        z = [method.projector(method.backbone(x)) for x in (x_a, x_b)]
        p = [method.predictor(zi) for zi in z]
    expected = 0.5 * LightlyNegCos()(p[0], z[1]) + 0.5 * LightlyNegCos()(p[1], z[0])
    assert torch.allclose(loss, expected, atol=1e-5)
    # The ablation without stop-gradient changes the gradient reaching the backbone.
    grads = []
    for stop in (True, False):
        m = _build("simsiam", stop_gradient=stop)
        m.training_step(_views(3)).loss.backward()
        grads.append(m.backbone.conv1.weight.grad)
    assert not torch.allclose(grads[0], grads[1])


def test_moco_v3_loss_pairs_queries_with_the_other_views_keys():
    method = _eval("moco-v3")
    x_a, x_b = _views(3)
    tau = method.criterion.temperature
    with torch.no_grad():
        loss = method.training_step([x_a, x_b]).loss
        q = [F.normalize(method.predictor(method.projector(method.backbone(x))), dim=1) for x in (x_a, x_b)]
        k = [F.normalize(method.teacher_projector(method.teacher_backbone(x)), dim=1) for x in (x_a, x_b)]
    labels = torch.arange(8)
    expected = 2 * tau * (F.cross_entropy(q[0] @ k[1].T / tau, labels) + F.cross_entropy(q[1] @ k[0].T / tau, labels))
    assert torch.allclose(loss, expected, atol=1e-5)


@pytest.mark.parametrize("name,reference", [("barlow-twins", LightlyBarlowTwins(lambda_param=5.1e-3)), ("vicreg", LightlyVICReg())])
def test_redundancy_methods_match_lightly_on_per_view_embeddings(name, reference):
    method = _eval(name)
    x_a, x_b = _views(3, n=16)
    with torch.no_grad():
        loss = method.training_step([x_a, x_b]).loss
        z = [method.projector(method.backbone(x)) for x in (x_a, x_b)]
    assert abs(loss.item() - reference(z[0], z[1]).item()) <= 1e-5 * max(1.0, abs(loss.item()))


def test_mmcr_arranges_any_number_of_views_per_image():
    method = _eval("mmcr")
    views = _views(3, n=6, k=3)
    with torch.no_grad():
        loss = method.training_step(views).loss
        z = torch.stack([method.projector(method.backbone(v)) for v in views], dim=1)  # (N, K, d)
    assert torch.allclose(loss, mmcr_loss(z), atol=1e-5)


def test_moco_v2_loss_enqueue_and_shuffle_bn():
    method = _eval("moco-v2", bn_splits=4)
    x_q, x_k = _views(3)
    ref = LightlyNTXent(temperature=0.2, memory_bank_size=(48, 32))
    ref.memory_bank.bank.copy_(method.criterion.queue.keys)
    initial = method.criterion.queue.keys.clone()
    with torch.no_grad():
        q = method.projector(method.backbone(x_q))
        k = method.teacher_projector(method.teacher_backbone(x_k))
    out = method.training_step([x_q, x_k])
    assert torch.allclose(out.loss, ref(q, k), atol=1e-5)
    # Shuffled, split key encoding returns the keys in the batch order (eval mode: no batch statistics).
    assert torch.allclose(method._keys, k, atol=1e-5)
    # The queue changes only in the hook, after the optimiser step: the newest rows are the normalised keys.
    assert torch.equal(method.criterion.queue.keys, initial)
    method.on_optimizer_step(1, 10)
    assert torch.allclose(method.criterion.queue.keys[:8], F.normalize(k, dim=1), atol=1e-6)
    assert torch.equal(method.criterion.queue.keys[8:], initial[8:])


def test_moco_v2_shuffle_bn_groups_have_their_own_statistics():
    # Train mode: 4 BatchNorm groups give different keys from one group (the statistics differ).
    x_q, x_k = _views(3)
    keys = []
    for splits in (1, 4):
        method = _build("moco-v2", bn_splits=splits)
        method.train()
        method.training_step([x_q, x_k])
        keys.append(method._keys)
    assert not torch.allclose(keys[0], keys[1], atol=1e-4)


def test_wrong_number_of_views_and_bad_arguments():
    with pytest.raises(GeosslError, match="exactly 2 views"):
        _build("moco-v3").training_step(_views(3, k=3))
    with pytest.raises(GeosslError, match="at least 2 views"):
        _build("byol").training_step(_views(3, k=1))
    with pytest.raises(GeosslError, match="at least 2 views"):
        _build("mmcr").training_step(_views(3, k=1))
    with pytest.raises(GeosslError, match="momentum"):
        _build("moco-v2", momentum=1.5)
    with pytest.raises(GeosslError, match="bn_splits"):
        _build("moco-v2", bn_splits=0)
    with pytest.raises(GeosslError, match="projector_layers must be >= 2"):
        _build("moco-v3", projector_layers=1)


def test_moco_v3_heads_follow_the_authors_resnet_recipe():
    """Projector D → 4096 → 256 with a last BatchNorm without affine, predictor 256 → 4096 → 256 without one
    (facebookresearch/moco-v3 ``MoCo_ResNet``); ``projector_layers=3`` gives the paper's ViT projector."""

    def shapes(head):
        return [(m.in_features, m.out_features) for m in head.modules() if isinstance(m, torch.nn.Linear)]

    method = MoCoV3(build_backbone("resnet18", in_chans=3))
    assert shapes(method.projector) == [(512, 4096), (4096, 256)]
    assert shapes(method.predictor) == [(256, 4096), (4096, 256)]
    assert isinstance(method.projector[-1], torch.nn.BatchNorm1d) and not method.projector[-1].affine
    assert isinstance(method.predictor[-1], torch.nn.Linear)
    assert shapes(method.teacher_projector) == shapes(method.projector)
    vit_recipe = MoCoV3(build_backbone("resnet18", in_chans=3), projector_layers=3)
    assert shapes(vit_recipe.projector) == [(512, 4096), (4096, 4096), (4096, 256)]


@pytest.mark.parametrize("layers", [2, 3])
def test_simsiam_projector_layers(layers):
    method = _build("simsiam", projector_layers=layers)
    linears = [m for m in method.projector.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 64)] + [(64, 64)] * (layers - 1)
    method.train()
    method.training_step(_views(3)).loss.backward()
    with pytest.raises(GeosslError, match="projector_layers must be >= 2"):
        _build("simsiam", projector_layers=1)
