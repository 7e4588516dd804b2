import pytest
import torch

from geossl.augment.views import MultiViewAugment, Normalization, ViewAugment, ViewConfig, _gaussian_blur
from geossl.errors import GeosslError


def _identity_config(**overrides):
    kw = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0, vflip=0.0, color_jitter=0.0, grayscale=0.0,
              spectral_gain=(1.0, 1.0), spectral_offset=0.0)
    return ViewConfig(**{**kw, **overrides})


def test_identity_view_equals_normalisation():
    norm = Normalization([0.5, 0.4, 0.3], [0.2, 0.2, 0.2], 1 / 255)
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    out = ViewAugment(_identity_config(), norm, rgb=True)(x)
    assert torch.allclose(out, norm(x), atol=1e-5)


def test_forced_horizontal_flip_mirrors_the_image():
    norm = Normalization([0.0], [1.0], 1.0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = ViewAugment(_identity_config(hflip=1.0), norm, rgb=False)(x)
    assert torch.allclose(out, x.flip(-1), atol=1e-5)


def test_views_differ_per_sample_and_keep_shape_for_any_band_count():
    norm = Normalization([0.0] * 7, [1.0] * 7, 1e-4)
    x = torch.rand(8, 7, 32, 32) * 10000
    cfg = ViewConfig(size=24, band_dropout=0.2).without_rgb_only()
    aug = MultiViewAugment([ViewAugment(cfg, norm, rgb=False)] * 2)
    g = torch.Generator().manual_seed(0)
    v1, v2 = aug(x, g)
    assert v1.shape == (8, 7, 24, 24) and torch.isfinite(v1).all()
    assert not torch.allclose(v1, v2)
    # Same image twice in a batch gets different crops.
    same = ViewAugment(ViewConfig().without_rgb_only(), norm, rgb=False)(x[:1].repeat(2, 1, 1, 1), g)
    assert not torch.allclose(same[0], same[1])


def test_seeded_views_are_reproducible():
    norm = Normalization([0.5] * 3, [0.25] * 3, 1 / 255)
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    aug = ViewAugment(ViewConfig(blur=0.5), norm, rgb=True)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_colour_jitter_stays_in_range_before_normalisation():
    norm = Normalization([0.0] * 3, [1.0] * 3, 1 / 255)
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = ViewAugment(ViewConfig(color_jitter=1.0, color_strength=1.0, grayscale=0.5), norm, rgb=True)(x)
    assert out.min() >= 0 and out.max() <= 1


def test_blur_preserves_constant_images_and_mean():
    x = torch.full((2, 3, 16, 16), 0.7)
    assert torch.allclose(_gaussian_blur(x, torch.tensor([0.5, 2.0])), x, atol=1e-6)


def test_band_count_mismatch_is_a_clear_error():
    norm = Normalization([0.0] * 3, [1.0] * 3)
    with pytest.raises(GeosslError, match="4 bands"):
        norm(torch.rand(1, 4, 8, 8))


def test_view_config_round_trip_and_unknown_key():
    cfg = ViewConfig(size=32, crop_scale=(0.3, 1.0))
    assert ViewConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(GeosslError, match="unknown view option"):
        ViewConfig.from_dict({"crop_size": 3})


def test_solarisation_matches_torchvision_on_rgb_and_skips_other_bands():
    from torchvision.transforms.v2 import functional as TF

    norm = Normalization([0.5, 0.4, 0.3], [0.2, 0.2, 0.2], 1 / 255)
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    out = ViewAugment(_identity_config(solarize=1.0), norm, rgb=True)(x)
    expected = norm.normalize(TF.solarize(x.float() / 255, threshold=0.5))
    assert torch.allclose(out, expected, atol=1e-5)
    assert not torch.allclose(out, norm(x), atol=1e-3)
    # Solarisation is defined for intensities in [0, 1]: on other data it is refused, or skipped if allowed.
    with pytest.raises(GeosslError, match=r"solarize \(1.0\).*8-bit RGB"):
        ViewAugment(_identity_config(solarize=1.0), norm, rgb=False)
    other = ViewAugment(_identity_config(solarize=1.0, allow_rgb_only=True), norm, rgb=False)(x)
    assert torch.allclose(other, norm(x), atol=1e-5)


def test_solarisation_probability_is_per_image():
    norm = Normalization([0.0] * 3, [1.0] * 3, 1.0)
    x = torch.full((400, 3, 4, 4), 0.8)
    out = ViewAugment(_identity_config(solarize=0.2), norm, rgb=True)(x, torch.Generator().manual_seed(0))
    solarized = torch.isclose(out, torch.tensor(0.2)).all(dim=(1, 2, 3))
    assert torch.isclose(out, torch.tensor(0.8)).all(dim=(1, 2, 3)).logical_or(solarized).all()
    assert 0.13 < solarized.float().mean() < 0.27


def test_colour_amounts_of_simclr_strength_give_the_same_views():
    norm = Normalization([0.5] * 3, [0.25] * 3, 1 / 255)
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    by_strength = ViewAugment(ViewConfig(color_jitter=1.0, color_strength=0.5), norm, rgb=True)
    by_amounts = ViewAugment(ViewConfig(color_jitter=1.0, color_amounts=(0.4, 0.4, 0.4, 0.1)), norm, rgb=True)
    a = by_strength(x, torch.Generator().manual_seed(5))
    b = by_amounts(x, torch.Generator().manual_seed(5))
    assert torch.allclose(a, b, atol=1e-6)


def test_saturation_amount_bounds_the_saturation_factor():
    norm = Normalization([0.0] * 3, [1.0] * 3, 1.0)
    # Mid-range colours, so that no factor in [0.8, 1.2] clamps.
    x = 0.4 + 0.2 * torch.rand(256, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    cfg = _identity_config(color_jitter=1.0, color_amounts=(0.0, 0.0, 0.2, 0.0))
    out = ViewAugment(cfg, norm, rgb=True)(x, torch.Generator().manual_seed(2))
    gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    chroma_in, chroma_out = (x - gray).flatten(1), (out - gray).flatten(1)
    factor = (chroma_in * chroma_out).sum(1) / (chroma_in * chroma_in).sum(1)
    assert torch.allclose(chroma_out, factor[:, None] * chroma_in, atol=1e-4)
    assert factor.min() >= 0.8 - 1e-4 and factor.max() <= 1.2 + 1e-4
    assert factor.min() < 0.85 and factor.max() > 1.15


def test_rgb_blur_before_normalisation_equals_blur_after():
    # The blur is linear and the normalisation a per-band affine map, so the RGB path (blur, then normalise) and the
    # band-wise path (normalise, then blur) give one view with the same draws.
    norm = Normalization([0.5, 0.4, 0.3], [0.2, 0.3, 0.25], 1 / 255)
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    cfg = _identity_config(blur=1.0, blur_sigma=(0.5, 2.0))
    rgb = ViewAugment(cfg, norm, rgb=True)(x, torch.Generator().manual_seed(4))
    bands = ViewAugment(cfg, norm, rgb=False)(x, torch.Generator().manual_seed(4))
    assert torch.allclose(rgb, bands, atol=1e-5)
    assert not torch.allclose(rgb, norm(x), atol=1e-3)


def test_new_view_options_round_trip_and_are_checked():
    cfg = ViewConfig(color_amounts=(0.4, 0.4, 0.2, 0.1), solarize=0.2)
    assert ViewConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(GeosslError, match="4 numbers"):
        ViewConfig(color_amounts=(0.4, 0.4, 0.2))
    with pytest.raises(GeosslError, match="probability"):
        ViewConfig(solarize=1.5)


def test_rgb_only_operations_on_other_data_are_refused_unless_allowed():
    norm = Normalization([0.0] * 4, [1.0] * 4, 1e-4)
    x = torch.rand(3, 4, 8, 8) * 10000
    with pytest.raises(GeosslError) as error:
        ViewAugment(ViewConfig(), norm, rgb=False)
    message = str(error.value)
    assert "color_jitter (0.8), grayscale (0.2)" in message and "color_jitter: 0, grayscale: 0" in message
    assert "allow_rgb_only: true" in message and "\n" not in message
    with pytest.raises(GeosslError, match="solarize"):
        ViewAugment(ViewConfig(color_jitter=0.0, grayscale=0.0, solarize=0.1), norm, rgb=False)
    # Allowed, they are skipped: the same view as without them, draw for draw.
    skipped = ViewAugment(ViewConfig(allow_rgb_only=True), norm, rgb=False)(x, torch.Generator().manual_seed(1))
    without = ViewAugment(ViewConfig().without_rgb_only(), norm, rgb=False)(x, torch.Generator().manual_seed(1))
    assert torch.equal(skipped, without)
    # On RGB data the flag changes nothing, and nothing is refused.
    rgb_norm = Normalization([0.5] * 3, [0.25] * 3, 1 / 255)
    image = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    plain = ViewAugment(ViewConfig(solarize=0.5), rgb_norm, rgb=True)(image, torch.Generator().manual_seed(2))
    flagged = ViewAugment(ViewConfig(solarize=0.5, allow_rgb_only=True), rgb_norm, rgb=True)
    assert torch.equal(plain, flagged(image, torch.Generator().manual_seed(2)))


def test_without_rgb_only_turns_off_exactly_the_rgb_only_operations():
    cfg = ViewConfig(size=32, blur=0.5, solarize=0.2, band_dropout=0.1)
    off = cfg.without_rgb_only()
    assert off.rgb_only_operations() == [] and cfg.rgb_only_operations() == ["color_jitter", "grayscale", "solarize"]
    assert (off.color_jitter, off.grayscale, off.solarize) == (0.0, 0.0, 0.0)
    assert off.to_dict() | {"color_jitter": 0.8, "grayscale": 0.2, "solarize": 0.2} == cfg.to_dict()
