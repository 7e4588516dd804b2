"""CIFAR-10/100 and STL-10 parsing, checked against torchvision's own reader on tiny fake files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.stl10 as tv_stl10

from geossl.data import load_data
from geossl.data.torchvision_sets import load_torchvision_dataset

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_fake_cifar10(root: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> Path:
    """The cifar-10-batches-py layout: 5 data batches, a test batch, batches.meta (rows are R, G, B planes)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        _pickle(folder / name, {
            "batch_label": name,
            "labels": rng.integers(0, 10, n).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        })  # fmt: skip
    _pickle(folder / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": per_batch})
    return folder


def make_fake_cifar100(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", 7), ("test", 3)):
        _pickle(folder / name, {
            "fine_labels": rng.integers(0, 100, n).tolist(),
            "coarse_labels": rng.integers(0, 20, n).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        })  # fmt: skip
    _pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": []})
    return folder


def make_fake_stl10(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for split, n in (("train", 3), ("test", 2), ("unlabeled", 4)):
        rng.integers(0, 256, n * 3 * 96 * 96, dtype=np.uint8).tofile(folder / f"{split}_X.bin")
        if split != "unlabeled":
            rng.integers(1, 11, n, dtype=np.uint8).tofile(folder / f"{split}_y.bin")  # 1-based on disk
    (folder / "class_names.txt").write_text("\n".join(CIFAR10_CLASSES[:9] + ["monkey"]) + "\n")
    return folder


def test_cifar10_matches_torchvision(tmp_path, monkeypatch):
    make_fake_cifar10(tmp_path)
    parts = load_torchvision_dataset("cifar10", tmp_path)
    assert set(parts) == {"train", "test"}
    train, test = parts["train"], parts["test"]
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (6, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.classes == CIFAR10_CLASSES
    assert train.value_scale == pytest.approx(1 / 255)

    # torchvision's reader (its md5 check bypassed: the files are fake) must see the same pixels and labels.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    for split, ours in (("train", train), ("test", test)):
        ref = tvd.CIFAR10(str(tmp_path), train=split == "train", download=False)
        assert torch.equal(ours.images, torch.from_numpy(ref.data).permute(0, 3, 1, 2))  # HWC -> CHW
        assert ours.labels.tolist() == list(ref.targets)
        assert ours.classes == ref.classes


def test_cifar100_matches_torchvision(tmp_path, monkeypatch):
    make_fake_cifar100(tmp_path)
    parts = load_torchvision_dataset("cifar100", tmp_path)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    ref = tvd.CIFAR100(str(tmp_path), train=True, download=False)
    assert torch.equal(parts["train"].images, torch.from_numpy(ref.data).permute(0, 3, 1, 2))
    assert parts["train"].labels.tolist() == list(ref.targets)
    assert len(parts["train"].classes) == 100 and len(parts["test"]) == 3


def test_stl10_matches_torchvision(tmp_path, monkeypatch):
    make_fake_stl10(tmp_path)
    parts = load_torchvision_dataset("stl10", tmp_path)
    assert set(parts) == {"train", "test", "unlabeled"}
    assert parts["unlabeled"].classes is None and (parts["unlabeled"].labels == -1).all()
    assert parts["train"].classes[-1] == "monkey"
    monkeypatch.setattr(tv_stl10, "check_integrity", lambda *args, **kwargs: True)
    for split in ("train", "test", "unlabeled"):
        ref = tvd.STL10(str(tmp_path), split=split, download=False)
        assert torch.equal(parts[split].images, torch.from_numpy(np.ascontiguousarray(ref.data)))
        expected = ref.labels.tolist() if split != "unlabeled" else [-1] * len(ref.data)
        assert parts[split].labels.tolist() == expected
    assert parts["train"].labels.min() >= 0  # 1-based labels on disk are shifted to 0-based


def test_load_data_cifar10_official_split(tmp_path):
    folder = make_fake_cifar10(tmp_path)
    data = load_data("CIFAR-10", root=tmp_path)
    assert data.name == "cifar10" and data.val is None and len(data.test) == 6
    assert data.split_description == "official cifar10 train/test split: 20/6 images"
    assert data.is_rgb and data.has_labels and data.classes == CIFAR10_CLASSES
    expected_mean = data.train.images.double().mean(dim=(0, 2, 3)) / 255
    np.testing.assert_allclose(data.mean, expected_mean.numpy(), atol=1e-6)
    # The root may also be the cifar-10-batches-py folder itself.
    assert torch.equal(load_data("cifar10", root=folder).train.images, data.train.images)
    resized = load_data("cifar10", root=tmp_path, image_size=16)
    assert resized.image_size == (16, 16) and resized.train.images.dtype == torch.uint8


def test_stl10_unlabeled_is_exposed(tmp_path):
    make_fake_stl10(tmp_path)
    data = load_data("stl10", root=tmp_path)
    assert data.unlabeled is not None and len(data.unlabeled) == 4
    assert "+4 unlabelled" in data.split_description


def test_default_root_comes_from_environment(tmp_path, monkeypatch):
    make_fake_cifar10(tmp_path / "datasets")
    monkeypatch.setenv("GEOSSL_DATA_DIR", str(tmp_path / "datasets"))
    assert len(load_data("cifar10").train) == 20
