"""Feature extraction and the feature cache (evaluation.md §0)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from geossl.errors import GeosslError
from geossl.eval import FeatureCache, extract_features


class _Images(torch.utils.data.Dataset):
    def __init__(self, n: int = 37) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
        self.labels = (torch.arange(n) % 4).tolist()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


def _encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _preprocess(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255 - 0.5) / 0.25


def test_features_match_eval_mode_forward_and_modes_are_restored():
    ds, enc = _Images(), _encoder()
    enc.train()
    enc[1].eval()  # a frozen BatchNorm inside a training model must stay frozen
    feats, labels = extract_features(enc, ds, preprocess=_preprocess, batch_size=10, progress=False)
    assert feats.shape == (37, 4) and feats.dtype == torch.float32
    assert labels.dtype == torch.long and labels.tolist() == ds.labels
    assert not feats.is_inference()  # usable to train a head with autograd afterwards
    assert enc.training and not enc[1].training and enc[3].training
    enc.eval()
    with torch.no_grad():
        expected = enc(_preprocess(ds.images))
    assert torch.allclose(feats, expected, atol=1e-5)


def test_preprocess_default_and_dataloader_input():
    ds = _Images(9)
    feats, _ = extract_features(nn.Flatten(), ds, progress=False)
    assert torch.equal(feats, ds.images.float().flatten(1))
    loader = DataLoader(ds, batch_size=4)
    feats2, labels2 = extract_features(nn.Flatten(), loader, progress=True)
    assert torch.equal(feats, feats2) and labels2.tolist() == ds.labels


def test_extraction_errors():
    with pytest.raises(GeosslError, match="empty"):
        extract_features(nn.Flatten(), _Images(0), progress=False)

    class TupleOut(nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(GeosslError, match="tensor"):
        extract_features(TupleOut(), _Images(3), progress=False)
    with pytest.raises(GeosslError, match="pairs"):
        extract_features(nn.Flatten(), [torch.zeros(3, 4, 4)] * 2, progress=False)
    enc = _encoder().train()
    with pytest.raises(GeosslError):
        extract_features(enc, [(torch.zeros(4, 4), 0)], progress=False)
    assert enc.training  # restored even after an error


def test_feature_cache_roundtrip(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    feats, labels = torch.randn(5, 3), torch.arange(5)
    calls = []

    def compute():
        calls.append(1)
        return feats, labels

    key = "ckpt-abc|eurosat|test"
    assert cache.load(key) is None and key not in cache
    a = cache.get_or_compute(key, compute)
    b = cache.get_or_compute(key, compute)
    assert len(calls) == 1 and key in cache
    assert torch.equal(a[0], feats) and torch.equal(b[0], feats) and torch.equal(b[1], labels)
    assert cache.load("another key") is None
    cache.path(key).write_bytes(b"garbage")
    with pytest.raises(GeosslError, match="delete"):
        cache.load(key)


def test_make_key_hashes_file_content(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"weights v1")
    k1 = FeatureCache.make_key(ckpt, "eurosat", "test")
    assert k1 == FeatureCache.make_key(str(ckpt), "eurosat", "test")
    assert k1 != FeatureCache.make_key(ckpt, "eurosat", "train")
    ckpt.write_bytes(b"weights v2")
    assert k1 != FeatureCache.make_key(ckpt, "eurosat", "test")
