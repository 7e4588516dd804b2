"""Stratified, seeded splits: exact sizes, disjointness, determinism and per-class proportions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geossl.data.splits import describe_split, stratified_split


@pytest.fixture
def eurosat_labels(eurosat_counts) -> torch.Tensor:
    """Labels with EuroSAT's real per-class counts (27,000 images), in class-folder order."""
    return torch.cat([torch.full((n,), c) for c, n in enumerate(eurosat_counts.values())])


def check_partition(parts: tuple[torch.Tensor, ...], n: int) -> None:
    for p in parts:
        assert p.dtype == torch.long and torch.equal(p, p.sort().values)  # sorted index tensors
    joined = torch.cat(parts)
    assert joined.numel() == n and torch.equal(joined.sort().values, torch.arange(n))  # disjoint, complete


def test_eurosat_exact_counts_and_stratified(eurosat_labels, eurosat_counts):
    parts = stratified_split(eurosat_labels, (0.6, 0.2, 0.2), seed=0)
    assert [len(p) for p in parts] == [16200, 5400, 5400]
    check_partition(parts, 27000)
    for c, n in enumerate(eurosat_counts.values()):
        for p, f in zip(parts, (0.6, 0.2, 0.2)):
            assert abs(int((eurosat_labels[p] == c).sum()) - n * f) <= 1
    assert (
        describe_split(parts, (0.6, 0.2, 0.2), 0)
        == "stratified 60/20/20 train/val/test split, seed 0: 16200/5400/5400 images"
    )


def test_deterministic_per_seed_and_different_across_seeds(eurosat_labels):
    a = stratified_split(eurosat_labels, seed=0)
    b = stratified_split(eurosat_labels.clone(), seed=0)
    c = stratified_split(eurosat_labels, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert [len(x) for x in a] == [len(x) for x in c]
    # Not a trivial "first 60% of each class" cut.
    first_class = a[0][eurosat_labels[a[0]] == 0]
    assert not torch.equal(first_class, torch.arange(1800))


def test_two_way_and_zero_val(eurosat_labels):
    train, test = stratified_split(eurosat_labels, (0.8, 0.2), seed=0)
    assert (len(train), len(test)) == (21600, 5400)
    check_partition((train, test), 27000)
    parts = stratified_split(eurosat_labels, (0.8, 0.0, 0.2), seed=0)
    assert [len(p) for p in parts] == [21600, 0, 5400]
    expected = "stratified 80/20 train/test split, seed 0: 21600/5400 images"
    assert describe_split((train, test), (0.8, 0.2), 0) == expected


def test_unlabelled_is_plain_seeded_random_split():
    labels = torch.full((1003,), -1)
    parts = stratified_split(labels, (0.7, 0.15, 0.15), seed=5)
    sizes = [len(p) for p in parts]
    assert sum(sizes) == 1003 and all(abs(s - 1003 * f) < 1 for s, f in zip(sizes, (0.7, 0.15, 0.15)))
    check_partition(parts, 1003)
    assert not torch.equal(parts[0], torch.arange(sizes[0]))  # shuffled
    assert describe_split(parts, (0.7, 0.15, 0.15), 5, stratified=False).startswith("random 70/15/15")


def test_random_small_label_sets_keep_totals_and_class_shares():
    rng = np.random.default_rng(0)
    for trial in range(300):
        sizes = rng.integers(0, 25, rng.integers(1, 9))
        labels = np.repeat(np.arange(len(sizes)), sizes)
        if len(labels) == 0:
            continue
        fractions = rng.dirichlet(np.ones(3 if trial % 2 else 2))
        fractions /= fractions.sum()
        parts = stratified_split(labels, fractions, seed=trial)
        check_partition(parts, len(labels))
        for p, f in zip(parts, fractions):
            assert abs(len(p) - len(labels) * f) < 1 + 1e-9  # totals: rounded, not drifted
            for c, n in enumerate(sizes):
                assert abs(int((labels[p.numpy()] == c).sum()) - n * f) < 1 + 1e-9


def test_adding_a_class_does_not_reshuffle_the_others():
    base = np.repeat([0, 1], [50, 40])
    more = np.concatenate([base, np.full(30, 2)])
    a = stratified_split(base, seed=0)
    b = stratified_split(more, seed=0)
    for x, y in zip(a, b):
        assert torch.equal(x, y[y < 90])
