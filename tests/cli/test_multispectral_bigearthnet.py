"""Pretrain and embed on real Sentinel-2 patches: 12 BigEarthNet bands stacked onto the 10 m grid."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from ..conftest import SHARED_DATA
from .test_cli import FAST, invoke

BIGEARTHNET_S2 = SHARED_DATA / "bigearthnet-example" / "BigEarthNet-S2-Example"


@pytest.fixture
def s2_folder(tmp_path):
    if not BIGEARTHNET_S2.is_dir():
        pytest.skip(f"BigEarthNet example not found at {BIGEARTHNET_S2}")
    pytest.importorskip("rasterio")
    from geossl.data.geotiff import read_bigearthnet_s2, write_geotiff

    out = tmp_path / "s2"
    for patch in sorted(p for p in BIGEARTHNET_S2.iterdir() if p.is_dir()):
        image, names = read_bigearthnet_s2(patch)
        write_geotiff(out / f"{patch.name}.tif", image, dtype="uint16", band_names=names)
    return out


def test_pretrain_and_embed_twelve_band_sentinel2(s2_folder, tmp_path):
    run = tmp_path / "run"
    result = invoke("pretrain", "--train-data", s2_folder, "--epochs", 2, "--run-dir", run, *FAST[2:], "--batch-size", 3)
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((run / "config.yaml").read_text())
    # the default views leave out the RGB-only operations on 12 bands, and the saved config says so
    assert [(v["color_jitter"], v["grayscale"], v["solarize"]) for v in config["views"]] == [(0.0, 0.0, 0.0)] * 2
    assert config["views"][0]["spectral_gain"] == [0.9, 1.1]
    # and they take the band dropout and Gaussian noise of spec remote_sensing.md §2
    assert [(v["band_dropout"], v["noise_sigma"]) for v in config["views"]] == [(0.1, [0.01, 0.05])] * 2
    ckpt_info = __import__("torch").load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["hyper_parameters"]["data_info"]
    assert ckpt_info["num_bands"] == 12 and ckpt_info["rgb"] is False
    assert ckpt_info["value_scale"] == pytest.approx(1e-4)
    out = tmp_path / "f.npy"
    result = invoke("embed", run, "--data", s2_folder, "--out", out)
    assert result.exit_code == 0, result.output
    feats = np.load(out)
    assert feats.shape == (6, 512) and np.isfinite(feats).all()
