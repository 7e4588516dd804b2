"""Data layer: image folders, GeoTIFF stacks, torchvision sets and the built-in EuroSAT sample.

Images are (C, H, W) tensors in raw file units (uint8 for 8-bit files, float32 otherwise); ``value_scale``
converts them to scaled units, in which the per-band ``mean``/``std`` are expressed. The CLI only calls
:func:`load_data`.
"""

from geossl.data.base import ImageDataset, TensorImageDataset
from geossl.data.catalog import DataSplits, list_datasets, load_data
from geossl.data.folder import load_image_folder
from geossl.data.splits import stratified_split
from geossl.data.stats import band_statistics

__all__ = [
    "DataSplits",
    "ImageDataset",
    "TensorImageDataset",
    "band_statistics",
    "list_datasets",
    "load_data",
    "load_image_folder",
    "stratified_split",
]
