"""Class hierarchies and hierarchical classification metrics (``evaluation.md`` §8).

A hierarchy is a rooted tree whose leaves are the dataset classes. Distances between two classes a, b:

* **LCA height** h(a, b): the height of their lowest common ancestor, a node's height being the length of the longest
  downward path to a leaf (leaves 0); 0 iff a = b. The mistake cost of Bertinetto et al. 2020 ("Making Better Mistakes:
  Leveraging Class Hierarchies with Deep Networks", CVPR).
* **tree distance** d(a, b): the number of edges on the path between them (siblings 2, cousins 4). With uniform leaf
  depth d = 2 h.

Metrics, for N samples with true classes y_i, top-1 predictions ŷ_i and class scores s_i:

| Metric | Definition |
|---|---|
| AHC (average hierarchical cost, Kosmopoulos et al. 2015) | (1/N) Σ_i D[ŷ_i, y_i] over all samples (0: all correct) |
| mistake severity (Bertinetto et al. 2020) | mean of D[ŷ_i, y_i] over the misclassified samples only |
| average hierarchical distance @k (Bertinetto et al. 2020) | (1/N) Σ_i (1/k) Σ_{j ∈ top-k(s_i)} D[j, y_i] |
| accuracy at height h | accuracy after mapping ŷ_i and y_i to their lowest ancestors of height >= h |

with D the LCA-height matrix (the paper's convention, the default of :func:`hierarchical_metrics` for mistake severity
and @k) or the tree-distance matrix (the AHC of ``evaluation.md`` §8).

File formats (YAML or JSON), detected from the values:

* nested tree: ``{root: {child: {leaf: null, ...}, other: [leaf_a, leaf_b]}}``; a node maps to a mapping of children,
  a list of leaf names / single-key subtrees, or null (a leaf); exactly one top-level key (the root);
* parent map: ``{child: parent, ..., root: null}``; every value is a node name or null.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from geossl.errors import GeosslError
from geossl.eval._checks import as_labels, check_same_length

#: EuroSAT's classes in the order of its class indices (alphabetical folder order).
EUROSAT_CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                   "PermanentCrop", "Residential", "River", "SeaLake")


@dataclass(frozen=True)
class ClassHierarchy:
    """A validated rooted tree: every node has one parent except the root; no cycles.

    Build it with :meth:`from_parents`, :meth:`from_tree` or :func:`load_hierarchy` rather than directly.

    Attributes:
        parents: node → parent, the root mapping to ``None``.
        root: the root node.
    """

    parents: Mapping[str, str | None]
    root: str

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_parents(cls, parents: Mapping[Any, Any]) -> ClassHierarchy:
        """Build from a parent map ``{child: parent}``; nodes that never appear as a child and map to ``None`` are
        roots, and there must be exactly one.

        Raises:
            GeosslError: on a cycle, several roots or no root.
        """
        full: dict[str, str | None] = {}
        for child, parent in parents.items():
            full[str(child)] = None if parent is None else str(parent)
        for parent in list(full.values()):
            if parent is not None and parent not in full:
                full[parent] = None  # a node only named as a parent is a root candidate
        for node in full:
            _check_acyclic(full, node)
        roots = sorted(n for n, p in full.items() if p is None)
        if len(roots) != 1:
            raise GeosslError(f"the hierarchy must have a single root but has {len(roots)}: {roots[:10]}; add a common "
                              "parent for them (e.g. 'root').")
        return cls(parents=full, root=roots[0])

    @classmethod
    def from_tree(cls, tree: Mapping[Any, Any]) -> ClassHierarchy:
        """Build from a nested tree ``{root: {child: ..., ...}}`` (see the module docstring).

        Raises:
            GeosslError: on several top-level keys, a node named twice or a value of the wrong type.
        """
        if len(tree) != 1:
            raise GeosslError(f"a nested hierarchy must have exactly one top-level key (the root), got {len(tree)}: "
                              f"{[str(k) for k in list(tree)[:10]]}; nest them under a single root.")
        parents: dict[str, str | None] = {}

        def add(node: Any, parent: str | None, sub: Any) -> None:
            name = str(node)
            if name in parents:
                raise GeosslError(f"node '{name}' appears twice in the hierarchy; a class can have only one parent "
                                  "(rename one of them).")
            parents[name] = parent
            if sub is None:
                return
            if isinstance(sub, Mapping):
                for child, grand in sub.items():
                    add(child, name, grand)
            elif isinstance(sub, (list, tuple)):
                for item in sub:
                    if isinstance(item, Mapping):
                        for child, grand in item.items():
                            add(child, name, grand)
                    elif isinstance(item, (str, int)):
                        add(item, name, None)
                    else:
                        raise GeosslError(f"children of '{name}' must be names or mappings, got {type(item).__name__}.")
            else:
                raise GeosslError(f"node '{name}' maps to {sub!r}; in a nested hierarchy a node maps to a mapping of "
                                  "children, a list of leaves or null.")

        (root, sub), = tree.items()
        add(root, None, sub)
        return cls.from_parents(parents)

    # ---------------------------------------------------------------- structure

    @cached_property
    def _children(self) -> dict[str, tuple[str, ...]]:
        children: dict[str, list[str]] = {n: [] for n in self.parents}
        for n, p in self.parents.items():
            if p is not None:
                children[p].append(n)
        return {n: tuple(c) for n, c in children.items()}

    @property
    def nodes(self) -> tuple[str, ...]:
        """All nodes, in insertion order."""
        return tuple(self.parents)

    def children(self, node: str) -> tuple[str, ...]:
        """Direct children of ``node`` (empty for a leaf)."""
        return self._children[self._node(node)]

    @cached_property
    def leaves(self) -> tuple[str, ...]:
        """Nodes without children."""
        return tuple(n for n in self.parents if not self._children[n])

    def ancestors(self, node: str) -> list[str]:
        """``node`` and its ancestors up to the root, in that order."""
        out = [self._node(node)]
        while (p := self.parents[out[-1]]) is not None:
            out.append(p)
        return out

    def depth(self, node: str) -> int:
        """Number of edges from the root to ``node``."""
        return len(self.ancestors(node)) - 1

    @cached_property
    def _heights(self) -> dict[str, int]:
        heights: dict[str, int] = {}
        # Children before parents: process nodes by decreasing depth.
        for n in sorted(self.parents, key=self.depth, reverse=True):
            heights[n] = 1 + max((heights[c] for c in self._children[n]), default=-1)
        return heights

    def height(self, node: str) -> int:
        """Length of the longest downward path from ``node`` to a leaf (0 for leaves)."""
        return self._heights[self._node(node)]

    def lca(self, a: str, b: str) -> str:
        """Lowest common ancestor of two nodes."""
        seen = set(self.ancestors(a))
        return next(n for n in self.ancestors(b) if n in seen)

    def lca_height(self, a: str, b: str) -> int:
        """Height of the lowest common ancestor (Bertinetto et al. 2020); 0 iff a = b for leaves."""
        return self.height(self.lca(a, b))

    def tree_distance(self, a: str, b: str) -> int:
        """Number of edges on the path between two nodes."""
        c = self.lca(a, b)
        return self.depth(a) + self.depth(b) - 2 * self.depth(c)

    def ancestor_at_height(self, node: str, height: int) -> str:
        """The lowest ancestor of ``node`` (itself included) whose height is >= ``height``; the root if none."""
        return next((n for n in self.ancestors(node) if self.height(n) >= height), self.root)

    # ---------------------------------------------------------------- classes

    def check_classes(self, classes: Sequence[str]) -> None:
        """Raise unless every class is a leaf of the hierarchy.

        Raises:
            GeosslError: naming the missing classes, or the classes that are internal nodes.
        """
        missing = [c for c in classes if c not in self.parents]
        if missing:
            more = "..." if len(self.leaves) > 10 else ""
            raise GeosslError(f"the hierarchy misses {len(missing)} dataset class(es): {missing[:10]}; add them as "
                              f"leaves (its leaves are {list(self.leaves)[:10]}{more}).")
        inner = [c for c in classes if self._children[c]]
        if inner:
            raise GeosslError(f"dataset class(es) {inner[:10]} are internal nodes of the hierarchy, not leaves; "
                              "classes must be leaves (rename the internal node).")
        if len(set(classes)) != len(classes):
            dup = sorted({c for c in classes if list(classes).count(c) > 1})
            raise GeosslError(f"classes lists {dup} more than once; pass each class once, in class-index order.")

    def lca_height_matrix(self, classes: Sequence[str]) -> Tensor:
        """LCA heights between classes (C, C) float64, in the order of ``classes`` (the class indices)."""
        self.check_classes(classes)
        return torch.tensor([[float(self.lca_height(a, b)) for b in classes] for a in classes], dtype=torch.float64)

    def tree_distance_matrix(self, classes: Sequence[str]) -> Tensor:
        """Tree (shortest-path) distances between classes (C, C) float64, in the order of ``classes``."""
        self.check_classes(classes)
        return torch.tensor([[float(self.tree_distance(a, b)) for b in classes] for a in classes],
                            dtype=torch.float64)

    def _node(self, node: str) -> str:
        if node not in self.parents:
            raise GeosslError(f"'{node}' is not a node of the hierarchy.")
        return node


def _check_acyclic(parents: Mapping[str, str | None], start: str) -> None:
    """Follow parents from ``start``; raise with the cycle spelled out if a node repeats."""
    path, seen = [start], {start}
    while (p := parents[path[-1]]) is not None:
        if p in seen:
            cycle = path[path.index(p):] + [p]
            raise GeosslError(f"the hierarchy has a cycle: {' -> '.join(cycle)} (child -> parent); every node must "
                              "lead up to the root.")
        path.append(p)
        seen.add(p)


def hierarchy_from_mapping(data: Mapping[Any, Any]) -> ClassHierarchy:
    """Build a hierarchy from a parsed file: a parent map if every value is a name or null, else a nested tree."""
    if not isinstance(data, Mapping) or not data:
        raise GeosslError("a hierarchy must be a non-empty mapping: a nested tree {root: {...}} or a parent map "
                          "{child: parent}.")
    if all(v is None or isinstance(v, (str, int)) for v in data.values()):
        return ClassHierarchy.from_parents(data)
    return ClassHierarchy.from_tree(data)


def load_hierarchy(source: str | Path | Mapping[Any, Any], classes: Sequence[str] | None = None) -> ClassHierarchy:
    """Load and validate a class hierarchy from a YAML/JSON file or an already parsed mapping.

    Args:
        source: path to a ``.yaml``/``.yml``/``.json`` file, or a mapping (nested tree or parent map).
        classes: dataset class names; when given, each must be a leaf of the hierarchy.

    Returns:
        The validated :class:`ClassHierarchy`.

    Raises:
        GeosslError: on a missing or unparsable file, several roots, a cycle, a node named twice, or a dataset class
            that is missing or not a leaf.
    """
    if isinstance(source, Mapping):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise GeosslError(f"hierarchy file '{path}' does not exist; pass a .yaml or .json file.")
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GeosslError(f"cannot parse hierarchy file '{path}': {first}; check its YAML/JSON syntax.") from e
    hierarchy = hierarchy_from_mapping(data)
    if classes is not None:
        hierarchy.check_classes(list(classes))
    return hierarchy


def eurosat_hierarchy() -> ClassHierarchy:
    """The shipped CORINE-based land-cover hierarchy of EuroSAT's 10 classes (``hierarchies/eurosat.yaml``)."""
    with resources.as_file(resources.files("geossl.eval").joinpath("hierarchies/eurosat.yaml")) as path:
        return load_hierarchy(path, EUROSAT_CLASSES)


# -------------------------------------------------------------------------------------------------------- metrics


def _distance_matrix(distances: Tensor | Any) -> Tensor:
    d = torch.as_tensor(distances, dtype=torch.float64).cpu()
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] == 0:
        raise GeosslError(f"distances must be a square (C, C) class-distance matrix, got shape {tuple(d.shape)}; "
                          "build it with ClassHierarchy.lca_height_matrix(classes).")
    if not torch.isfinite(d).all() or (d < 0).any() or (d.diagonal() != 0).any():
        raise GeosslError("distances must be finite, non-negative and zero on the diagonal (a correct prediction "
                          "costs nothing).")
    return d


def _checked(pred: Tensor | Any, target: Tensor | Any, distances: Tensor | Any) -> tuple[Tensor, Tensor, Tensor]:
    p, t = as_labels(pred, "predictions").cpu(), as_labels(target, "targets").cpu()
    check_same_length(p, t, "predictions", "targets")
    d = _distance_matrix(distances)
    if p.numel() == 0:
        raise GeosslError("predictions is empty; the hierarchical metrics need at least one sample.")
    top = int(max(p.max(), t.max()))
    if top >= d.shape[0]:
        raise GeosslError(f"class index {top} is outside the {d.shape[0]} x {d.shape[0]} distance matrix; build it "
                          "for all classes.")
    return p, t, d


def average_hierarchical_cost(predictions: Tensor | Any, targets: Tensor | Any, distances: Tensor | Any) -> float:
    """AHC (Kosmopoulos et al. 2015; thesis eq. 5.11): ``(1/N) Σ_i D[ŷ_i, y_i]`` over all samples.

    Args:
        predictions: top-1 class indices (N,).
        targets: true class indices (N,).
        distances: class distance matrix D (C, C), e.g. :meth:`ClassHierarchy.tree_distance_matrix` (§8's AHC).

    Returns:
        The AHC (0 iff every prediction is correct).
    """
    p, t, d = _checked(predictions, targets, distances)
    return float(d[p, t].mean())


def mistake_severity(predictions: Tensor | Any, targets: Tensor | Any, distances: Tensor | Any) -> float:
    """Mistake severity (Bertinetto et al. 2020): the mean of ``D[ŷ_i, y_i]`` over the misclassified samples.

    Args:
        predictions: top-1 class indices (N,).
        targets: true class indices (N,).
        distances: class distance matrix D (C, C), the LCA heights in the paper.

    Returns:
        The mean cost of a mistake; NaN when there is no mistake (the mean over an empty set).
    """
    p, t, d = _checked(predictions, targets, distances)
    wrong = p != t
    if not wrong.any():
        return float("nan")
    return float(d[p[wrong], t[wrong]].mean())


def hierarchical_distance_at_k(
    scores: Tensor | Any, targets: Tensor | Any, distances: Tensor | Any, k: int = 5
) -> float:
    """Average hierarchical distance @k (Bertinetto et al. 2020): the mean over samples and over the k highest-scored
    classes of ``D[class, y_i]`` (correct classes in the top-k count 0).

    Args:
        scores: class scores or logits (N, C); ties are ranked by class index (stable sort).
        targets: true class indices (N,).
        distances: class distance matrix D (C, C), the LCA heights in the paper.
        k: number of top predictions, 1 <= k <= C.

    Returns:
        The average distance; for k = 1 it equals the AHC with the same D.
    """
    s = torch.as_tensor(scores).cpu()
    if s.ndim != 2:
        raise GeosslError(f"scores must be a (N, C) matrix of class scores, got shape {tuple(s.shape)}.")
    t = as_labels(targets, "targets").cpu()
    check_same_length(s, t, "scores", "targets")
    d = _distance_matrix(distances)
    if s.shape[1] != d.shape[0]:
        raise GeosslError(f"scores have {s.shape[1]} classes but distances is {d.shape[0]} x {d.shape[0]}; build the "
                          "distance matrix for the same classes.")
    if not 1 <= k <= s.shape[1]:
        raise GeosslError(f"k must be between 1 and the number of classes ({s.shape[1]}), got {k}.")
    if s.shape[0] == 0:
        raise GeosslError("scores is empty; the hierarchical metrics need at least one sample.")
    if int(t.max()) >= d.shape[0]:
        raise GeosslError(f"class index {int(t.max())} is outside the {d.shape[0]} x {d.shape[0]} distance matrix.")
    top = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :k]
    return float(d[top, t[:, None]].mean())


def accuracy_at_height(
    predictions: Tensor | Any,
    targets: Tensor | Any,
    hierarchy: ClassHierarchy,
    classes: Sequence[str],
    height: int,
) -> float:
    """Accuracy after mapping predicted and true classes to their lowest ancestors of height >= ``height``.

    Args:
        predictions: top-1 class indices (N,).
        targets: true class indices (N,).
        hierarchy: the class hierarchy.
        classes: class names in class-index order.
        height: 0 gives the plain accuracy; the root's height gives 1.0.

    Returns:
        The coarse accuracy in [0, 1].
    """
    hierarchy.check_classes(list(classes))
    if height < 0:
        raise GeosslError(f"height must be >= 0, got {height}.")
    node_index = {n: i for i, n in enumerate(hierarchy.nodes)}
    coarse = torch.tensor([node_index[hierarchy.ancestor_at_height(c, height)] for c in classes])
    # 0/1 "different coarse class" costs: the coarse accuracy is 1 − their AHC.
    different = (coarse[:, None] != coarse[None, :]).double()
    return 1.0 - average_hierarchical_cost(predictions, targets, different)


def hierarchical_metrics(
    scores: Tensor | Any,
    targets: Tensor | Any,
    hierarchy: ClassHierarchy,
    classes: Sequence[str],
    *,
    ks: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """All §8 metrics from class scores: accuracy, AHC (tree distance), mistake severity and hierarchical
    distance @k (LCA heights, as Bertinetto et al. 2020).

    Args:
        scores: class scores (N, C), columns in the order of ``classes``.
        targets: true class indices (N,).
        hierarchy: the class hierarchy; every class must be one of its leaves.
        classes: class names in class-index order.
        ks: the k of the hierarchical distance @k (clamped to C).

    Returns:
        ``{"accuracy", "ahc", "mistake_severity", "hdist@k" for k in ks}``; accuracy in [0, 1].
    """
    s = torch.as_tensor(scores).cpu()
    if s.ndim != 2 or s.shape[1] != len(classes):
        raise GeosslError(f"scores must be (N, C) with C = len(classes) = {len(classes)}, got shape "
                          f"{tuple(s.shape)}.")
    lca = hierarchy.lca_height_matrix(list(classes))
    path = hierarchy.tree_distance_matrix(list(classes))
    pred = torch.sort(s, dim=1, descending=True, stable=True).indices[:, 0]  # ties to the smallest index, as @k
    t = as_labels(targets, "targets").cpu()
    out = {
        "ahc": average_hierarchical_cost(pred, t, path),
        "accuracy": float((pred == t).double().mean()),
        "mistake_severity": mistake_severity(pred, t, lca),
    }
    for k in ks:
        out[f"hdist@{k}"] = hierarchical_distance_at_k(s, t, lca, min(int(k), s.shape[1]))
    return out
