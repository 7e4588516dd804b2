"""The full EuroSAT RGB folder (27,000 JPEGs): counts, classes, dtype; decoding takes a few seconds."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import torch

from geossl.data import load_image_folder


def test_full_eurosat_folder(eurosat_dir, eurosat_counts):
    start = time.perf_counter()
    ds = load_image_folder(eurosat_dir)
    elapsed = time.perf_counter() - start
    print(f"decoded {len(ds)} EuroSAT images in {elapsed:.1f} s")
    assert len(ds) == 27000
    assert ds.classes == sorted(eurosat_counts)
    assert ds.images.shape == (27000, 3, 64, 64) and ds.images.dtype == torch.uint8
    assert Counter(ds.labels.tolist()) == {i: n for i, n in enumerate(eurosat_counts.values())}
    # README: mean RGB 87.8 / 97.0 / 104.0
    sums = ds.images.numpy().sum(axis=(0, 2, 3), dtype=np.int64)  # numpy casts chunk-wise: no 2.6 GB copy
    mean = torch.from_numpy(sums).double() / (27000 * 64 * 64)
    assert torch.allclose(mean, torch.tensor([87.8, 97.0, 104.0], dtype=torch.float64), atol=0.1)
