"""Multi-crop for the two-view methods: the loss over global/local pairs, written out plainly, and the config path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geossl.augment.views import paper_blur_sigma
from geossl.errors import GeosslError
from geossl.methods._multicrop import local_crop_size, prediction_pairs, view_pairs
from geossl.methods.barlow_twins import BarlowTwins
from geossl.methods.byol import BYOL
from geossl.methods.mmcr import MMCR
from geossl.methods.moco import MoCoV2
from geossl.methods.registry import METHODS
from geossl.methods.simclr import SimCLR
from geossl.methods.simsiam import SimSiam
from geossl.methods.vicreg import VICReg
from geossl.train.config import PretrainConfig
from geossl.train.run import default_views, pretrain, validate_config

from ..conftest import make_rgb_folder

B = 6


class TinyBackbone(nn.Sequential):
    """Any resolution in, (B, 16) out."""

    feature_dim = 16

    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def views(n_local: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, 3, 32, 32, generator=g) for _ in range(2)] + [
        torch.randn(B, 3, 16, 16, generator=g) for _ in range(n_local)
    ]


def test_pairs():
    assert view_pairs(2) == [(0, 1)]
    assert view_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
    assert prediction_pairs(2) == [(1, 0), (0, 1)]
    assert sorted(prediction_pairs(4)) == [(0, 1), (1, 0), (2, 0), (2, 1), (3, 0), (3, 1)]


SYMMETRIC = {
    "simclr": (SimCLR, {"hidden_dim": 32, "projection_dim": 16}),
    "barlow-twins": (BarlowTwins, {"hidden_dim": 32, "projection_dim": 16}),
    "vicreg": (VICReg, {"hidden_dim": 32, "projection_dim": 16}),
}


# Eval mode: BatchNorm uses its running statistics, so embedding each view on its own (the oracle) gives the same
# numbers as the method's grouped forward passes.
@pytest.mark.parametrize("n_local", [0, 2])
@pytest.mark.parametrize("name", list(SYMMETRIC))
def test_symmetric_methods_average_the_pair_loss(name, n_local):
    cls, kw = SYMMETRIC[name]
    torch.manual_seed(0)
    method = cls(TinyBackbone(), **kw).eval()
    vs = views(n_local)
    z = [method.projector(method.backbone(v)) for v in vs]
    pairs = [(0, 1)] + [(g, j) for g in (0, 1) for j in range(2, 2 + n_local)]
    expected = sum(method.criterion(z[i], z[j]) for i, j in pairs) / len(pairs)
    torch.testing.assert_close(method.training_step(vs).loss, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_local", [0, 2])
def test_byol_local_crops_predict_the_global_targets(n_local):
    torch.manual_seed(0)
    method = BYOL(TinyBackbone(), hidden_dim=32, projection_dim=16).eval()
    with torch.no_grad():  # a teacher that differs from the student, so that targets come from the teacher
        for p in method.teacher_backbone.parameters():
            p.mul_(0.5)
    vs = views(n_local)
    q = [method.predictor(method.projector(method.backbone(v))) for v in vs]
    t = [method.teacher_projector(method.teacher_backbone(v)) for v in vs[:2]]
    terms = [method.criterion(q[j], t[g]) for g in (0, 1) for j in range(len(vs)) if j != g]
    # Two views: the paper's L + L~; more: the same total weight 2 spread over the 2(V-1) directions.
    expected = sum(terms) * 2 / len(terms)
    torch.testing.assert_close(method.training_step(vs).loss, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_local", [0, 2])
def test_simsiam_local_crops_predict_the_global_views(n_local):
    torch.manual_seed(0)
    method = SimSiam(TinyBackbone(), projection_dim=32, prediction_dim=8).eval()
    vs = views(n_local)
    z = [method.projector(method.backbone(v)) for v in vs]
    p = [method.predictor(zi) for zi in z]
    terms = [method.criterion(p[j], z[g].detach()) for g in (0, 1) for j in range(len(vs)) if j != g]
    torch.testing.assert_close(method.training_step(vs).loss, sum(terms) / len(terms), rtol=1e-5, atol=1e-5)


def test_mmcr_takes_local_crops_of_another_size():
    torch.manual_seed(0)
    method = MMCR(TinyBackbone(), hidden_dim=32, projection_dim=16).eval()
    vs = views(2)
    z = torch.stack([method.projector(method.backbone(v)) for v in vs], dim=1)
    torch.testing.assert_close(method.training_step(vs).loss, method.criterion(z), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["simclr", "byol", "simsiam", "barlow-twins", "vicreg", "mmcr"])
def test_local_crops_get_gradients_in_training_mode(name):
    torch.manual_seed(0)
    cls = METHODS[name]
    kw = {"projection_dim": 32, "prediction_dim": 8} if name == "simsiam" else {"hidden_dim": 32, "projection_dim": 16}
    method = cls(TinyBackbone(), **kw).train()
    vs = [v.requires_grad_() for v in views(2)]
    out = method.training_step(vs)
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(v.grad is not None and v.grad.abs().sum() > 0 for v in vs)
    assert out.features.shape == (B, 16) and len(out.branches) == (4 if name == "mmcr" else 2)


def test_moco_refuses_local_crops_in_one_line():
    method = MoCoV2(TinyBackbone(), hidden_dim=32, projection_dim=16, queue_size=12)
    with pytest.raises(GeosslError, match="exactly 2 views"):
        method.training_step(views(2))


def test_default_views_add_local_crops():
    two = default_views(SimCLR, 64, True, None)
    four = default_views(SimCLR, 64, True, 2)
    assert len(two) == 2 and len(four) == 4 and four[:2] == two
    assert four[2].size == local_crop_size(64) == 24 and four[2].crop_scale == (0.05, 0.14)
    assert len(default_views(METHODS["swav"], 64, True, 2)) == 4  # multi-crop methods size their own local crops
    assert len(default_views(METHODS["swav"], 64, True, None)) == 2  # and their default: none below 96 px
    assert len(default_views(METHODS["dino"], 128, True, None)) == 8  # 6 from 96 px


def test_config_errors_are_one_line(tmp_path):
    with pytest.raises(GeosslError, match="takes exactly 2 views, no local crops"):
        validate_config(PretrainConfig(method="moco-v2", local_crops=2))
    with pytest.raises(GeosslError, match="non-negative integer"):
        validate_config(PretrainConfig(method="simclr", local_crops=-1))
    two = [v.to_dict() for v in default_views(SimCLR, 32, True, None)]
    with pytest.raises(GeosslError, match="either 'views' or 'local_crops'"):
        validate_config(PretrainConfig(method="simclr", local_crops=2, views=two))
    validate_config(PretrainConfig(method="moco-v2", local_crops=0))


def test_pretrain_with_local_crops(tmp_path):
    data = make_rgb_folder(tmp_path / "data", size=32)
    config = PretrainConfig(method="vicreg", method_args={"hidden_dim": 64, "projection_dim": 64}, train_data=str(data),
                            epochs=1, batch_size=8, local_crops=2, run_dir=str(tmp_path / "run"), accelerator="cpu",
                            progress=False, online_eval=False)
    pretrain(config)
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "local_crops: 2" in saved and saved.count("size: 16") == 2  # 2 local crops at 96/224 of 32 px, >= 16


def test_dino_widens_its_global_crops_without_local_crops():
    """The authors' advice for DINO without multi-crop: global crops of scale 0.14-1 instead of 0.4-1."""
    dino = METHODS["dino"]
    assert [v.crop_scale for v in dino.default_views(64, True, n_local=6)[:2]] == [(0.4, 1.0)] * 2
    assert [v.crop_scale for v in dino.default_views(64, True, n_local=0)] == [(0.14, 1.0)] * 2


@pytest.mark.parametrize("name", ["byol", "swav", "dino", "bam"])
def test_blur_sigma_is_the_papers_scaled_to_the_image(name):
    """The papers' blur σ of 0.1-2.0 px is for 224-px views: kept at 224 px, scaled by 64/224 at 64 px, on the local
    crops too (the papers blur their 96-px local crops with the global crops' σ)."""
    method = METHODS[name]
    kwargs = {} if name == "byol" else {"n_local": 2}
    at_224 = [v.blur_sigma for v in method.default_views(224, True, **kwargs) if v.blur > 0]
    at_64 = [v.blur_sigma for v in method.default_views(64, True, **kwargs) if v.blur > 0]
    assert len(at_64) == len(at_224) >= 2
    assert all(s == (0.1, 2.0) for s in at_224)
    assert all(s == (0.1, pytest.approx(2.0 * 64 / 224)) for s in at_64)
    assert paper_blur_sigma(8) == (0.1, 0.1)  # floored at the papers' lower end
