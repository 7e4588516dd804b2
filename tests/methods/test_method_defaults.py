"""A method's hyperparameters are read from its constructor's signature, the one place they are written."""

from __future__ import annotations

import pytest
from torch import nn

from geossl.methods.base import Method, constructor_defaults
from geossl.methods.byol import BYOL
from geossl.methods.dino import DINO
from geossl.methods.registry import METHODS


def test_defaults_are_the_signature_minus_backbone_and_gather() -> None:
    class Toy(Method):
        name = "toy"

        def __init__(self, backbone: nn.Module, width: int = 8, temperature: float = 0.5, gather: bool = True) -> None:
            super().__init__(backbone)

    assert Toy.defaults == {"width": 8, "temperature": 0.5}
    assert Method.defaults == {}  # the base is not touched by its subclasses


def test_a_hyperparameter_without_default_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match="give the hyperparameter 'width' a default"):

        class Toy(Method):
            name = "toy"

            def __init__(self, backbone: nn.Module, width: int) -> None:
                super().__init__(backbone)


def test_unnamed_bases_may_leave_sizes_unset_and_their_subclasses_read_their_own() -> None:
    class Base(Method):
        def __init__(self, backbone: nn.Module, width: int) -> None:
            super().__init__(backbone)

    class Named(Base):
        name = "named"

        def __init__(self, backbone: nn.Module, width: int = 4, depth: int = 2) -> None:
            super().__init__(backbone, width)

    assert Base.defaults == {} and Named.defaults == {"width": 4, "depth": 2}


def test_an_explicit_defaults_attribute_must_agree_with_the_signature() -> None:
    class Agrees(Method):
        name = "agrees"
        defaults = {"width": 8}

        def __init__(self, backbone: nn.Module, width: int = 8) -> None:
            super().__init__(backbone)

    assert Agrees.defaults == {"width": 8}
    with pytest.raises(TypeError, match="disagrees with its __init__ defaults"):

        class Disagrees(Method):
            name = "disagrees"
            defaults = {"width": 16}

            def __init__(self, backbone: nn.Module, width: int = 8) -> None:
                super().__init__(backbone)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_has_its_signature_defaults(name: str) -> None:
    cls = METHODS[name]
    assert cls.defaults == constructor_defaults(cls) and cls.defaults  # every method has hyperparameters
    assert "backbone" not in cls.defaults and "gather" not in cls.defaults


def test_paper_values_reach_defaults() -> None:
    # the values the zoo's rows ran with (benchmarks/results/zoo_eurosat.md): a change here changes those rows
    assert BYOL.defaults == {"hidden_dim": 4096, "projection_dim": 256, "momentum": 0.99, "bn_splits": 1,
                             "predictor_lr_scale": 10.0}
    assert BYOL.optim_defaults == {"optimizer": "lars", "lr": 0.1, "weight_decay": 1.5e-6}  # lr 0.1: not the paper's
    assert DINO.defaults["teacher_temp"] == 0.04 and DINO.defaults["out_dim"] == 2048



def test_byol_views_are_the_shared_pair_with_the_papers_asymmetric_blur() -> None:
    # Grill et al. 2020, App. B: blur 1.0 / 0.1 (σ scaled to the image size); the paper's solarisation and colour
    # jitter are left out of the defaults, measured in the zoo.
    first, second = BYOL.default_views(64, overhead=True)
    assert (first.blur, second.blur) == (1.0, 0.1)
    assert first.blur_sigma == second.blur_sigma == pytest.approx((0.1, 2.0 * 64 / 224))
    shared = Method.default_views(64, overhead=True)[0]
    for view in (first, second):
        assert view.solarize == 0.0 and view.jitter_amounts() == shared.jitter_amounts()
        assert (view.crop_scale, view.vflip) == (shared.crop_scale, 0.5)
