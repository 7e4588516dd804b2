import pytest
import torch

from geossl.train.optim import LARS, build_optimizer, parameter_groups, warmup_cosine
from geossl.errors import GeosslError


def test_warmup_cosine_shape():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0, abs=1e-12)


def test_lars_step_is_trust_ratio_scaled_sgd():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    b = torch.nn.Parameter(torch.randn(4))
    w.grad, b.grad = torch.randn(4, 3), torch.randn(4)
    w0, b0, gw, gb = w.detach().clone(), b.detach().clone(), w.grad.clone(), b.grad.clone()
    opt = LARS([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0, "lars_exclude": True}], lr=0.5, trust_coefficient=0.01)
    opt.step()
    g = gw + 0.1 * w0
    ratio = 0.01 * w0.norm() / (g.norm() + 1e-8)
    assert torch.allclose(w, w0 - 0.5 * ratio * g, atol=1e-6)
    assert torch.allclose(b, b0 - 0.5 * gb, atol=1e-6)


@pytest.mark.parametrize("grad_scale", [1e-4, 10.0])
def test_lars_clip_mode_uses_the_smaller_of_lr_and_the_trust_ratio(grad_scale: float):
    """LARC clipping (solo-learn's clip_lr): the layer's lr is min(lr, η‖w‖/‖g‖); scaling mode: lr·η‖w‖/‖g‖."""
    w0 = torch.randn(4, 3, dtype=torch.float64)
    g = grad_scale * torch.randn(4, 3, dtype=torch.float64)
    steps = {}
    for clip in (True, False):
        w = torch.nn.Parameter(w0.clone())
        w.grad = g.clone()
        LARS([w], lr=0.5, trust_coefficient=0.02, clip_lr=clip).step()
        steps[clip] = w0 - w.detach()
    ratio = 0.02 * w0.norm() / (g.norm() + 1e-8)
    assert torch.allclose(steps[True], min(0.5, ratio.item()) * g, rtol=1e-10, atol=0)
    assert torch.allclose(steps[False], 0.5 * ratio * g, rtol=1e-10, atol=0)


def test_parameter_groups_exclude_biases_and_norms():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    decay, no_decay = parameter_groups(net, 1e-4)
    assert len(decay["params"]) == 1 and len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0


def test_unknown_optimizer():
    with pytest.raises(GeosslError, match="Did you mean 'adamw'"):
        build_optimizer("adam-w", [{"params": [torch.nn.Parameter(torch.zeros(1))]}], lr=0.1)


def test_constant_lr_groups_follow_warmup_then_stay() -> None:
    """SimSiam's predictor keeps its lr after the warm-up; the rest follows the cosine decay (paper §4.2)."""
    from geossl.methods.registry import METHODS
    from geossl.train.optim import lr_multipliers

    net = torch.nn.ModuleDict({"backbone": torch.nn.Linear(3, 4), "predictor": torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))})
    groups = parameter_groups(net, 1e-4, constant_lr=("predictor",))
    flagged = [g for g in groups if g.get("constant_lr")]
    assert sum(len(g["params"]) for g in flagged) == 4  # predictor weight, bias, BN weight, BN bias
    assert {id(p) for g in flagged for p in g["params"]} == {id(p) for p in net["predictor"].parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    opt = build_optimizer("sgd", groups, lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multipliers(groups, total_steps=20, warmup_steps=4))
    lrs = []
    for _ in range(20):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for i, g in enumerate(groups):
        series = [row[i] for row in lrs]
        assert series[0] == pytest.approx(0.25)  # warm-up for every group
        if g.get("constant_lr"):
            assert series[3:] == pytest.approx([1.0] * 17)
        else:
            assert series[3] == pytest.approx(1.0) and series[-1] < 0.05
    assert METHODS["simsiam"].constant_lr_modules == ("predictor",)


@pytest.mark.parametrize("name", ["sgd", "lars", "adamw"])
def test_lr_scale_groups_multiply_the_base_lr_through_the_schedule(name: str) -> None:
    """A faster predictor (BYOL's ``predictor_lr_scale``): its groups start at lr × scale and keep the ratio under
    the warm-up/cosine multipliers; every parameter is in exactly one group."""
    from geossl.train.optim import lr_multipliers

    net = torch.nn.ModuleDict({"backbone": torch.nn.Linear(3, 4), "predictor": torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))})
    groups = parameter_groups(net, 1e-4, lr_scales={"predictor": 10.0})
    scaled = [g for g in groups if "lr_scale" in g]
    assert {id(p) for g in scaled for p in g["params"]} == {id(p) for p in net["predictor"].parameters()}
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in net.parameters())
    assert [g["weight_decay"] for g in scaled] == [1e-4, 0.0]  # the predictor's weights decay, its biases/norms do not
    opt = build_optimizer(name, groups, lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multipliers(groups, total_steps=10, warmup_steps=2))
    for _ in range(6):
        lrs = [g["lr"] for g in opt.param_groups]
        base = lrs[0]
        assert base > 0
        for g, lr in zip(groups, lrs):
            assert lr == pytest.approx(base * g.get("lr_scale", 1.0))
        opt.step()
        sched.step()
    assert all("lr_scale" not in g for g in opt.param_groups)


def test_lr_scale_must_be_positive_and_name_a_trainable_module() -> None:
    net = torch.nn.ModuleDict({"predictor": torch.nn.Linear(3, 4)})
    with pytest.raises(GeosslError, match="learning-rate scale of 'predictor' must be > 0"):
        parameter_groups(net, 0.0, lr_scales={"predictor": 0.0})
    with pytest.raises(GeosslError, match="names 'projector', which holds no trainable parameter"):
        parameter_groups(net, 0.0, lr_scales={"projector": 2.0})
