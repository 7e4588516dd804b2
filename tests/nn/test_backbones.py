import pytest
import torch

from geossl.errors import GeosslError
from geossl.nn import ProjectionHead, build_backbone, cosine_momentum, ema_update, make_teacher, use_small_stem


@pytest.mark.parametrize("in_chans", [1, 3, 12])
def test_resnet18_any_band_count(in_chans):
    net = build_backbone("resnet18", in_chans=in_chans)
    out = net(torch.randn(2, in_chans, 64, 64))
    assert out.shape == (2, 512) and net.feature_dim == 512


def test_small_stem_keeps_resolution():
    std, small = build_backbone("resnet18"), build_backbone("resnet18", small_stem=True)
    x = torch.randn(1, 3, 32, 32)
    # Standard stem: /4 after conv1+maxpool; small stem: full resolution at layer1.
    assert std.maxpool(std.relu(std.bn1(std.conv1(x)))).shape[-1] == 8
    assert small.maxpool(small.relu(small.bn1(small.conv1(x)))).shape[-1] == 32
    assert small.conv1.kernel_size == (3, 3)


def test_small_stem_auto_only_for_small_images():
    assert use_small_stem("auto", 32) and not use_small_stem("auto", 64)
    assert use_small_stem(True, 224) and not use_small_stem("false", 16)


def test_unknown_backbone_suggests_closest():
    with pytest.raises(GeosslError, match="Did you mean 'resnet18'"):
        build_backbone("resnet-18")


def test_projection_head_shapes_and_bias_before_batchnorm():
    head = ProjectionHead((16, 32, 8))
    assert head(torch.randn(4, 16)).shape == (4, 8)
    assert head[0].bias is None and head[-1].bias is not None


def test_output_batchnorm_standardises_and_is_affine_only_on_request():
    plain = ProjectionHead((16, 32, 8), last_batch_norm=True)
    z = plain.train()(torch.randn(64, 16))
    assert torch.allclose(z.mean(0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(8), atol=1e-3)
    assert plain[-1].weight is None and plain[-2].bias is None
    assert ProjectionHead((16, 32, 8), last_batch_norm=True, last_affine=True)[-1].weight.shape == (8,)


def test_simclr_head_has_the_parameters_of_lightlys():
    """Same layers as lightly's SimCLR head (SimCLR v2: BatchNorm on the output too), so the two train alike."""
    lightly_heads = pytest.importorskip("lightly.models.modules.heads")
    from geossl.nn.heads import SimCLRProjectionHead

    ours, theirs = SimCLRProjectionHead(64, 128, 32), lightly_heads.SimCLRProjectionHead(64, 128, 32)
    assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs.parameters()]
    leaves = lambda head: [type(m) for m in head.modules() if not list(m.children())]  # noqa: E731
    assert leaves(ours) == leaves(theirs)


def test_cosine_momentum_and_ema_update():
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995)
    student = torch.nn.Linear(3, 3)
    teacher = make_teacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        student.weight.add_(1.0)
    before = teacher.weight.clone()
    ema_update(teacher, student, 0.9)
    assert torch.allclose(teacher.weight, 0.9 * before + 0.1 * student.weight)


def test_ema_update_moves_float_buffers_and_copies_integer_ones():
    student = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6))
    teacher = make_teacher(student)
    student(torch.randn(8, 4)).sum().backward()  # updates running stats and num_batches_tracked
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    old = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, 0.75)
    new, src = teacher.state_dict(), student.state_dict()
    for key, value in old.items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(new[key], 0.75 * value + 0.25 * src[key], rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(new[key], src[key]), key
    assert int(new["1.num_batches_tracked"]) == 1
    assert not any(p.requires_grad for p in teacher.parameters())


def test_ema_update_refuses_a_teacher_of_another_architecture():
    with pytest.raises(RuntimeError):  # same tensors, other shapes
        ema_update(torch.nn.Linear(3, 3), torch.nn.Linear(3, 4), 0.9)
    with pytest.raises(ValueError, match="make_teacher"):  # another number of tensors
        ema_update(torch.nn.Linear(3, 3, bias=False), torch.nn.Linear(3, 3), 0.9)
    with pytest.raises(ValueError, match="make_teacher"):
        ema_update(torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3, track_running_stats=False), 0.9)


def test_mlp_dims_counts_linear_layers_and_refuses_fewer_than_two():
    from geossl.errors import GeosslError
    from geossl.nn.heads import mlp_dims

    assert mlp_dims(512, 64, 16, 2) == (512, 64, 16)
    assert mlp_dims(512, 64, 16, 4) == (512, 64, 64, 64, 16)
    with pytest.raises(GeosslError, match="projector_layers must be >= 2"):
        mlp_dims(512, 64, 16, 1, "projector_layers")
