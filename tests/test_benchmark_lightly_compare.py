"""benchmarks/lightly_compare.py: the lightly variants build from the engine's overrides alone and train a step, and
the seed-noise test says what its table claims."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightly")
pytest.importorskip("scipy")

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def lightly_compare():
    """The benchmark module; the ``NAME-lightly`` methods it registers are removed afterwards, so that the tests
    that walk the registry see geossl's methods only."""
    from geossl.methods.registry import METHODS

    registered = dict(METHODS)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import lightly_compare

        yield lightly_compare
    finally:
        sys.path.remove(str(BENCHMARKS))
        METHODS.clear()
        METHODS.update(registered)


def engine_method(name: str, method_args: dict):
    """The method as ``geossl pretrain`` builds it, for 32-px RGB images."""
    from geossl.train.config import PretrainConfig
    from geossl.train.module import build_method

    return build_method(PretrainConfig(method=name, method_args=method_args), {"image_size": (32, 32), "num_bands": 3})


@pytest.mark.parametrize(("name", "head"), [("simclr", "SimCLRProjectionHead"), ("byol", "BYOLProjectionHead"),
                                            ("barlow-twins", "BarlowTwinsProjectionHead")])
def test_lightly_variant_builds_from_overrides_alone_and_steps(lightly_compare, name, head):
    variant = lightly_compare.lightly_variant(name)
    # the engine passes only the overrides (none here); the variant must fill the heads' sizes from the defaults
    method = engine_method(variant.name, {})
    assert type(method.projector).__name__ == head
    assert type(method.projector).__module__.startswith("lightly")
    views = [torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)]
    out = method.training_step(views)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert method.projector.layers[0].weight.grad is not None


def test_lightly_variant_takes_overrides(lightly_compare):
    variant = lightly_compare.lightly_variant("simclr")
    method = engine_method(variant.name, {"projection_dim": 32})
    assert method(torch.randn(4, 3, 32, 32)).shape[1] == 512
    assert method.projector(torch.randn(4, 512)).shape == (4, 32)


def test_lightly_variant_is_built_once_and_registered_again(lightly_compare):
    from geossl.methods.registry import METHODS

    first = lightly_compare.lightly_variant("barlow-twins")
    del METHODS[first.name]  # as the fixture of another test module does
    assert lightly_compare.lightly_variant("barlow-twins") is first
    assert METHODS[first.name] is first


def test_seed_noise_contains_zero_for_overlapping_seeds(lightly_compare):
    row = {"geossl kNN (seeds)": "61.44, 59.70, 61.35, 59.12", "lightly kNN (seeds)": "65.79, 60.81, 60.70, 63.58"}
    out = lightly_compare.seed_noise(row)
    diff, interval = out["kNN diff (95% CI)"].split(" (")
    low, high = (float(v) for v in interval.rstrip(")").split(" to "))
    assert float(diff) == pytest.approx(60.4025 - 62.72, abs=5e-3)
    assert low < 0 < high
    assert 0.05 < out["Welch p"] < 1


def test_seed_noise_flags_a_real_difference(lightly_compare):
    row = {"geossl kNN (seeds)": "70.0, 70.5, 69.8, 70.2", "lightly kNN (seeds)": "60.1, 60.4, 59.9, 60.2"}
    out = lightly_compare.seed_noise(row)
    low = float(out["kNN diff (95% CI)"].split(" (")[1].split(" to ")[0])
    assert low > 0
    assert out["Welch p"] < 1e-3


@pytest.mark.parametrize("name", ["simclr", "byol", "barlow-twins"])
def test_method_code_timing_runs_both_implementations_on_features(lightly_compare, name):
    ours, theirs = lightly_compare.method_code_ms(name, batch_size=16, n_steps=1, dim=64)
    assert ours > 0 and theirs > 0


def test_seed_noise_needs_two_seeds_a_side(lightly_compare):
    out = lightly_compare.seed_noise({"geossl kNN (seeds)": "61.44", "lightly kNN (seeds)": "65.79"})
    assert out["kNN diff (95% CI)"].startswith("n/a")
