"""The built-in eurosat-sample: content, fixed split, original bytes, licence, reproducibility."""

from __future__ import annotations

import hashlib
import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geossl.data import load_data
from geossl.data.sample import read_manifest, sample_root

EUROSAT_CLASSES = [
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
    "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
]  # fmt: skip


@pytest.fixture(scope="module")
def sample():
    return load_data("eurosat-sample")


def test_sample_splits_shapes_and_metadata(sample):
    assert sample.name == "eurosat-sample"
    assert sample.classes == EUROSAT_CLASSES
    assert (len(sample.train), len(sample.val), len(sample.test)) == (900, 300, 300)
    assert sample.num_bands == 3 and sample.image_size == (64, 64)
    assert sample.value_scale == pytest.approx(1 / 255) and sample.is_rgb and sample.has_labels
    for part, per_class in ((sample.train, 90), (sample.val, 30), (sample.test, 30)):
        assert part.images.shape == (len(part), 3, 64, 64) and part.images.dtype == torch.uint8
        assert Counter(part.labels.tolist()) == {c: per_class for c in range(10)}
    files = [set(p.files) for p in (sample.train, sample.val, sample.test)]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert "900/300/300" in sample.split_description and "fixed" in sample.split_description


def test_default_spec_is_the_sample(sample):
    default = load_data()
    assert default.name == "eurosat-sample"
    assert torch.equal(default.train.images, sample.train.images)


def test_split_comes_from_the_manifest_not_recomputed(sample):
    manifest, _ = read_manifest()
    by_path = {r["path"]: r["split"] for r in manifest["images"]}
    for part, name in ((sample.train, "train"), (sample.val, "val"), (sample.test, "test")):
        for f in part.files:
            rel = "/".join(Path(f).parts[-2:])
            assert by_path[rel] == name
    # Split arguments do not change the fixed split.
    other = load_data("eurosat-sample", split=(0.5, 0.5), seed=3)
    assert other.train.files == sample.train.files


def test_mean_std_match_numpy(sample):
    x = sample.train.images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(sample.mean, x.mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(sample.std, x.std(axis=(0, 2, 3)), atol=1e-6)


def test_decoded_pixels_match_pil(sample):
    f = sample.test.files[7]
    expected = np.array(Image.open(f)).transpose(2, 0, 1)
    assert torch.equal(sample.test.images[7], torch.from_numpy(expected))


def test_files_are_original_eurosat_bytes(eurosat_dir):
    manifest, _ = read_manifest()
    root = sample_root()
    assert len(manifest["images"]) == 1500
    for record in manifest["images"]:
        bundled = (root / record["path"]).read_bytes()
        assert bundled == (eurosat_dir / record["path"]).read_bytes(), record["path"]
        assert hashlib.sha256(bundled).hexdigest() == record["sha256"]


def test_script_reproduces_the_bundled_sample(eurosat_dir, tmp_path):
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_eurosat_sample.py"
    spec = importlib.util.spec_from_file_location("make_eurosat_sample", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(eurosat_dir, tmp_path / "out")
    _, bundled = read_manifest()
    assert (tmp_path / "out" / "manifest.json").read_bytes() == bundled


def test_licence_citation_and_size():
    root = Path(str(sample_root()))
    licence = (root / "LICENSE").read_text()
    citation = (root / "CITATION.md").read_text()
    assert "MIT License" in licence and "Helber" in licence
    assert "JSTARS" in citation or "Selected Topics" in citation
    assert "IGARSS 2018" in citation and "Bischke" in citation and "Borth" in citation
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total <= 10 * 1024 * 1024


def test_image_size_resizes_the_sample():
    small = load_data("eurosat-sample", image_size=32)
    assert small.image_size == (32, 32) and small.train.images.dtype == torch.uint8
    ref = Image.open(small.train.files[0])
    assert np.asarray(ref).shape == (64, 64, 3)  # resized in memory, files untouched
