"""Colour jitter, grayscale and solarisation on data that are not 8-bit RGB (spec ``remote_sensing.md`` §2): the
methods' default views leave them out, views set by hand that ask for them are refused before a run directory is
made, unless they set ``allow_rgb_only``."""

from __future__ import annotations

import pytest
import yaml

from geossl.errors import GeosslError
from geossl.methods.registry import METHODS
from geossl.train.config import PretrainConfig
from geossl.train.run import data_from_config, pretrain, resolve_config

from ..conftest import make_npy_folder, make_rgb_folder


def _config(data, run, **kw) -> PretrainConfig:
    return PretrainConfig(train_data=str(data), epochs=1, batch_size=8, run_dir=str(run), accelerator="cpu",
                          progress=False, online_eval=False, **kw)


@pytest.mark.parametrize("name", ["simclr", "byol", "dino"])
def test_default_views_leave_out_rgb_only_operations_on_multispectral_data(tmp_path, name: str) -> None:
    bands = make_npy_folder(tmp_path / "bands", bands=5, size=32)
    rgb = make_rgb_folder(tmp_path / "rgb", size=32)
    on_bands = resolve_config(_config(bands, tmp_path / "a", method=name, local_crops=2), data_from_config(
        _config(bands, tmp_path / "a", method=name)))
    on_rgb = resolve_config(_config(rgb, tmp_path / "b", method=name, local_crops=2), data_from_config(
        _config(rgb, tmp_path / "b", method=name)))
    assert len(on_bands.views) == len(on_rgb.views) == 4
    assert any(v["color_jitter"] > 0 for v in on_rgb.views)  # so that the next line tests something
    for band_view, rgb_view in zip(on_bands.views, on_rgb.views):
        assert (band_view["color_jitter"], band_view["grayscale"], band_view["solarize"]) == (0.0, 0.0, 0.0)
        # the band-wise defaults of spec remote_sensing.md §2 take their place, on these data only
        assert (band_view["band_dropout"], band_view["noise_sigma"]) == (0.1, [0.01, 0.05])
        assert (rgb_view["band_dropout"], rgb_view["noise_sigma"]) == (0.0, [0.0, 0.0])
        differing = {k for k in rgb_view if rgb_view[k] != band_view[k]}
        assert differing <= {"color_jitter", "grayscale", "solarize", "vflip", "size", "blur_sigma", "band_dropout",
                             "noise_sigma"}


def test_hand_set_rgb_only_views_are_refused_on_multispectral_data_before_a_run_starts(tmp_path) -> None:
    data = make_npy_folder(tmp_path / "data", bands=5, size=32)
    run = tmp_path / "run"
    views = [{"size": 32, "blur": 1.0}, {"size": 32, "color_jitter": 0.0, "grayscale": 0.0, "solarize": 0.2}]
    with pytest.raises(GeosslError, match=r"views\[0\] of the config asks for color_jitter \(0.8\), grayscale \(0.2\)"):
        pretrain(_config(data, run, method="simclr", views=views, method_args={"hidden_dim": 32, "projection_dim": 16}))
    assert not run.exists()
    views[0].update(color_jitter=0.0, grayscale=0.0)
    with pytest.raises(GeosslError, match=r"views\[1\] of the config asks for solarize \(0.2\)"):
        pretrain(_config(data, run, method="simclr", views=views, method_args={"hidden_dim": 32, "projection_dim": 16}))
    assert not run.exists()
    # Allowed, they are skipped and the run trains; the saved config keeps the views as given.
    allowed = [{**v, "color_jitter": 0.8, "allow_rgb_only": True} for v in views]
    pretrain(_config(data, run, method="simclr", views=allowed, method_args={"hidden_dim": 32, "projection_dim": 16}))
    saved = yaml.safe_load((run / "config.yaml").read_text())["views"]
    assert [(v["color_jitter"], v["allow_rgb_only"]) for v in saved] == [(0.8, True), (0.8, True)]


def test_every_methods_default_views_are_accepted_on_multispectral_data(tmp_path) -> None:
    data = make_npy_folder(tmp_path / "data", bands=5, size=32)
    splits = data_from_config(_config(data, tmp_path / "run", method="simclr"))
    for name in sorted(METHODS):
        resolved = resolve_config(_config(data, tmp_path / "run", method=name), splits)
        assert all(not v["color_jitter"] and not v["grayscale"] and not v["solarize"] for v in resolved.views), name


def test_a_run_saved_before_a_view_option_existed_resumes(tmp_path) -> None:
    from geossl.train.config import config_differences

    data = make_rgb_folder(tmp_path / "data", size=32)
    run = tmp_path / "run"
    config = _config(data, run, method="simclr", method_args={"hidden_dim": 32, "projection_dim": 16})
    pretrain(config)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    older = {**saved, "views": [{k: v for k, v in view.items() if k not in ("solarize", "allow_rgb_only")}
                                for view in saved["views"]]}
    assert config_differences(older, saved) == []
    (run / "config.yaml").write_text(yaml.safe_dump(older, sort_keys=False))
    assert pretrain(config.merged({"epochs": 2})).resumed
    # A view option off its default is still a different run.
    changed = {**saved, "views": [{**saved["views"][0], "solarize": 0.2}, saved["views"][1]]}
    assert [d.split(":")[0] for d in config_differences(changed, saved)] == ["views"]
