"""benchmarks/zoo_eurosat.py: the summary over seeds groups each configuration's seeds and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def zoo():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import zoo_eurosat

        yield zoo_eurosat
    finally:
        sys.path.remove(str(BENCHMARKS))


def row(label: str, gain: float, seed: int = 0, epochs: int = 10) -> dict:
    return {"method": label, "kNN gain vs random": gain, "kNN top-1": 52.0 + gain, "linear top-1": 70.0 + gain,
            "seed": seed, "epochs": epochs, "random kNN": 52.0}


def test_configuration_drops_the_seed_only(zoo) -> None:
    assert zoo.configuration("byol batch_size=64 seed=2") == "byol batch_size=64"
    assert zoo.configuration("swav seed=1 unscaled_blur") == "swav unscaled_blur"
    assert zoo.configuration("simclr") == "simclr"
    assert zoo.configuration("dino seeds=3") == "dino seeds=3"


def test_summary_groups_seeds_keeps_defaults_and_multi_seed_variants(zoo) -> None:
    rows = {r["method"]: r for r in [
        row("byol", 10.4), row("byol seed=1", 9.9, 1), row("byol seed=2", 9.7, 2),
        row("byol batch_size=64", 11.7), row("byol batch_size=64 seed=1", 10.8, 1, epochs=9),
        row("swav lr=0.1", 3.0),  # one seed of a variant: only in the table of every row
        row("simclr", 22.0),
        {"method": "moco-v2", "kNN gain vs random": "", "seed": 0},  # a row without numbers is skipped
    ]}
    summary = {r["configuration"]: r for r in zoo.summary_rows(rows)}
    assert list(summary) == ["simclr", "byol", "byol batch_size=64"]
    byol = summary["byol"]
    assert byol["seeds"] == "0, 1, 2"
    assert byol["kNN gain per seed"] == "+10.4, +9.9, +9.7"
    assert byol["mean kNN gain"] == pytest.approx(10.0)
    assert byol["mean kNN top-1"] == pytest.approx(62.0)
    assert byol["seeds over +10"] == "1 of 3"
    assert summary["byol batch_size=64"]["epochs"] == "9, 10"
    assert summary["byol batch_size=64"]["seeds over +10"] == "2 of 2"


def test_view_edits_apply_to_every_view_or_one_and_are_checked(zoo) -> None:
    from geossl.errors import GeosslError

    views = zoo.edited_views("byol", 64, None, ["color_amounts=[0.4,0.4,0.4,0.1]", "1.solarize=0.5"])
    assert [v["color_amounts"] for v in views] == [[0.4, 0.4, 0.4, 0.1]] * 2
    assert [v["solarize"] for v in views] == [0.0, 0.5]
    assert [v["blur"] for v in views] == [1.0, 0.1]  # the rest stays the method's
    with pytest.raises(GeosslError, match="view index"):
        zoo.edited_views("byol", 64, None, ["2.solarize=0.2"])
    with pytest.raises(GeosslError, match="unknown view option"):
        zoo.edited_views("byol", 64, None, ["solarise=0.2"])
    with pytest.raises(GeosslError, match="probability"):
        zoo.edited_views("byol", 64, None, ["solarize=2"])
