"""The one data entry point of the CLI: a name or a path in, train/val/test splits with statistics out."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from geossl.data.base import UINT8_SCALE, ImageDataset, TensorImageDataset
from geossl.data.folder import load_image_folder, normalize_image_size
from geossl.data.geotiff import resample
from geossl.data.sample import SAMPLE_NAME, load_eurosat_sample
from geossl.data.splits import check_fractions, describe_split, stratified_split
from geossl.data.stats import band_statistics, cache_dir
from geossl.data.torchvision_sets import TORCHVISION_SETS, load_torchvision_dataset
from geossl.errors import GeosslError, unknown_name_error

_SAMPLE_DESCRIPTION = (
    "built-in: 1,500 EuroSAT RGB 64x64 images, 10 classes, fixed 900/300/300 train/val/test split (MIT)"
)


@dataclass
class DataSplits:
    """Everything a training run needs to know about its data.

    Attributes:
        name: "eurosat-sample", "cifar10"..., or the folder name.
        train: training split (the only one used to compute ``mean`` and ``std``).
        val: validation split, or None.
        test: test split, or None.
        classes: class names, or None when unlabelled.
        num_bands: C of every image.
        image_size: (H, W) of every image.
        value_scale: raw-to-scaled factor (1/255 for 8-bit, 1e-4 for uint16 Sentinel-2, 1.0 for float).
        mean: per-band mean in scaled units (raw * value_scale), from ``train``.
        std: per-band std in scaled units, from ``train``.
        split_description: one sentence stating the split; print it with every reported number.
        source: the folder path, or a description of where the data came from.
        unlabeled: extra unlabelled images for self-supervised pre-training (STL-10's 100,000), or None.
    """

    name: str
    train: ImageDataset
    val: ImageDataset | None
    test: ImageDataset | None
    classes: list[str] | None
    num_bands: int
    image_size: tuple[int, int]
    value_scale: float
    mean: list[float]
    std: list[float]
    split_description: str
    source: str
    unlabeled: ImageDataset | None = None

    @property
    def is_rgb(self) -> bool:
        """3 bands of 8-bit colour: photometric augmentations (colour jitter, grayscale...) are valid."""
        return self.num_bands == 3 and math.isclose(self.value_scale, UINT8_SCALE, rel_tol=1e-9)

    @property
    def has_labels(self) -> bool:
        """True when the training split has class labels (supervised evaluation is possible)."""
        return self.classes is not None and self.train.has_labels


def list_datasets() -> list[tuple[str, str]]:
    """Built-in dataset names with a one-line description each (for ``geossl info``)."""
    return [(SAMPLE_NAME, _SAMPLE_DESCRIPTION)] + [(n, f"torchvision: {d}") for n, d in TORCHVISION_SETS.items()]


def default_data_root() -> Path:
    """Where torchvision sets are looked for / downloaded: ``$GEOSSL_DATA_DIR``, default ``<cache>/datasets``."""
    env = os.environ.get("GEOSSL_DATA_DIR")
    return Path(env).expanduser() if env else cache_dir() / "datasets"


def _canonical(spec: str) -> str | None:
    """The built-in name ``spec`` refers to ("CIFAR-10" -> "cifar10", "eurosat_sample" -> ...), or None."""
    key = spec.strip().lower().replace("-", "").replace("_", "")
    for name in [SAMPLE_NAME, *TORCHVISION_SETS]:
        if key == name.replace("-", ""):
            return name
    return None


def _looks_like_path(spec: str | os.PathLike) -> bool:
    if isinstance(spec, os.PathLike):
        return True  # a Path object is never meant as a dataset name
    return any(sep in spec for sep in ("/", "\\", os.sep)) or spec.startswith(("~", ".")) or Path(spec).exists()


def _resize(dataset: TensorImageDataset, size: tuple[int, int]) -> TensorImageDataset:
    """Resize all images (bilinear, anti-aliased when shrinking), keeping dtype and metadata."""
    if dataset.image_size == size:
        return dataset
    chunks = []
    for a in range(0, len(dataset), 1024):
        out = resample(dataset.images[a : a + 1024], size)
        chunks.append(out.round_().clamp_(0, 255).to(torch.uint8) if dataset.images.dtype == torch.uint8 else out)
    fp = dataset.fingerprint()
    return TensorImageDataset(
        torch.cat(chunks),
        dataset.labels,
        classes=dataset.classes,
        value_scale=dataset.value_scale,
        band_names=dataset.band_names,
        files=dataset.files,
        fingerprint=f"{fp}|size={size}",
    )


def _nonempty(dataset: ImageDataset | None) -> ImageDataset | None:
    return dataset if dataset is not None and len(dataset) > 0 else None


def _check_same_format(train: ImageDataset, test: ImageDataset, train_path: str, test_path: str) -> ImageDataset:
    """Make the test folder compatible with the training folder (same bands, size, scale, class indices)."""
    if test.num_bands != train.num_bands:
        raise GeosslError(
            f"train images ({train_path}) have {train.num_bands} bands but test images ({test_path}) have "
            f"{test.num_bands}; give folders of the same kind of images"
        )
    if test.image_size != train.image_size:
        (h1, w1), (h2, w2) = train.image_size, test.image_size
        raise GeosslError(
            f"train images are {h1}x{w1} but test images are {h2}x{w2}; pass --image-size H W to resize both"
        )
    if not math.isclose(test.value_scale, train.value_scale, rel_tol=1e-9):
        raise GeosslError(
            f"train images ({train_path}) have value scale {train.value_scale:g} but test images ({test_path}) "
            f"{test.value_scale:g} (different file dtypes); convert them to one dtype"
        )
    if (train.classes is None) != (test.classes is None):
        labelled, flat = (train_path, test_path) if test.classes is None else (test_path, train_path)
        raise GeosslError(
            f"{labelled} has class sub-folders but {flat} does not; give both folders the same layout"
        )
    if train.classes is None or test.classes == train.classes:
        return test
    unknown = sorted(set(test.classes) - set(train.classes))
    if unknown:
        raise GeosslError(
            f"test folder {test_path} has classes missing from the training folder (e.g. '{unknown[0]}'); "
            "use the same class sub-folders in both"
        )
    # Test may lack some classes: map its label indices onto the training class list by name.
    mapping = torch.tensor([train.classes.index(c) for c in test.classes], dtype=torch.long)
    assert isinstance(test, TensorImageDataset)
    test.labels = mapping[test.labels]
    test.classes = list(train.classes)
    return test


def _check_stats(values: Sequence[float], num_bands: int, what: str) -> list[float]:
    out = [float(v) for v in values]
    if len(out) != num_bands:
        raise GeosslError(f"--{what} has {len(out)} values but the data has {num_bands} bands; give one per band")
    if not all(math.isfinite(v) for v in out) or (what == "std" and min(out) <= 0):
        raise GeosslError(f"--{what} values must be finite{' and positive' if what == 'std' else ''}, got {out}")
    return out


def load_data(
    spec: str | os.PathLike | None = None,
    *,
    root: str | os.PathLike | None = None,
    train_data: str | os.PathLike | None = None,
    test_data: str | os.PathLike | None = None,
    split: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    download: bool = False,
    image_size: tuple[int, int] | int | None = None,
    skip_corrupt: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    value_scale: float | None = None,
    progress: bool | None = None,
) -> DataSplits:
    """Load a dataset by name or path and split it.

    - ``None`` or ``"eurosat-sample"``: the built-in sample with its fixed manifest split (``split`` and
      ``seed`` are ignored).
    - ``"cifar10"``, ``"cifar100"``, ``"stl10"``: torchvision sets under ``root`` (default
      :func:`default_data_root`) with their official train/test split (no val); fetched only if ``download``.
    - a folder path (labelled or flat): split with :func:`stratified_split` (``split`` fractions, ``seed``).
    - ``train_data`` (and optionally ``test_data``) folders: used as given, no split, no val.

    A built-in name wins over a folder of the same name in the working directory; write ``./cifar10`` for the
    folder.

    Args:
        spec: name or folder path.
        root: folder of the torchvision sets.
        train_data: training folder (instead of ``spec``).
        test_data: test folder (with ``train_data``).
        split: 2 (train/test) or 3 (train/val/test) fractions summing to 1, for folders.
        seed: split seed, for folders.
        download: allow downloading torchvision sets.
        image_size: (H, W) or one int to resize all images to.
        skip_corrupt: skip unreadable image files (with a warning) instead of raising.
        mean: per-band mean in scaled units (default: computed on train, cached).
        std: per-band std in scaled units (default: computed on train, cached).
        value_scale: override the raw-to-scaled factor inferred from the file dtype (folders only).
        progress: show progress bars (default: when stderr is a terminal).

    Returns:
        The splits with their metadata and normalisation statistics.
    """
    size = normalize_image_size(image_size)
    fractions = check_fractions(split)
    folder_kw = dict(image_size=size, skip_corrupt=skip_corrupt, value_scale=value_scale, progress=progress)
    unlabeled = None

    if train_data is not None or test_data is not None:
        if spec is not None:
            raise GeosslError("give either a dataset (name or folder) or --train-data/--test-data, not both")
        if train_data is None:
            raise GeosslError("--test-data needs --train-data too (the folder to train on)")
        train = load_image_folder(train_data, **folder_kw)
        val, test = None, None
        if test_data is not None:
            test = _check_same_format(train, load_image_folder(test_data, **folder_kw), str(train_data), str(test_data))
            split_description = f"user-given train/test folders: {len(train)}/{len(test)} images (no validation split)"
        else:
            split_description = f"user-given training folder: {len(train)} images (no validation or test split)"
        name, source = Path(train_data).expanduser().resolve().name, str(Path(train_data).expanduser().resolve())
        if test_data is not None:
            source += f" (test: {Path(test_data).expanduser().resolve()})"
    elif spec is None or (isinstance(spec, str) and _canonical(spec) == SAMPLE_NAME):
        parts, manifest = load_eurosat_sample(image_size=size, progress=progress)
        train, val, test = parts["train"], parts["val"], parts["test"]
        per_class = "/".join(str(v) for v in manifest["split_per_class"].values())
        split_description = (
            f"fixed {SAMPLE_NAME} split from its manifest ({per_class} images per class, seed {manifest['seed']}): "
            f"{len(train)}/{len(val)}/{len(test)} train/val/test images"
        )
        name, source = SAMPLE_NAME, f"built-in {SAMPLE_NAME} (EuroSAT RGB subset, Helber et al. 2019, MIT)"
    elif _canonical(str(spec)) is not None and not _looks_like_path(spec):
        name = _canonical(str(spec))
        data_root = Path(root).expanduser() if root is not None else default_data_root()
        parts = load_torchvision_dataset(name, data_root, download=download)
        if size is not None:
            parts = {k: _resize(v, size) for k, v in parts.items()}
        train, val, test, unlabeled = parts["train"], None, parts["test"], parts.get("unlabeled")
        split_description = f"official {name} train/test split: {len(train)}/{len(test)} images"
        if unlabeled is not None:
            split_description += f" (+{len(unlabeled)} unlabelled images)"
        source = f"torchvision {name} under {data_root}"
    elif _looks_like_path(spec):
        path = Path(spec).expanduser()
        full = load_image_folder(path, **folder_kw)
        indices = stratified_split(full.labels, fractions, seed)
        subsets = [full.subset(i) for i in indices]
        del full  # each split holds its own copy
        train = subsets[0]
        val, test = (subsets[1], subsets[2]) if len(subsets) == 3 else (None, subsets[1])
        split_description = describe_split(indices, fractions, seed, stratified=train.classes is not None)
        name, source = path.resolve().name, str(path.resolve())
    else:
        known = [SAMPLE_NAME, *TORCHVISION_SETS]
        base = str(unknown_name_error("dataset", str(spec), known))
        raise GeosslError(f"{base} Otherwise give the path of an image folder (no folder '{spec}' exists here).")

    if len(train) == 0:
        raise GeosslError(f"the training split of {name} is empty; use more images or a larger train fraction")
    val, test = _nonempty(val), _nonempty(test)
    if mean is None or std is None:
        computed_mean, computed_std = band_statistics(train)
    mean = _check_stats(mean if mean is not None else computed_mean, train.num_bands, "mean")
    std = _check_stats(std if std is not None else computed_std, train.num_bands, "std")
    return DataSplits(
        name=name,
        train=train,
        val=val,
        test=test,
        classes=train.classes,
        num_bands=train.num_bands,
        image_size=train.image_size,
        value_scale=train.value_scale,
        mean=mean,
        std=std,
        split_description=split_description,
        source=source,
        unlabeled=unlabeled,
    )
