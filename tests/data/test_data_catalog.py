"""load_data on folders: splitting, explicit train/test folders, statistics, DataSplits properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geossl.data import DataSplits, list_datasets, load_data
from geossl.errors import GeosslError


def test_labelled_folder_is_split_stratified(make_labelled_folder):
    root = make_labelled_folder({"a": 10, "b": 20, "c": 15})
    data = load_data(str(root), split=(0.6, 0.2, 0.2), seed=0)
    assert isinstance(data, DataSplits)
    assert data.name == "labelled" and data.source == str(root.resolve())
    assert (len(data.train), len(data.val), len(data.test)) == (27, 9, 9)
    assert data.classes == ["a", "b", "c"] and data.has_labels and data.is_rgb
    for part, f in ((data.train, 0.6), (data.val, 0.2), (data.test, 0.2)):
        counts = torch.bincount(part.labels, minlength=3).tolist()
        assert all(abs(c - n * f) <= 1 for c, n in zip(counts, (10, 20, 15)))
    files = [set(p.files) for p in (data.train, data.val, data.test)]
    assert len(files[0] | files[1] | files[2]) == 45
    assert data.split_description == "stratified 60/20/20 train/val/test split, seed 0: 27/9/9 images"
    # Statistics come from the training split only.
    x = data.train.images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(data.mean, x.mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(data.std, x.std(axis=(0, 2, 3)), atol=1e-6)
    other_seed = load_data(str(root), seed=1)
    assert other_seed.train.files != data.train.files


def test_two_way_split_has_no_val(make_labelled_folder):
    data = load_data(str(make_labelled_folder({"a": 5, "b": 5})), split=(0.8, 0.2))
    assert data.val is None and (len(data.train), len(data.test)) == (8, 2)


def test_flat_folder_random_split(tmp_path, write_png):
    rng = np.random.default_rng(0)
    for i in range(10):
        write_png(tmp_path / "flat" / f"{i}.png", rng.integers(0, 256, (4, 4), dtype=np.uint8))
    data = load_data(str(tmp_path / "flat"), split=(0.5, 0.5))
    assert data.classes is None and not data.has_labels and not data.is_rgb
    assert data.num_bands == 1 and data.split_description.startswith("random 50/50 train/test split")


def test_explicit_train_and_test_folders_map_classes_by_name(make_labelled_folder):
    train_root = make_labelled_folder({"a": 3, "b": 3, "c": 3}, name="train")
    test_root = make_labelled_folder({"b": 2, "c": 1}, name="test", seed=1)  # no class "a"
    data = load_data(train_data=train_root, test_data=test_root)
    assert data.val is None and len(data.train) == 9 and len(data.test) == 3
    assert data.test.classes == ["a", "b", "c"]
    assert data.test.labels.tolist() == [1, 1, 2]  # "b" and "c" keep the training indices
    assert data.split_description.startswith("user-given train/test folders: 9/3 images")


def test_explicit_test_folder_with_unknown_class(make_labelled_folder):
    train_root = make_labelled_folder({"a": 2}, name="train")
    test_root = make_labelled_folder({"z": 2}, name="test")
    with pytest.raises(GeosslError, match="classes missing from the training folder"):
        load_data(train_data=train_root, test_data=test_root)


def test_user_mean_std_are_used_as_given(make_labelled_folder, monkeypatch):
    import geossl.data.catalog as catalog

    monkeypatch.setattr(catalog, "band_statistics", lambda *a, **k: pytest.fail("statistics computed"))
    data = load_data(str(make_labelled_folder({"a": 5})), split=(0.6, 0.4), mean=[0.1, 0.2, 0.3], std=[1, 2, 3])
    assert data.mean == [0.1, 0.2, 0.3] and data.std == [1.0, 2.0, 3.0]
    with pytest.raises(GeosslError, match="positive"):
        load_data(str(make_labelled_folder({"a": 5}, name="x")), mean=[0, 0, 0], std=[1, 0, 1])


def test_list_datasets():
    names = [name for name, _ in list_datasets()]
    assert names[0] == "eurosat-sample" and {"cifar10", "cifar100", "stl10"} <= set(names)
    assert all(desc and "\n" not in desc for _, desc in list_datasets())


def test_path_object_named_like_a_builtin_is_a_folder(tmp_path, monkeypatch, make_labelled_folder):
    from pathlib import Path

    make_labelled_folder({"a": 5, "b": 5}, name="cifar10")
    monkeypatch.chdir(tmp_path)
    data = load_data(Path("cifar10"), split=(0.6, 0.4))
    assert data.name == "cifar10" and data.classes == ["a", "b"] and len(data.train) == 6
    assert load_data("./cifar10", split=(0.6, 0.4)).classes == ["a", "b"]
