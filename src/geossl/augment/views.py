"""Batched, device-side view generation for any number of bands.

Views are made on whole batches of tensors (B, C, H, W), on the training device, instead of per
image in DataLoader workers: on a 2-core CPU this removes the data-loading bottleneck, and on a GPU
the augmentations cost almost nothing. Every random draw is per sample, so each image of the batch
gets its own crop, flip and jitter, as with per-image transforms.

Pipeline of :class:`ViewAugment` (raw values in, normalised values out):

1. ``x * value_scale``                          (uint8 → [0, 1], S2 L2A uint16 → reflectance)
2. random resized crop + flips (+ rot90), one ``grid_sample`` per batch
3. RGB only: colour jitter (brightness, contrast, saturation, hue), random grayscale (SimCLR,
   Chen et al. 2020, App. A), Gaussian blur and solarisation (BYOL, Grill et al. 2020, App. B);
   jitter, grayscale and solarisation are not defined for other data, where a view that asks for
   them is an error unless it sets ``allow_rgb_only`` (spec ``remote_sensing.md`` §2)
4. non-RGB, opt-in: SAR speckle on backscatter in dB (:func:`geossl.augment.spectral.sar_speckle`)
5. per-band normalisation with the dataset's mean and std
6. non-RGB: band-wise gain/offset jitter, the optional Gaussian blur, Gaussian noise and band dropout
   (:mod:`geossl.augment.spectral`, spec ``remote_sensing.md`` §2), the spectrally safe substitutes for colour
   jitter; the engine's default views on such data turn on the spec's noise and band dropout
   (:meth:`ViewConfig.with_spectral_defaults`)

The blur is linear and the normalisation a per-band affine map, so blurring before or after
normalising gives the same view; on RGB it comes before the solarisation, as in BYOL's pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F

from geossl.augment.spectral import band_dropout, gaussian_noise, sar_speckle, spectral_jitter, uniform
from geossl.errors import GeosslError


#: The Gaussian blur's σ range of SimCLR, BYOL, SwAV and DINO (Chen et al. 2020, App. A), in pixels of 224-px views.
PAPER_BLUR_SIGMA = (0.1, 2.0)


def paper_blur_sigma(image_size: int) -> tuple[float, float]:
    """The papers' blur σ range, 0.1-2.0 px at 224 px, scaled to images of ``image_size`` px (floored at 0.1 px).

    The papers' σ is in pixels of 224-px crops (the same σ on their 96-px local crops, which keep the pixel size of a
    224-px crop of the same image). At 64 px an unscaled σ of 2 px would blur 3.5 times as much of the image as the
    papers do; scaled, the range is 0.1-0.57 px.

    Args:
        image_size: side of the global views, in pixels.
    """
    low, high = PAPER_BLUR_SIGMA
    return (low, max(low, high * image_size / 224))


#: The :class:`ViewConfig` probabilities of operations defined for 8-bit RGB only.
RGB_ONLY = ("color_jitter", "grayscale", "solarize")

#: Band dropout probability and Gaussian noise std range of spec ``remote_sensing.md`` §2 for optical bands that are
#: not 8-bit RGB: what :meth:`ViewConfig.with_spectral_defaults` sets (not measured here: no large multispectral set).
SPECTRAL_DEFAULTS = {"band_dropout": 0.1, "noise_sigma": (0.01, 0.05)}


@dataclass
class ViewConfig:
    """Parameters of one view distribution. Defaults follow SimCLR's small-image recipe.

    Attributes:
        size: output side in pixels (None: the input size).
        crop_scale: range of the crop area as a fraction of the image (RandomResizedCrop).
        crop_ratio: range of the crop aspect ratio.
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip (overhead imagery has no canonical orientation).
        rot90: draw a random multiple of 90° (overhead imagery).
        color_jitter: probability of colour jitter (RGB only, see ``allow_rgb_only``).
        color_strength: SimCLR strength s: brightness, contrast, saturation 0.8 s and hue 0.2 s.
        color_amounts: brightness, contrast, saturation and hue amounts (torchvision ``ColorJitter``'s arguments),
            instead of those of ``color_strength``; e.g. BYOL's (0.4, 0.4, 0.2, 0.1).
        grayscale: probability of converting to grayscale (RGB only).
        spectral_gain: per-band multiplicative jitter range (non-RGB), in normalised units.
        spectral_offset: std of the per-band additive jitter (non-RGB), in normalised units.
        band_dropout: probability of zeroing each band (non-RGB; at least one band is kept). Off here; the engine's
            default views on non-RGB data use the spec's 0.1 (:meth:`with_spectral_defaults`).
        noise_sigma: range of the std of additive Gaussian noise (non-RGB), one std per image, in normalised units;
            (0, 0) is off. Off here; the engine's default views on non-RGB data use the spec's (0.01, 0.05).
        speckle: probability of SAR speckle, multiplicative Gamma noise on linear power
            (:func:`~geossl.augment.spectral.sar_speckle`); non-RGB, and the scaled values must be backscatter in
            dB, as Sentinel-1 patches. Set it by hand for SAR data, with the optical jitter, noise and dropout off.
        speckle_looks: inclusive range of the speckle's number of looks L, integers >= 1 (spec: 4-10).
        blur: probability of a Gaussian blur.
        blur_sigma: range of the blur's standard deviation, in pixels of the output view (the papers' 0.1-2.0 px
            are for 224-px views: the methods scale them with :func:`paper_blur_sigma`).
        solarize: probability of solarisation (RGB only): values of at least 0.5 become 1 − value, as
            torchvision's ``solarize(threshold=0.5)`` on images in [0, 1] (BYOL, Grill et al. 2020, App. B).
        allow_rgb_only: what a view that asks for colour jitter, grayscale or solarisation does on data that are not
            8-bit RGB, where those are not defined (a jittered multispectral image "has no guarantee" to be a
            plausible one of the same class, spec ``remote_sensing.md`` §2): False (default), :class:`ViewAugment`
            refuses it with an error; True, they are skipped on such data. The methods' default views leave them
            out on such data (:meth:`without_rgb_only`), so that only views set by hand need this.
    """

    size: int | None = None
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    vflip: float = 0.0
    rot90: bool = False
    color_jitter: float = 0.8
    color_strength: float = 0.5
    grayscale: float = 0.2
    spectral_gain: tuple[float, float] = (0.9, 1.1)
    spectral_offset: float = 0.02
    band_dropout: float = 0.0
    noise_sigma: tuple[float, float] = (0.0, 0.0)
    speckle: float = 0.0
    speckle_looks: tuple[int, int] = (4, 10)
    blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    color_amounts: tuple[float, float, float, float] | None = None
    solarize: float = 0.0
    allow_rgb_only: bool = False

    def __post_init__(self) -> None:
        if self.color_amounts is not None and len(self.color_amounts) != 4:
            raise GeosslError(
                f"color_amounts takes 4 numbers (brightness, contrast, saturation, hue), got {list(self.color_amounts)}"
            )
        for name in ("solarize", "band_dropout", "speckle"):
            if not 0 <= getattr(self, name) <= 1:
                raise GeosslError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        lo, hi = self.noise_sigma
        if not 0 <= lo <= hi:
            raise GeosslError(f"noise_sigma is a range [low, high] with 0 <= low <= high, got {list(self.noise_sigma)}")
        lo, hi = self.speckle_looks
        if int(lo) != lo or int(hi) != hi or not 1 <= lo <= hi:
            raise GeosslError(
                f"speckle_looks is a range of whole numbers of looks [low, high] with 1 <= low <= high, "
                f"got {list(self.speckle_looks)}"
            )

    def jitter_amounts(self) -> tuple[float, float, float, float]:
        """Brightness, contrast, saturation and hue amounts of the colour jitter."""
        if self.color_amounts is not None:
            return self.color_amounts
        s = self.color_strength
        return (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)

    def rgb_only_operations(self) -> list[str]:
        """The fields of the RGB-only operations this view applies with a non-zero probability, in :data:`RGB_ONLY`."""
        return [name for name in RGB_ONLY if getattr(self, name) > 0]

    def without_rgb_only(self) -> ViewConfig:
        """This view with its RGB-only operations (colour jitter, grayscale, solarisation) off: what it does on data
        that are not 8-bit RGB."""
        return replace(self, **{name: 0.0 for name in RGB_ONLY})

    def with_spectral_defaults(self) -> ViewConfig:
        """This view with the spec's band dropout (p 0.1) and Gaussian noise (σ 0.01-0.05) where it leaves them off:
        the band-wise defaults of spec ``remote_sensing.md`` §2 for optical data that are not 8-bit RGB."""
        changes = {}
        if self.band_dropout == 0:
            changes["band_dropout"] = SPECTRAL_DEFAULTS["band_dropout"]
        if self.noise_sigma[1] == 0:
            changes["noise_sigma"] = SPECTRAL_DEFAULTS["noise_sigma"]
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> ViewConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise GeosslError(f"unknown view option(s) {sorted(unknown)}; known: {sorted(known)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


@dataclass
class Normalization:
    """Raw values → network input: ``(x · value_scale − mean) / std`` per band.

    Attributes:
        mean: per-band mean in scaled units, length C.
        std: per-band std in scaled units, length C.
        value_scale: factor from raw file values to scaled units (1/255 for 8-bit images).
    """

    mean: list[float]
    std: list[float]
    value_scale: float = 1.0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (x.device, x.dtype)
        if key not in self._cache:
            mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1).clamp_min(1e-8)
            self._cache[key] = (mean, std)
        return self._cache[key]

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """Raw (B, C, H, W) → float scaled units."""
        if x.shape[1] != len(self.mean):
            raise GeosslError(
                f"the images have {x.shape[1]} bands but the normalisation statistics have {len(self.mean)}; "
                "use data with the band count the model was trained on"
            )
        return x.float() * self.value_scale

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled (B, C, H, W) → normalised."""
        mean, std = self._stats(x)
        return (x - mean) / std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Raw (B, C, H, W) → normalised float (B, C, H, W): the evaluation-time preprocessing."""
        return self.normalize(self.scale(x))


def _crop_flip_grid(batch: int, size: int, cfg: ViewConfig, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Sampling grid (B, size, size, 2) of a random resized crop with flips and rot90."""
    rand = lambda *s: torch.rand(*s, generator=generator, device=device)  # noqa: E731
    area = cfg.crop_scale[0] + (cfg.crop_scale[1] - cfg.crop_scale[0]) * rand(batch)
    log_r = math.log(cfg.crop_ratio[0]) + (math.log(cfg.crop_ratio[1]) - math.log(cfg.crop_ratio[0])) * rand(batch)
    ratio = torch.exp(log_r)
    # Half-widths in normalised coordinates [-1, 1]; clamped instead of torchvision's rejection loop.
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (1 - w) * (2 * rand(batch) - 1)
    cy = (1 - h) * (2 * rand(batch) - 1)
    sx = torch.where(rand(batch) < cfg.hflip, -w, w)
    sy = torch.where(rand(batch) < cfg.vflip, -h, h)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 1, 1] = sx, sy
    theta[:, 0, 2], theta[:, 1, 2] = cx, cy
    if cfg.rot90:
        k = torch.randint(0, 4, (batch,), generator=generator, device=device).float() * (math.pi / 2)
        cos, sin = torch.cos(k).round(), torch.sin(k).round()
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], 1)  # (B, 2, 2)
        theta[:, :, :2] = theta[:, :, :2] @ rot
    return F.affine_grid(theta, [batch, 1, size, size], align_corners=False)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of RGB (B, 3, H, W) → (B, 1, H, W)."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _color_jitter(
    x: torch.Tensor, amounts: tuple[float, float, float, float], generator: torch.Generator | None
) -> torch.Tensor:
    """Colour jitter on RGB in [0, 1], in a fixed order: brightness, contrast, saturation factors drawn from
    [1 − a, 1 + a] and a hue shift from [−a, a] turns, with ``amounts`` (a_b, a_c, a_s, a_h) (SimCLR's strength s:
    0.8 s, 0.8 s, 0.8 s, 0.2 s).

    Hue is rotated in the YIQ chroma plane, a linear and batched equivalent of the HSV shift.
    """
    b, dev = x.shape[0], x.device
    a_b, a_c, a_s, a_h = amounts
    x = (x * uniform((b, 1, 1, 1), 1 - a_b, 1 + a_b, x, generator)).clamp(0, 1)
    mean = _grayscale(x).mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * uniform((b, 1, 1, 1), 1 - a_c, 1 + a_c, x, generator) + mean).clamp(0, 1)
    gray = _grayscale(x)
    x = ((x - gray) * uniform((b, 1, 1, 1), 1 - a_s, 1 + a_s, x, generator) + gray).clamp(0, 1)
    angle = uniform((b, 1, 1, 1), -a_h, a_h, x, generator).view(b) * 2 * math.pi
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=dev, dtype=x.dtype)
    from_yiq = torch.linalg.inv(to_yiq)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(b, 3, 3, device=dev, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    mat = from_yiq @ rot @ to_yiq  # (B, 3, 3)
    x = torch.einsum("bij,bjhw->bihw", mat, x).clamp(0, 1)
    return x


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma (B,), grouped convolution."""
    b, c, h, w = x.shape
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    radius = min(radius, (min(h, w) - 1) // 2) if min(h, w) > 2 else 1
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.view(-1, 1).to(x.dtype) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, K)
    kernel = kernel.repeat_interleave(c, dim=0)  # (B*C, K)
    flat = x.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel.view(b * c, 1, 1, -1), groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel.view(b * c, 1, -1, 1), groups=b * c)
    return flat.view(b, c, h, w)


def _random_blur(x: torch.Tensor, cfg: ViewConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian blur of each image with probability ``cfg.blur``, σ uniform in ``cfg.blur_sigma``."""
    if cfg.blur <= 0:
        return x
    b, dev = x.shape[0], x.device
    sigma = uniform((b,), *cfg.blur_sigma, x, generator)
    apply = torch.rand(b, 1, 1, 1, generator=generator, device=dev) < cfg.blur
    return torch.where(apply, _gaussian_blur(x, sigma), x)


def check_rgb_only(config: ViewConfig, rgb: bool, name: str = "the view") -> None:
    """Refuse a view that asks for RGB-only operations on data that are not 8-bit RGB, unless it allows skipping them.

    Spec ``remote_sensing.md`` §2: colour jitter, grayscale and solarisation raise an error on other data unless
    ``allow_rgb_only`` is set.

    Args:
        config: the view.
        rgb: whether the data are 8-bit RGB (:attr:`geossl.data.catalog.DataSplits.is_rgb`).
        name: how the error names the view, e.g. ``"view 1"``.

    Raises:
        GeosslError: ``config`` asks for one of them, the data are not RGB and ``config.allow_rgb_only`` is False.
    """
    asked = config.rgb_only_operations()
    if rgb or config.allow_rgb_only or not asked:
        return
    raise GeosslError(
        f"{name} asks for {', '.join(f'{a} ({getattr(config, a)})' for a in asked)}, defined for 8-bit RGB only, "
        f"but the data are not 8-bit RGB; set {', '.join(f'{a}: 0' for a in asked)} in it, "
        "or allow_rgb_only: true to skip them on these data"
    )


def check_speckle(config: ViewConfig, rgb: bool, name: str = "the view") -> None:
    """Refuse SAR speckle on 8-bit RGB data, whose values are not backscatter in dB.

    Raises:
        GeosslError: ``config.speckle`` > 0 and the data are 8-bit RGB.
    """
    if rgb and config.speckle > 0:
        raise GeosslError(
            f"{name} asks for speckle ({config.speckle}), SAR speckle on backscatter in dB, but the data are "
            "8-bit RGB; set speckle: 0 in it"
        )


def check_view(config: ViewConfig, rgb: bool, name: str = "the view") -> None:
    """Refuse a view that asks for operations the data do not support: :func:`check_rgb_only`, :func:`check_speckle`."""
    check_rgb_only(config, rgb, name)
    check_speckle(config, rgb, name)


class ViewAugment:
    """One random view of a batch: raw images in, normalised augmented images out.

    Args:
        config: the view distribution.
        normalization: band statistics and value scale of the data.
        rgb: whether the data are 3-band RGB in [0, 1] after scaling, which enables colour
            jitter, grayscale and solarisation; for any other data a view that asks for those three is refused
            (:func:`check_rgb_only`) unless ``config.allow_rgb_only``, which skips them, and the band-wise jitter is
            used instead.

    Raises:
        GeosslError: see :func:`check_view`.

    Shapes:
        __call__(x (B, C, H, W) raw, generator=None) -> (B, C, S, S) float, S = config.size or H.
    """

    def __init__(self, config: ViewConfig, normalization: Normalization, rgb: bool) -> None:
        check_view(config, rgb)
        self.config = config
        self.normalization = normalization
        self.rgb = rgb

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        cfg = self.config
        b, c, h, w = x.shape
        size = cfg.size or h
        dev = x.device
        x = self.normalization.scale(x)
        x = F.grid_sample(x, _crop_flip_grid(b, size, cfg, dev, generator), mode="bilinear", padding_mode="reflection", align_corners=False)
        if self.rgb and c == 3:
            if cfg.color_jitter > 0:
                apply = torch.rand(b, 1, 1, 1, generator=generator, device=dev) < cfg.color_jitter
                x = torch.where(apply, _color_jitter(x, cfg.jitter_amounts(), generator), x)
            if cfg.grayscale > 0:
                apply = torch.rand(b, 1, 1, 1, generator=generator, device=dev) < cfg.grayscale
                x = torch.where(apply, _grayscale(x).expand(-1, 3, -1, -1), x)
            x = _random_blur(x, cfg, generator)
            if cfg.solarize > 0:
                apply = torch.rand(b, 1, 1, 1, generator=generator, device=dev) < cfg.solarize
                x = torch.where(apply & (x >= 0.5), 1 - x, x)
            return self.normalization.normalize(x)
        x = sar_speckle(x, cfg.speckle, cfg.speckle_looks, generator)
        x = self.normalization.normalize(x)
        x = spectral_jitter(x, cfg.spectral_gain, cfg.spectral_offset, generator)
        # Blur before noise, so that the noise keeps its std; dropout last, so that a dropped band stays at its mean.
        x = _random_blur(x, cfg, generator)
        x = gaussian_noise(x, cfg.noise_sigma, generator)
        return band_dropout(x, cfg.band_dropout, generator)


class MultiViewAugment:
    """Several views of the same batch, one :class:`ViewAugment` each (e.g. SimCLR's two views).

    Shapes:
        __call__(x (B, C, H, W) raw) -> list of V tensors (B, C, S_v, S_v).
    """

    def __init__(self, augments: Sequence[ViewAugment]) -> None:
        self.augments = list(augments)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        return [aug(x, generator) for aug in self.augments]
