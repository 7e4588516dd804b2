"""User-input errors: each is a GeosslError with a one-line message saying what is wrong and how to fix it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geossl.data import load_data, load_image_folder, stratified_split
from geossl.data.geotiff import read_raster, stack_bands, write_geotiff
from geossl.errors import GeosslError


def check_message(excinfo: pytest.ExceptionInfo, *parts: str) -> str:
    message = str(excinfo.value)
    assert excinfo.type is GeosslError or issubclass(excinfo.type, GeosslError)
    assert "\n" not in message, f"message is not one line: {message!r}"
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


def rgb(rng: np.random.Generator, h: int = 8, w: int = 8) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_nonexistent_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(GeosslError) as excinfo:
        load_image_folder(missing)
    check_message(excinfo, str(missing), "does not exist", "--data")
    with pytest.raises(GeosslError) as excinfo:  # through the catalog: a path, not an unknown name
        load_data(str(missing))
    check_message(excinfo, "does not exist")


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "a.png"
    rgb(np.random.default_rng(0)).save(f)
    with pytest.raises(GeosslError) as excinfo:
        load_image_folder(f)
    check_message(excinfo, "is a file, not a folder")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(GeosslError) as excinfo:
        load_image_folder(tmp_path / "empty")
    check_message(excinfo, "no images found", ".jpg", ".npy")


def test_class_folders_all_empty(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "d" / name).mkdir(parents=True)
    with pytest.raises(GeosslError) as excinfo:
        load_image_folder(tmp_path / "d")
    check_message(excinfo, "no images found", "cat, dog", "empty")


def test_one_empty_class_folder_is_ignored_with_a_warning(tmp_path):
    rgb(np.random.default_rng(0)).save(_mk(tmp_path / "d" / "cat") / "a.png")
    _mk(tmp_path / "d" / "dog")
    with pytest.warns(UserWarning, match="dog"):
        ds = load_image_folder(tmp_path / "d")
    assert ds.classes == ["cat"]


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _folder_with_corrupt_jpg(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    root = tmp_path / "data"
    for cls in ("a", "b"):
        for i in range(3):
            rgb(rng, 16, 16).save(_mk(root / cls) / f"{cls}{i}.jpg")
    bad = root / "b" / "b1.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    return root, bad


def test_corrupt_jpg_names_the_file(tmp_path):
    root, bad = _folder_with_corrupt_jpg(tmp_path)
    with pytest.raises(GeosslError) as excinfo:
        load_image_folder(root)
    check_message(excinfo, str(bad), "--skip-corrupt", "remove it")


def test_random_bytes_png_is_corrupt(tmp_path):
    rgb(np.random.default_rng(0)).save(_mk(tmp_path / "d") / "good.png")
    (tmp_path / "d" / "junk.png").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(GeosslError) as excinfo:
        load_image_folder(tmp_path / "d")
    check_message(excinfo, "junk.png", "--skip-corrupt")


def test_skip_corrupt_skips_with_one_warning(tmp_path):
    root, bad = _folder_with_corrupt_jpg(tmp_path)
    with pytest.warns(UserWarning) as record:
        ds = load_image_folder(root, skip_corrupt=True)
    messages = [str(w.message) for w in record if "unreadable" in str(w.message)]
    assert len(messages) == 1 and "skipped 1 unreadable image" in messages[0] and str(bad) in messages[0]
    assert "\n" not in messages[0]
    assert len(ds) == 5 and str(bad) not in ds.files
    # Labels stay aligned with the remaining files.
    assert [ds.classes[label] for label in ds.labels.tolist()] == [Path(f).parent.name for f in ds.files]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]


def test_different_band_counts(tmp_path):
    rng = np.random.default_rng(2)
    root = _mk(tmp_path / "d")
    for i in range(3):
        rgb(rng).save(root / f"rgb{i}.png")
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / "gray.png")
    with pytest.raises(GeosslError) as excinfo:
        load_image_folder(root)
    check_message(excinfo, "different band counts", "3 bands in 3 files", "rgb0.png", "1 band in 1 file", "gray.png")


def test_different_sizes(tmp_path):
    rng = np.random.default_rng(3)
    root = _mk(tmp_path / "d")
    for i in range(3):
        rgb(rng, 8, 8).save(root / f"ok{i}.png")
    rgb(rng, 8, 12).save(root / "odd.png")
    with pytest.raises(GeosslError) as excinfo:
        load_image_folder(root)
    check_message(excinfo, "different sizes", "odd.png", "8x12", "3 are 8x8", "--image-size")
    assert load_image_folder(root, image_size=(8, 8)).image_size == (8, 8)  # the suggested fix works


def test_images_next_to_class_folders(tmp_path):
    rng = np.random.default_rng(4)
    rgb(rng).save(_mk(tmp_path / "d" / "cat") / "a.png")
    rgb(rng).save(tmp_path / "d" / "loose.png")
    with pytest.raises(GeosslError) as excinfo:
        load_image_folder(tmp_path / "d")
    check_message(excinfo, "loose.png", "class sub-folders")


def test_npy_in_hwc_layout(tmp_path):
    np.save(_mk(tmp_path / "d") / "x.npy", np.zeros((64, 64, 3), dtype=np.float32))
    with pytest.raises(GeosslError) as excinfo:
        load_image_folder(tmp_path / "d")
    check_message(excinfo, "x.npy", "(H, W, C)", "(C, H, W)")


def test_unknown_dataset_name_suggests_closest():
    with pytest.raises(GeosslError) as excinfo:
        load_data("eurosat-sampel")
    check_message(excinfo, "unknown dataset 'eurosat-sampel'", "Did you mean 'eurosat-sample'?", "cifar10", "path")


def test_torchvision_set_missing_without_download(tmp_path):
    with pytest.raises(GeosslError) as excinfo:
        load_data("cifar10", root=tmp_path)
    check_message(excinfo, f"cifar10 not found under {tmp_path}", "--download", "--root")
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or created


def test_bad_split_fractions():
    with pytest.raises(GeosslError) as excinfo:
        stratified_split(np.zeros(10, dtype=int), (0.5, 0.2))
    check_message(excinfo, "sum to 1")
    with pytest.raises(GeosslError) as excinfo:
        stratified_split(np.zeros(10, dtype=int), (0.5, 0.2, 0.2, 0.1))
    check_message(excinfo, "2 (train/test) or 3 (train/val/test)")


def test_wrong_number_of_mean_values():
    with pytest.raises(GeosslError) as excinfo:
        load_data("eurosat-sample", mean=[0.5], std=[0.2, 0.2, 0.2])
    check_message(excinfo, "--mean has 1 values", "3 bands")


def test_name_and_train_data_together(tmp_path):
    with pytest.raises(GeosslError) as excinfo:
        load_data("cifar10", train_data=tmp_path)
    check_message(excinfo, "not both")


def test_tif_without_rasterio(tmp_path, monkeypatch):
    pytest.importorskip("rasterio")
    write_geotiff(tmp_path / "d" / "a.tif", np.zeros((2, 4, 4), dtype=np.uint16))
    monkeypatch.setitem(sys.modules, "rasterio", None)  # makes `import rasterio` raise ImportError
    with pytest.raises(GeosslError) as excinfo:
        load_image_folder(tmp_path / "d")
    check_message(excinfo, "reading .tif needs rasterio: pip install 'geossl[geo]'")


def test_raster_errors(tmp_path):
    pytest.importorskip("rasterio")
    with pytest.raises(GeosslError) as excinfo:
        read_raster(tmp_path / "missing.tif")
    check_message(excinfo, "missing.tif", "does not exist")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(GeosslError) as excinfo:
        read_raster(tmp_path / "bad.tif")
    check_message(excinfo, "cannot read raster", "bad.tif")
    a = write_geotiff(tmp_path / "a.tif", np.zeros((4, 4), np.uint16), crs="EPSG:32633",
                      transform=(10, 0, 400000, 0, -10, 5300000))
    b = write_geotiff(tmp_path / "b.tif", np.zeros((4, 4), np.uint16), crs="EPSG:32633",
                      transform=(10, 0, 409000, 0, -10, 5300000))
    with pytest.raises(GeosslError) as excinfo:
        stack_bands([a, b])
    check_message(excinfo, "cover different areas")
    with pytest.raises(GeosslError) as excinfo:
        stack_bands([a], mode="cubic")
    check_message(excinfo, "unknown resampling mode 'cubic'")
