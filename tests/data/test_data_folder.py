"""Image folders (labelled, flat, PNG/JPEG/NPY/TIF) and the BigEarthNet GeoTIFF helpers."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geossl.data import ImageDataset, TensorImageDataset, band_statistics, load_image_folder
from geossl.data import stats as stats_module
from geossl.data.geotiff import (
    S2_BANDS_L2A,
    read_bigearthnet_labels,
    read_bigearthnet_s1,
    read_bigearthnet_s2,
    read_raster,
    stack_bands,
    write_geotiff,
)
from geossl.errors import GeosslError

rasterio = pytest.importorskip("rasterio")


def random_image(rng: np.random.Generator, height: int, width: int, bands: int = 3) -> np.ndarray:
    """A uint8 image of shape (H, W, C) (or (H, W) for one band), as PIL wants it."""
    shape = (height, width) if bands == 1 else (height, width, bands)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def test_labelled_folder_exact_pixels_labels_and_order(tmp_path, write_png):
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    written = {}
    for cls, n in {"emu": 2, "cat": 3, "dog": 1}.items():
        for i in range(n):
            written[f"{cls}/{cls}_{i}.png"] = write_png(root / cls / f"{cls}_{i}.png", random_image(rng, 6, 8))
    # Things that must be ignored: hidden files, macOS resource forks, non-image files.
    (root / "cat" / ".DS_Store").write_bytes(b"\x00\x01junk")
    (root / "cat" / "._cat_0.png").write_bytes(b"not a png")
    (root / "README.txt").write_text("notes")

    ds = load_image_folder(root)

    assert isinstance(ds, ImageDataset)
    assert ds.classes == ["cat", "dog", "emu"]
    assert len(ds) == 6 and ds.num_bands == 3 and ds.image_size == (6, 8)
    assert ds.value_scale == pytest.approx(1 / 255)
    rel = [f.split("pets/")[1] for f in ds.files]
    assert rel == sorted(written)  # sorted, deterministic order
    assert ds.labels.tolist() == [0, 0, 0, 1, 2, 2]
    for i, name in enumerate(rel):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 6, 8)
        assert torch.equal(image, torch.from_numpy(written[name]).permute(2, 0, 1))
        assert label == ds.classes.index(name.split("/")[0])


def test_flat_folder_is_unlabelled_and_keeps_band_count(tmp_path, write_png):
    rng = np.random.default_rng(1)
    gray = tmp_path / "gray"
    arrays = [write_png(gray / f"{i}.png", random_image(rng, 5, 7, bands=1)) for i in range(4)]
    ds = load_image_folder(gray)
    assert ds.classes is None and not ds.has_labels
    assert ds.labels.tolist() == [-1, -1, -1, -1]
    assert ds.num_bands == 1 and ds.images.shape == (4, 1, 5, 7)
    assert torch.equal(ds.images[2, 0], torch.from_numpy(arrays[2]))

    rgba = tmp_path / "rgba"
    write_png(rgba / "a.png", random_image(rng, 5, 7, bands=4))
    assert load_image_folder(rgba).num_bands == 4


def test_jpeg_decodes_like_pil(tmp_path):
    rng = np.random.default_rng(2)
    from PIL import Image

    (tmp_path / "j").mkdir()
    Image.fromarray(random_image(rng, 16, 16)).save(tmp_path / "j" / "x.JPG", quality=90)  # upper-case suffix
    ds = load_image_folder(tmp_path / "j")
    expected = np.array(Image.open(tmp_path / "j" / "x.JPG")).transpose(2, 0, 1)
    assert torch.equal(ds.images[0], torch.from_numpy(expected))


def test_npy_five_bands_and_2d(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "npy"
    root.mkdir()
    arrays = [rng.normal(size=(5, 9, 11)).astype(np.float32) for _ in range(3)]
    for i, a in enumerate(arrays):
        np.save(root / f"{i}.npy", a)
    ds = load_image_folder(root)
    assert ds.num_bands == 5 and ds.image_size == (9, 11)
    assert ds.images.dtype == torch.float32 and ds.value_scale == 1.0
    assert torch.equal(ds.images[1], torch.from_numpy(arrays[1]))

    flat2d = tmp_path / "npy2d"
    flat2d.mkdir()
    np.save(flat2d / "a.npy", np.arange(12, dtype=np.int16).reshape(3, 4))
    ds2 = load_image_folder(flat2d)
    assert ds2.images.shape == (1, 1, 3, 4) and ds2.images.dtype == torch.float32
    assert ds2.images[0, 0, 2, 3].item() == 11.0


def test_multiband_uint16_tif_written_with_rasterio(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "tif" / "fields"
    root.mkdir(parents=True)
    arrays = []
    for i in range(3):
        a = rng.integers(0, 10000, (7, 12, 10), dtype=np.uint16)
        arrays.append(a)
        transform = rasterio.transform.Affine(10.0, 0.0, 400000.0, 0.0, -10.0, 5300000.0)
        profile = dict(driver="GTiff", height=12, width=10, count=7, dtype="uint16", crs="EPSG:32633",
                       transform=transform)
        with rasterio.open(root / f"p{i}.tif", "w", **profile) as dst:
            dst.write(a)
    ds = load_image_folder(tmp_path / "tif")
    assert ds.classes == ["fields"] and len(ds) == 3
    assert ds.num_bands == 7 and ds.image_size == (12, 10)
    assert ds.images.dtype == torch.float32  # raw units, no 16-bit tensors downstream
    assert ds.value_scale == pytest.approx(1e-4)  # Sentinel-2 L2A convention
    assert torch.equal(ds.images[2], torch.from_numpy(arrays[2].astype(np.float32)))
    # User override of the scale (e.g. for 16-bit data that is not reflectance x 10 000).
    assert load_image_folder(tmp_path / "tif", value_scale=1 / 65535).value_scale == pytest.approx(1 / 65535)


def test_image_size_resizes_and_keeps_uint8(tmp_path, write_png):
    rng = np.random.default_rng(5)
    root = tmp_path / "mixed"
    write_png(root / "a.png", random_image(rng, 16, 16))
    small = write_png(root / "b.png", np.full((8, 8, 3), 77, dtype=np.uint8))
    ds = load_image_folder(root, image_size=(12, 12))
    assert ds.images.shape == (2, 3, 12, 12) and ds.images.dtype == torch.uint8
    assert (ds.images[1] == 77).all()  # a constant image stays constant under bilinear resizing
    assert small.shape == (8, 8, 3)
    assert load_image_folder(root, image_size=4).image_size == (4, 4)


def test_mixed_dtypes_become_float_with_scale_one(tmp_path, write_png):
    rng = np.random.default_rng(6)
    root = tmp_path / "mix"
    png = write_png(root / "a.png", random_image(rng, 4, 4))
    write_geotiff(root / "b.tif", rng.integers(0, 5000, (3, 4, 4)).astype(np.uint16))
    with pytest.warns(UserWarning, match="mixed dtypes"):
        ds = load_image_folder(root)
    assert ds.images.dtype == torch.float32 and ds.value_scale == 1.0
    assert torch.equal(ds.images[0], torch.from_numpy(png.transpose(2, 0, 1).astype(np.float32)))


def test_subset_keeps_metadata(make_labelled_folder):
    ds = load_image_folder(make_labelled_folder({"a": 3, "b": 4}))
    sub = ds.subset(torch.tensor([6, 0, 3]))
    assert isinstance(sub, TensorImageDataset)
    assert len(sub) == 3 and sub.classes == ["a", "b"] and sub.value_scale == ds.value_scale
    assert sub.labels.tolist() == [1, 0, 1]
    assert torch.equal(sub[0][0], ds[6][0]) and sub.files[0] == ds.files[6]
    assert sub.fingerprint() != ds.fingerprint()


# --- BigEarthNet (real Sentinel-1/2 patches) -------------------------------------------------------------------


def _s2_patches(root):
    return sorted(p for p in (root / "BigEarthNet-S2-Example").iterdir() if p.is_dir())


def test_stack_s2_bands_to_10m_grid(bigearthnet_dir):
    patch = _s2_patches(bigearthnet_dir)[0]
    image, names = read_bigearthnet_s2(patch)
    assert names == list(S2_BANDS_L2A) and len(names) == 12 and "B10" not in names
    assert image.shape == (12, 120, 120) and image.dtype == torch.float32

    b02, meta = read_raster(patch / f"{patch.name}_B02.tif")
    assert meta["dtype"] == "uint16" and b02.shape == (1, 120, 120)
    assert torch.equal(image[names.index("B02")], torch.from_numpy(b02[0].astype(np.float32)))  # 10 m: untouched

    b05 = torch.from_numpy(read_raster(patch / f"{patch.name}_B05.tif")[0].astype(np.float32))
    assert b05.shape == (1, 60, 60)
    stacked = image[names.index("B05")]
    expected = F.interpolate(b05[None], size=(120, 120), mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(stacked, expected, atol=1e-3)
    nearest = b05[0].repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert not torch.equal(stacked, nearest)  # really interpolated, not pixel-repeated
    assert abs(stacked.mean().item() - b05.mean().item()) < 0.01 * b05.mean().item()

    # The 60 m band B01 (20x20) goes to the same grid; nearest mode repeats pixels 6x6.
    near = stack_bands([patch / f"{patch.name}_B01.tif"], size=(120, 120), mode="nearest")
    b01 = torch.from_numpy(read_raster(patch / f"{patch.name}_B01.tif")[0].astype(np.float32))
    assert torch.equal(near[0], b01[0].repeat_interleave(6, 0).repeat_interleave(6, 1))


def test_read_s1_and_labels(bigearthnet_dir):
    s1_root = bigearthnet_dir / "BigEarthNet-S1-Example"
    patch = sorted(p for p in s1_root.iterdir() if p.is_dir())[0]
    image = read_bigearthnet_s1(patch)
    assert image.shape == (2, 120, 120) and image.dtype == torch.float32
    vv = read_raster(patch / f"{patch.name}_VV.tif")[0]
    assert torch.equal(image[0], torch.from_numpy(vv[0]))
    assert image.max() < 40 and image.min() > -60  # dB, not linear power
    labels = read_bigearthnet_labels(patch)
    expected = json.loads(next(patch.glob("*_labels_metadata.json")).read_text())["labels"]
    assert labels == expected and len(labels) >= 1


def test_s1_backscatter_is_clipped_to_the_db_range(tmp_path):
    patch = tmp_path / "S1B_IW_GRDH_test_1_1"
    vv = np.array([[[-np.inf, -80.0], [-20.0, 15.0]]], dtype=np.float32)
    write_geotiff(patch / f"{patch.name}_VV.tif", vv)
    write_geotiff(patch / f"{patch.name}_VH.tif", vv - 6)
    clipped = read_bigearthnet_s1(patch)
    assert clipped[0].flatten().tolist() == [-50.0, -50.0, -20.0, 10.0]
    assert clipped[1].flatten().tolist() == [-50.0, -50.0, -26.0, 9.0]
    raw = read_bigearthnet_s1(patch, clip_db=None)
    assert raw[0, 0, 0] == -np.inf and raw[0, 1, 1] == 15.0
    assert read_bigearthnet_s1(patch, clip_db=(-30.0, 0.0))[0].flatten().tolist() == [-30.0, -30.0, -20.0, 0.0]
    with pytest.raises(GeosslError, match="low < high"):
        read_bigearthnet_s1(patch, clip_db=(10.0, -50.0))


def test_speckle_views_of_real_s1_patches_keep_the_mean_power(bigearthnet_dir):
    from geossl.augment.spectral import DB_PER_NEPER
    from geossl.augment.views import Normalization, ViewAugment, ViewConfig

    s1_root = bigearthnet_dir / "BigEarthNet-S1-Example"
    db = torch.stack([read_bigearthnet_s1(p) for p in sorted(q for q in s1_root.iterdir() if q.is_dir())])
    mean, std = db.mean(dim=(0, 2, 3)).tolist(), db.std(dim=(0, 2, 3)).tolist()
    norm = Normalization(mean, std, 1.0)
    # A SAR view: geometry off, the optical jitter off, speckle of 4 looks on every image.
    view = ViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0, color_jitter=0.0, grayscale=0.0,
                      spectral_gain=(1.0, 1.0), spectral_offset=0.0, speckle=1.0, speckle_looks=(4, 4))
    out = ViewAugment(view, norm, rgb=False)(db, torch.Generator().manual_seed(0))
    back = out * torch.tensor(std).view(1, 2, 1, 1) + torch.tensor(mean).view(1, 2, 1, 1)
    shift = back - db
    L = torch.tensor(4.0)
    assert shift.mean().item() == pytest.approx((DB_PER_NEPER * (torch.special.digamma(L) - torch.log(L))).item(), abs=0.02)
    power, speckled = 10 ** (db / 10), 10 ** (back / 10)
    ratio = speckled.mean(dim=(2, 3)) / power.mean(dim=(2, 3))
    assert ((ratio - 1).abs() < 0.03).all(), ratio


def test_stacked_patches_as_dataset_and_cached_statistics(bigearthnet_dir, tmp_path, isolated_cache, monkeypatch):
    out = tmp_path / "s2_stacks"
    stacks = []
    for patch in _s2_patches(bigearthnet_dir):
        image, names = read_bigearthnet_s2(patch)
        # The source files are uint16 (reflectance x 10 000): store the resampled stack in the same convention,
        # so the folder loader infers value_scale 1e-4 instead of treating floats as already scaled.
        write_geotiff(out / f"{patch.name}.tif", image, dtype="uint16", band_names=names)
        stacks.append(np.clip(np.rint(image.numpy()), 0, 65535))
    assert len(stacks) == 6

    ds = load_image_folder(out)
    assert len(ds) == 6 and ds.classes is None
    assert ds.num_bands == 12 and ds.image_size == (120, 120)
    assert ds.value_scale == pytest.approx(1e-4)
    assert torch.equal(ds.images, torch.from_numpy(np.stack(stacks).astype(np.float32)))

    data = np.stack(stacks).astype(np.float64) * 1e-4  # (N, 12, 120, 120) in reflectance
    expected_mean = data.mean(axis=(0, 2, 3))
    expected_std = data.std(axis=(0, 2, 3))
    assert 0.0 < expected_mean.min() and expected_mean.max() < 1.0  # plausible reflectances

    listing = sorted(p.name for p in out.iterdir())
    mean, std = band_statistics(ds)
    np.testing.assert_allclose(mean, expected_mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(std, expected_std, rtol=0, atol=1e-6)
    cached = list((isolated_cache / "stats").glob("*.json"))
    assert len(cached) == 1
    assert sorted(p.name for p in out.iterdir()) == listing  # nothing written into the data folder

    def fail(*args, **kwargs):
        raise AssertionError("statistics were recomputed instead of read from the cache")

    monkeypatch.setattr(stats_module, "compute_band_statistics", fail)
    assert band_statistics(ds) == (mean, std)
    # Reloading the folder gives the same fingerprint, hence a cache hit too.
    assert band_statistics(load_image_folder(out)) == (mean, std)
    with pytest.raises(AssertionError, match="recomputed"):
        band_statistics(ds, cache=False)


def test_statistics_subsample_and_in_memory_fingerprint():
    rng = np.random.default_rng(7)
    images = torch.from_numpy(rng.integers(0, 256, (50, 2, 4, 4), dtype=np.uint8))
    ds = TensorImageDataset(images)
    full_mean, _ = band_statistics(ds)
    np.testing.assert_allclose(full_mean, images.double().mean((0, 2, 3)).numpy() / 255, atol=1e-9)
    sub_mean, sub_std = band_statistics(ds, max_samples=10, seed=3)
    idx = stats_module._sample_indices(50, 10, 3)
    assert len(idx) == 10
    chosen = images[idx].double() / 255
    np.testing.assert_allclose(sub_mean, chosen.mean((0, 2, 3)).numpy(), atol=1e-9)
    np.testing.assert_allclose(sub_std, chosen.std((0, 2, 3), unbiased=False).numpy(), atol=1e-9)
    assert not np.allclose(sub_mean, full_mean)
    # Same content -> same key; changed content -> different key (no stale cache hit).
    changed = images.clone()
    changed[0, 0, 0, 0] ^= 1
    assert TensorImageDataset(images.clone()).fingerprint() == ds.fingerprint()
    assert TensorImageDataset(changed).fingerprint() != ds.fingerprint()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a working cache dir produces no warnings
        band_statistics(TensorImageDataset(changed))


def test_generic_subset_and_fingerprint_for_custom_datasets():
    class Squares(ImageDataset):
        """A minimal user dataset: item i is a constant image of value i."""

        def __init__(self, n: int) -> None:
            self.labels = torch.arange(n) % 2
            self.classes = ["even", "odd"]
            self.num_bands, self.image_size, self.value_scale = 1, (2, 2), 1.0

        def __getitem__(self, i: int):
            return torch.full((1, 2, 2), float(i)), int(self.labels[i])

    ds = Squares(6)
    sub = ds.subset([5, 2])
    assert len(sub) == 2 and sub.classes == ["even", "odd"] and sub[0][0][0, 0, 0].item() == 5.0
    assert sub.labels.tolist() == [1, 0]
    mean, std = band_statistics(sub, cache=True)
    assert mean == pytest.approx([3.5]) and std == pytest.approx([1.5])
    assert sub.fingerprint() != ds.subset([2, 5]).fingerprint()
