"""The --regularizer hook: unknown names are refused before any data is read; a registered one is added to the loss."""

from __future__ import annotations

import csv
import math

import pytest
import yaml
import torch
from torch import nn

from geossl.errors import GeosslError
from geossl.methods import regularizers
from geossl.train.config import PretrainConfig
from geossl.train.run import pretrain, regularizer_args, validate_config

from ..conftest import make_rgb_folder


class MeanSquaredNorm(nn.Module):
    """A test regulariser: weight * mean ||z||^2 (its value is checked in the log)."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.weight * z.pow(2).sum(1).mean()


def test_unknown_regularizer_is_refused() -> None:
    with pytest.raises(GeosslError, match="regularizer"):
        validate_config(PretrainConfig(regularizer="no-such-thing"))


def test_registered_regularizer_is_added_and_logged(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(regularizers.REGULARIZERS, "msn", f"{__name__}:MeanSquaredNorm")
    with pytest.raises(GeosslError, match="bad regularizer_args"):
        validate_config(PretrainConfig(regularizer="msn", regularizer_args={"nope": 1}))
    data = make_rgb_folder(tmp_path / "data", size=32)
    run = tmp_path / "run"
    config = PretrainConfig(method="simclr", method_args={"hidden_dim": 32, "projection_dim": 16}, train_data=str(data), epochs=1,
                            batch_size=8, run_dir=str(run), accelerator="cpu", progress=False, online_eval=False,
                            regularizer="msn", regularizer_args={"weight": 0.5})
    pretrain(config)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    values = [float(r["train/regularizer_step"]) for r in rows if r.get("train/regularizer_step")]
    assert values and all(v > 0 for v in values)


def test_t_reg_is_registered_and_trains_with_byol(tmp_path) -> None:
    data = make_rgb_folder(tmp_path / "data", size=32)
    run = tmp_path / "run"
    config = PretrainConfig(method="byol", method_args={"hidden_dim": 32, "projection_dim": 16}, train_data=str(data), epochs=1,
                            batch_size=8, run_dir=str(run), accelerator="cpu", progress=False, online_eval=False,
                            regularizer="t-reg", regularizer_args={"gamma": 0.5})
    pretrain(config)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    values = [float(r["train/regularizer_step"]) for r in rows if r.get("train/regularizer_step")]
    # two views, each −γ·(MST length per point) + λ·sphere term: negative once the points are spread
    assert values and all(math.isfinite(v) for v in values)
    # BYOL's loss reads z only through z/|z|, so T-REG defaults to the normalised embeddings; the stored config says so
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["regularizer_args"] == {"normalize": True, "gamma": 0.5}


@pytest.mark.parametrize(
    ("method", "user_args", "expected"),
    [
        ("byol", {}, {"normalize": True}),
        ("simclr", {"gamma": 0.1}, {"normalize": True, "gamma": 0.1}),
        ("moco-v3", {}, {"normalize": True}),
        ("byol", {"normalize": False}, {"normalize": False}),  # the user's choice wins
        ("barlow-twins", {}, {}),  # a loss on raw, standardised z: the paper's raw-z T-REG
        ("vicreg", {}, {}),
    ],
)
def test_t_reg_defaults_follow_the_method(method, user_args, expected) -> None:
    config = PretrainConfig(method=method, regularizer="t-reg", regularizer_args=user_args)
    assert regularizer_args(config) == expected
    assert regularizer_args(PretrainConfig(method=method)) == {}
    module = regularizers.build_regularizer("t-reg", regularizer_args(config))
    assert module.normalize is expected.get("normalize", False)
