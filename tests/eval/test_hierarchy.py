"""Class hierarchies and hierarchical metrics (evaluation.md §8); oracles: hand-built trees and hand-computed values."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from geossl.errors import GeosslError
from geossl.eval.hierarchy import (
    EUROSAT_CLASSES,
    accuracy_at_height,
    average_hierarchical_cost,
    eurosat_hierarchy,
    hierarchical_distance_at_k,
    hierarchical_metrics,
    load_hierarchy,
    mistake_severity,
)

# root ─┬─ A ─┬─ A1 ─┬─ a   (uniform depth 3)
#       │     │      └─ b
#       │     └─ A2 ──── c
#       └─ B ──── B1 ─┬─ d
#                     └─ e
TREE = {"root": {"A": {"A1": ["a", "b"], "A2": ["c"]}, "B": {"B1": {"d": None, "e": None}}}}
PARENTS = {"a": "A1", "b": "A1", "c": "A2", "d": "B1", "e": "B1", "A1": "A", "A2": "A", "B1": "B", "A": "root",
           "B": "root"}
CLASSES = ["a", "b", "c", "d", "e"]
# Written out by hand: siblings (a, b) meet at height 1, cousins (a, c) at 2, different branches at 3 (the root).
LCA = [[0, 1, 2, 3, 3],
       [1, 0, 2, 3, 3],
       [2, 2, 0, 3, 3],
       [3, 3, 3, 0, 1],
       [3, 3, 3, 1, 0]]
PATH = [[2 * h for h in row] for row in LCA]  # siblings 2, cousins 4, different top-level branches 6


@pytest.mark.parametrize("source", [TREE, PARENTS])
def test_distances_on_hand_built_tree(source):
    h = load_hierarchy(source, CLASSES)
    assert h.root == "root"
    assert sorted(h.leaves) == CLASSES
    assert h.lca_height_matrix(CLASSES).tolist() == LCA
    assert h.tree_distance_matrix(CLASSES).tolist() == PATH
    assert h.lca("a", "c") == "A" and h.lca("b", "e") == "root" and h.lca("d", "d") == "d"
    assert h.depth("a") == 3 and h.height("root") == 3 and h.height("A2") == 1


def test_unbalanced_tree_uses_longest_downward_path_for_height():
    # root ─┬─ X ─┬─ p
    #       │     └─ Y ── q
    #       └─ r
    h = load_hierarchy({"root": {"X": ["p", {"Y": ["q"]}], "r": None}})
    assert h.height("X") == 2 and h.height("Y") == 1 and h.height("root") == 3
    assert h.lca_height("p", "q") == 2  # LCA X: height 2 although p is one edge below it
    assert h.tree_distance("p", "q") == 3
    assert h.lca_height("p", "r") == 3 and h.tree_distance("p", "r") == 3


def test_files_yaml_and_json(tmp_path):
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(TREE))
    (tmp_path / "p.json").write_text(json.dumps(PARENTS))
    for name in ("t.yaml", "p.json"):
        assert load_hierarchy(tmp_path / name, CLASSES).lca_height_matrix(CLASSES).tolist() == LCA
    (tmp_path / "bad.yaml").write_text("root: [a, b\n")
    with pytest.raises(GeosslError, match="cannot parse hierarchy file"):
        load_hierarchy(tmp_path / "bad.yaml")
    with pytest.raises(GeosslError, match="does not exist"):
        load_hierarchy(tmp_path / "missing.yaml")


def test_validation_errors():
    with pytest.raises(GeosslError, match=r"misses 1 dataset class\(es\): \['f'\]"):
        load_hierarchy(TREE, CLASSES + ["f"])
    with pytest.raises(GeosslError, match=r"\['A1'\] are internal nodes"):
        load_hierarchy(TREE, ["a", "A1"])
    with pytest.raises(GeosslError, match="cycle: A -> B -> A"):
        load_hierarchy({"a": "A", "A": "B", "B": "A"})
    with pytest.raises(GeosslError, match="cycle: x -> x"):
        load_hierarchy({"a": "root", "x": "x"})
    with pytest.raises(GeosslError, match="single root but has 2"):
        load_hierarchy({"a": "R1", "b": "R2"})
    with pytest.raises(GeosslError, match="exactly one top-level key"):
        load_hierarchy({"R1": ["a"], "R2": ["b"]})
    with pytest.raises(GeosslError, match="node 'a' appears twice"):
        load_hierarchy({"root": {"A": ["a"], "B": ["a"]}})


def test_shipped_eurosat_hierarchy_covers_its_classes():
    h = eurosat_hierarchy()
    assert sorted(h.leaves) == sorted(EUROSAT_CLASSES)
    assert len(EUROSAT_CLASSES) == 10
    assert {h.depth(c) for c in EUROSAT_CLASSES} == {3}  # uniform depth: path length = 2 × LCA height
    assert h.lca_height("River", "SeaLake") == 1
    assert h.lca_height("Industrial", "Highway") == 1
    assert h.lca_height("AnnualCrop", "Pasture") == 2
    assert h.lca_height("Forest", "HerbaceousVegetation") == 2
    assert h.lca_height("Forest", "Residential") == 3
    lca, path = h.lca_height_matrix(EUROSAT_CLASSES), h.tree_distance_matrix(EUROSAT_CLASSES)
    assert torch.equal(path, 2 * lca) and torch.equal(lca, lca.T)


def test_ahc_and_mistake_severity_hand_computed():
    lca = torch.tensor(LCA, dtype=torch.float64)
    targets = [0, 0, 1, 3, 4, 2]
    preds = [0, 1, 2, 4, 0, 2]  # correct, sibling (1), cousin (2), sibling (1), root (3), correct
    assert average_hierarchical_cost(preds, targets, lca) == pytest.approx((0 + 1 + 2 + 1 + 3 + 0) / 6)
    assert mistake_severity(preds, targets, lca) == pytest.approx((1 + 2 + 1 + 3) / 4)
    assert average_hierarchical_cost(preds, targets, torch.tensor(PATH)) == pytest.approx((2 + 4 + 2 + 6) / 6)
    # AHC = (1 − accuracy) × mean cost of a mistake
    assert average_hierarchical_cost(preds, targets, lca) == pytest.approx((1 - 2 / 6) * 7 / 4)
    assert math.isnan(mistake_severity(targets, targets, lca))
    assert average_hierarchical_cost(targets, targets, lca) == 0.0


def test_hierarchical_distance_at_k_hand_computed():
    lca = torch.tensor(LCA, dtype=torch.float64)
    scores = torch.tensor([[0.9, 0.5, 0.1, 0.3, 0.0],    # target 0: top-3 = a, b, d -> 0, 1, 3
                           [0.0, 0.2, 0.8, 0.1, 0.7]])   # target 3: top-3 = c, e, b -> 3, 1, 3
    assert hierarchical_distance_at_k(scores, [0, 3], lca, k=1) == pytest.approx((0 + 3) / 2)
    expected = ((0 + 1 + 3) / 3 + (3 + 1 + 3) / 3) / 2
    assert hierarchical_distance_at_k(scores, [0, 3], lca, k=3) == pytest.approx(expected)
    # k = 1 equals the AHC of the argmax.
    assert hierarchical_distance_at_k(scores, [0, 3], lca, k=1) == average_hierarchical_cost([0, 2], [0, 3], lca)
    h = load_hierarchy(TREE)
    out = hierarchical_metrics(scores, [0, 3], h, CLASSES, ks=(1, 3))
    assert out == pytest.approx({"ahc": 3.0, "accuracy": 0.5, "mistake_severity": 3.0, "hdist@1": 1.5,
                                 "hdist@3": (4 / 3 + 7 / 3) / 2})


def test_accuracy_at_height():
    h = load_hierarchy(TREE)
    preds, targets = [1, 2, 4, 0], [0, 0, 3, 3]  # sibling, cousin, sibling, other branch
    assert accuracy_at_height(preds, targets, h, CLASSES, 0) == 0.0
    assert accuracy_at_height(preds, targets, h, CLASSES, 1) == pytest.approx(2 / 4)   # A1 / B1 level
    assert accuracy_at_height(preds, targets, h, CLASSES, 2) == pytest.approx(3 / 4)   # A / B level
    assert accuracy_at_height(preds, targets, h, CLASSES, 3) == 1.0


def test_metric_input_errors():
    lca = torch.tensor(LCA, dtype=torch.float64)
    with pytest.raises(GeosslError, match="predictions has 2 rows but targets has 3"):
        average_hierarchical_cost([0, 1], [0, 1, 2], lca)
    with pytest.raises(GeosslError, match="class index 7 is outside"):
        mistake_severity([7], [0], lca)
    with pytest.raises(GeosslError, match="square"):
        average_hierarchical_cost([0], [0], lca[:3])
    with pytest.raises(GeosslError, match="k must be between 1 and the number of classes"):
        hierarchical_distance_at_k(torch.zeros(2, 5), [0, 1], lca, k=6)
