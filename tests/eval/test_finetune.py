"""Fine-tuning protocol: learns a separable task end to end, never modifies the encoder, honours label fractions."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from geossl.errors import GeosslError
from geossl.eval.finetune import _augment, finetune
from geossl.nn import build_backbone


def _colour_classes(n_per_class: int, seed: int) -> TensorDataset:
    """Three classes of 16 px images whose mean colour differs, with noise."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for c in range(3):
        base = torch.zeros(3, 1, 1)
        base[c] = 1.0
        xs.append(base + 0.3 * torch.randn(n_per_class, 3, 16, 16, generator=g))
        ys.append(torch.full((n_per_class,), c))
    return TensorDataset(torch.cat(xs), torch.cat(ys))


def test_finetuning_learns_a_separable_task_and_leaves_the_encoder_alone():
    torch.manual_seed(0)
    encoder = build_backbone("resnet18", 3, small_stem=True)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    res = finetune(encoder, _colour_classes(30, 0), _colour_classes(20, 1), 3, preprocess=lambda x: x, epochs=6, lr=0.05,
                   batch_size=16, seed=0)
    assert res["top1"] > 90 and res["n_train"] == 90 and res["n_test"] == 60
    assert res["train_loss"][-1] < res["train_loss"][0]
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_label_fraction_is_a_stratified_subset():
    encoder = build_backbone("resnet18", 3, small_stem=True)
    res = finetune(encoder, _colour_classes(30, 0), _colour_classes(5, 1), 3, preprocess=lambda x: x, epochs=1,
                   label_fraction=0.2, batch_size=16)
    assert res["n_train"] == 18


def test_augmentation_keeps_shapes_and_changes_pixels():
    x = torch.randn(4, 5, 16, 16)
    y = _augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.allclose(x, y)


def test_bad_arguments():
    encoder = build_backbone("resnet18", 3, small_stem=True)
    with pytest.raises(GeosslError, match="label_fraction"):
        finetune(encoder, _colour_classes(2, 0), _colour_classes(2, 1), 3, preprocess=lambda x: x, label_fraction=0)
    with pytest.raises(GeosslError, match="epochs"):
        finetune(encoder, _colour_classes(2, 0), _colour_classes(2, 1), 3, preprocess=lambda x: x, epochs=0)
