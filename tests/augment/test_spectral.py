import math

import pytest
import torch

from geossl.augment.spectral import DB_PER_NEPER, band_dropout, gaussian_noise, sar_speckle, speckle_gain
from geossl.augment.views import SPECTRAL_DEFAULTS, Normalization, ViewAugment, ViewConfig
from geossl.errors import GeosslError
from geossl.methods.simclr import SimCLR
from geossl.train.run import default_views


def _plain(**overrides) -> ViewConfig:
    """A non-RGB view that only does what ``overrides`` asks: no crop, flip or jitter."""
    kw = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0, color_jitter=0.0, grayscale=0.0,
              spectral_gain=(1.0, 1.0), spectral_offset=0.0)
    return ViewConfig(**{**kw, **overrides})


def test_gaussian_noise_has_the_drawn_std_per_image():
    x = torch.randn(64, 4, 32, 32)
    g = torch.Generator().manual_seed(0)
    fixed = gaussian_noise(x, (0.03, 0.03), g) - x
    assert fixed.mean().abs() < 1e-3
    assert fixed.std().item() == pytest.approx(0.03, rel=0.01)
    stds = (gaussian_noise(x, (0.01, 0.05), g) - x).flatten(1).std(dim=1)
    assert stds.min() > 0.01 * 0.95 and stds.max() < 0.05 * 1.05
    assert stds.max() - stds.min() > 0.02  # one std per image, spread over the range
    assert gaussian_noise(x, (0.0, 0.0), g) is x


def test_band_dropout_rate_and_keeps_a_band():
    x = torch.ones(4000, 5, 2, 2)
    out = band_dropout(x, 0.1, torch.Generator().manual_seed(1))
    dropped = (out[:, :, 0, 0] == 0).float()
    assert dropped.mean().item() == pytest.approx(0.1, abs=0.01)
    everything = band_dropout(x[:50], 1.0, torch.Generator().manual_seed(1))
    assert (everything[:, 0] == 1).all() and (everything[:, 1:] == 0).all()
    single = x[:, :1]
    assert band_dropout(single, 0.5) is single


@pytest.mark.parametrize("looks", [1, 4, 10])
def test_speckle_gain_is_gamma_with_mean_one_and_variance_one_over_looks(looks):
    gain = speckle_gain((200, 2, 32, 32), torch.full((200,), looks), torch.Generator().manual_seed(looks))
    assert (gain > 0).all()
    assert gain.mean().item() == pytest.approx(1.0, abs=0.01)
    assert gain.var().item() == pytest.approx(1 / looks, rel=0.03)
    # Third central moment of Gamma(L, 1/L): 2 / L^2 (skewness 2 / sqrt(L)), which a Gaussian gain would not match.
    assert ((gain - 1) ** 3).mean().item() == pytest.approx(2 / looks**2, rel=0.1)


def test_sar_speckle_in_db_matches_the_gamma_log_moments():
    x_db = torch.full((400, 2, 32, 32), -15.0)
    out = sar_speckle(x_db, 1.0, (4, 4), torch.Generator().manual_seed(0))
    shift = out - x_db
    # E[10 log10 g] = 10 / ln 10 (psi(L) - ln L); Var = (10 / ln 10)^2 psi'(L), for g ~ Gamma(L, 1/L).
    L = torch.tensor(4.0)
    mean = DB_PER_NEPER * (torch.special.digamma(L) - torch.log(L))
    var = DB_PER_NEPER**2 * torch.special.polygamma(1, L)
    assert shift.mean().item() == pytest.approx(mean.item(), abs=0.01)
    assert shift.var().item() == pytest.approx(var.item(), rel=0.02)
    # Mean linear power is kept.
    assert (10 ** (out / 10)).mean().item() == pytest.approx(10 ** -1.5, rel=0.01)


def test_sar_speckle_probability_and_looks_per_image():
    x_db = torch.zeros(600, 1, 64, 64)
    out = sar_speckle(x_db, 0.5, (4, 10), torch.Generator().manual_seed(2))
    touched = (out != 0).flatten(1).any(dim=1)
    assert touched.float().mean().item() == pytest.approx(0.5, abs=0.07)
    # Per image, the linear gain's variance is 1 / L with L in 4..10.
    var = (10 ** (out[touched] / 10)).flatten(1).var(dim=1)
    assert var.min() > 1 / 10 * 0.8 and var.max() < 1 / 4 * 1.2
    assert var.max() / var.min() > 1.8
    assert sar_speckle(x_db, 0.0, (4, 10)) is x_db


def test_speckle_in_a_view_acts_on_db_before_normalisation():
    norm = Normalization([-12.0, -18.0], [3.0, 4.0], 1.0)
    x = torch.full((300, 2, 16, 16), -15.0)
    g = torch.Generator().manual_seed(5)
    view = ViewAugment(_plain(speckle=1.0, speckle_looks=(5, 5)), norm, rgb=False)(x, g)
    in_db = view * torch.tensor([3.0, 4.0]).view(1, 2, 1, 1) + torch.tensor([-12.0, -18.0]).view(1, 2, 1, 1)
    L = torch.tensor(5.0)
    std = DB_PER_NEPER * math.sqrt(torch.special.polygamma(1, L).item())
    assert (in_db - x).std().item() == pytest.approx(std, rel=0.02)  # the same dB shift in both bands
    assert (in_db[:, 0] - x[:, 0]).std().item() == pytest.approx((in_db[:, 1] - x[:, 1]).std().item(), rel=0.03)


def test_speckle_on_rgb_data_is_refused_in_one_line():
    norm = Normalization([0.5] * 3, [0.25] * 3, 1 / 255)
    with pytest.raises(GeosslError) as error:
        ViewAugment(_plain(speckle=0.5), norm, rgb=True)
    assert "speckle: 0" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "field, value, message",
    [("noise_sigma", (0.05, 0.01), "noise_sigma"), ("noise_sigma", (-0.1, 0.1), "noise_sigma"),
     ("speckle_looks", (0, 4), "speckle_looks"), ("speckle_looks", (4.5, 6), "whole numbers"),
     ("speckle", 1.5, "probability"), ("band_dropout", -0.1, "probability")],
)
def test_bad_spectral_options_are_refused(field, value, message):
    with pytest.raises(GeosslError, match=message):
        ViewConfig(**{field: value})


def test_spectral_options_round_trip_through_a_dict():
    cfg = ViewConfig(noise_sigma=(0.02, 0.04), speckle=0.3, speckle_looks=(5, 8), band_dropout=0.2)
    assert ViewConfig.from_dict(cfg.to_dict()) == cfg


def test_spectral_defaults_fill_only_what_a_view_leaves_off():
    on = ViewConfig().with_spectral_defaults()
    assert (on.band_dropout, on.noise_sigma) == (SPECTRAL_DEFAULTS["band_dropout"], SPECTRAL_DEFAULTS["noise_sigma"])
    assert (on.band_dropout, on.noise_sigma) == (0.1, (0.01, 0.05))  # spec remote_sensing.md §2
    kept = ViewConfig(band_dropout=0.3, noise_sigma=(0.0, 0.02)).with_spectral_defaults()
    assert (kept.band_dropout, kept.noise_sigma) == (0.3, (0.0, 0.02))
    # The engine's default views: on RGB untouched, on other data with the spec's band-wise defaults.
    rgb = default_views(SimCLR, 64, overhead=True, local_crops=None, rgb=True)
    bands = default_views(SimCLR, 64, overhead=True, local_crops=None, rgb=False)
    assert all(v.band_dropout == 0 and v.noise_sigma == (0.0, 0.0) for v in rgb)
    assert all(v.band_dropout == 0.1 and v.noise_sigma == (0.01, 0.05) and v.rgb_only_operations() == [] for v in bands)


def test_default_multispectral_view_adds_noise_and_drops_bands():
    norm = Normalization([0.0] * 6, [1.0] * 6, 1.0)
    x = torch.zeros(500, 6, 8, 8)
    view = ViewAugment(_plain().with_spectral_defaults(), norm, rgb=False)(x, torch.Generator().manual_seed(0))
    per_band = view.flatten(2)
    dropped = (per_band == 0).all(dim=2)
    assert dropped.float().mean().item() == pytest.approx(0.1, abs=0.02)
    kept_std = per_band[~dropped].std(dim=1)
    assert kept_std.min() > 0.01 * 0.6 and kept_std.max() < 0.05 * 1.5
