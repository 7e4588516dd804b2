"""N-way K-shot few-shot evaluation on frozen features, optionally with the SOT/BPA transform (``evaluation.md`` §5).

Protocol (the episodic evaluation of Vinyals et al. 2016 and Snell et al. 2017; confidence interval as reported in the
few-shot literature)::

    for e = 1..E (seeded):
        sample N classes among those with at least K + Q samples; K support + Q query samples per class (disjoint)
        optional: X = SOT([F_s; F_q])         (Shalam & Korman 2022, transductive, ``geossl.ot.self_transport``)
        classifier fitted on the N·K support rows, acc_e = accuracy on the N·Q queries
    report mean(acc) ± 1.96 · std(acc) / sqrt(E)

Heads:

* ``"prototype"`` (ProtoNet / nearest class mean, Snell et al. 2017): μ_c = mean of the support rows of class c;
  euclidean: logits = −‖f_q − μ_c‖² (the temperature of ``evaluation.md`` §5 does not change the argmax and is
  omitted); cosine: logits = cos(f_q, μ_c).
* ``"logistic"``: multinomial logistic regression on the support set, per episode, fitted with L-BFGS in float64 and
  batched over episodes (the episodes' objectives are independent, so minimising their sum fits each one). The
  objective is scikit-learn's ``LogisticRegression(C)``: ``C Σ_i CE_i + ½‖W‖²`` with an unpenalised bias, the head
  of Tian et al. 2020 ("Rethinking Few-Shot Image Classification: a Good Embedding Is All You Need", ECCV), C = 1.

Feature preprocessing (``preprocess``), applied per episode before the transform and the head: ``"l2"`` (default,
L2-normalised rows), ``"cl2n"`` (centre, then L2-normalise: SimpleShot, Wang et al. 2019; centred on ``center``, e.g.
the mean of the base-class features, or else on the mean of the episode's support rows, which uses no query
information) or ``"none"``.

SOT (``transform="sot"``): the support and query rows of each episode are transported to themselves
(``self_transport(X, reg, n_iters)``, cosine cost, λ = 0.1, 10 iterations) and the rows of the plan (dimension
N·(K + Q)) replace the features. With ``sot_label_injection`` the support–support block is overwritten with the known
labels (same class 1/K, else 0, diagonal 1), as in the authors' few-shot code (``ot.md`` §9.4). The transform is
transductive: every query influences every other row.

Accuracies are percentages (0-100). ``std`` is the population standard deviation over episodes (``np.std``, the
convention of the reference implementations); with E = 600 it differs from the sample std by 0.08 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from geossl.errors import GeosslError, unknown_name_error
from geossl.eval._checks import (
    as_features,
    as_labels,
    check_nonempty,
    check_same_length,
)
from geossl.eval.linear import SINGLE_THREAD_MAX_MACS, _at_most_threads

Head = Literal["prototype", "logistic"]
_HEADS = ("prototype", "logistic", "protonet")
_METRICS = ("euclidean", "cosine")
_PREPROCESS = ("l2", "cl2n", "none")
#: Feature entries (episodes × rows × D) per float64 batch of episodes (~128 MiB).
_BATCH_ENTRIES = 16_000_000


@dataclass(frozen=True)
class Episodes:
    """Indices of sampled few-shot episodes.

    Attributes:
        classes: original class index of each episode's ways (E, N); way c of episode e is class ``classes[e, c]``.
        support: sample indices (E, N, K); ``support[e, c]`` are the K support samples of way c.
        query: sample indices (E, N, Q); disjoint from the support of the same episode.
    """

    classes: Tensor
    support: Tensor
    query: Tensor


def sample_episodes(
    labels: Tensor | Any,
    *,
    n_way: int = 5,
    k_shot: int = 1,
    n_query: int = 15,
    n_episodes: int = 600,
    seed: int = 0,
) -> Episodes:
    """Sample N-way K-shot episodes with Q queries per class, reproducibly from ``seed``.

    Each episode draws N distinct classes uniformly among those with at least K + Q samples, then K + Q distinct
    samples of each class uniformly without replacement (the first K are the support).

    Args:
        labels: class indices (M,) of the held-out samples.
        n_way: N, classes per episode.
        k_shot: K, support samples per class.
        n_query: Q, query samples per class.
        n_episodes: E.
        seed: seed of the sampling (torch generator).

    Returns:
        :class:`Episodes` with int64 index tensors.

    Raises:
        GeosslError: if fewer than N classes have K + Q samples, or on non-positive sizes.
    """
    for name, value in (("n_way", n_way), ("k_shot", k_shot), ("n_query", n_query), ("n_episodes", n_episodes)):
        if int(value) < 1:
            raise GeosslError(f"{name} must be >= 1, got {value}.")
    if n_way < 2:
        raise GeosslError(f"n_way must be >= 2 for a classification episode, got {n_way}.")
    y = as_labels(labels, "labels").cpu()
    check_nonempty(y, "labels")
    need = k_shot + n_query
    counts = torch.bincount(y)
    eligible = torch.nonzero(counts >= need).flatten()
    if eligible.numel() < n_way:
        raise GeosslError(f"only {eligible.numel()} of the {int((counts > 0).sum())} classes have at least "
                          f"k_shot + n_query = {need} samples, fewer than n_way = {n_way}; lower n_way, k_shot or "
                          "n_query.")
    members = [torch.nonzero(y == c).flatten() for c in eligible.tolist()]
    gen = torch.Generator().manual_seed(seed)
    classes = torch.empty(n_episodes, n_way, dtype=torch.long)
    chosen = torch.empty(n_episodes, n_way, need, dtype=torch.long)
    for e in range(n_episodes):
        ways = torch.randperm(eligible.numel(), generator=gen)[:n_way]
        classes[e] = eligible[ways]
        for c, w in enumerate(ways.tolist()):
            m = members[w]
            chosen[e, c] = m[torch.randperm(m.numel(), generator=gen)[:need]]
    return Episodes(classes=classes, support=chosen[:, :, :k_shot], query=chosen[:, :, k_shot:])


def prototype_logits(support: Tensor, query: Tensor, metric: str = "euclidean") -> Tensor:
    """Nearest-class-mean logits (Snell et al. 2017).

    Args:
        support: support features (E, N, K, D) (or (N, K, D) for one episode), grouped by way.
        query: query features (E, M, D) (or (M, D)).
        metric: ``"euclidean"`` (logits −‖q − μ_c‖²) or ``"cosine"`` (logits cos(q, μ_c)).

    Returns:
        Logits (E, M, N) (or (M, N)); the prediction is the argmax over ways.
    """
    if metric not in _METRICS:
        raise unknown_name_error("metric", str(metric), _METRICS)
    single = support.ndim == 3
    s, q = (support[None], query[None]) if single else (support, query)
    protos = s.mean(dim=2)  # (E, N, D)
    if metric == "cosine":
        logits = F.normalize(q, dim=-1) @ F.normalize(protos, dim=-1).transpose(1, 2)
    else:
        logits = -torch.cdist(q, protos).pow(2)
    return logits[0] if single else logits


def logistic_logits(
    support: Tensor,
    query: Tensor,
    *,
    C: float = 1.0,
    max_iter: int = 500,
) -> Tensor:
    """Logistic-regression logits, one multinomial model per episode fitted on its support set.

    Minimises, for each episode, scikit-learn's ``LogisticRegression(C=C)`` objective
    ``C Σ_i CE(W s_i + b, y_i) + ½‖W‖²`` (bias not penalised) with L-BFGS in float64, all episodes at once.

    Args:
        support: support features (E, N, K, D) (or (N, K, D)), grouped by way.
        query: query features (E, M, D) (or (M, D)).
        C: inverse regularisation strength (> 0).
        max_iter: L-BFGS iterations.

    Returns:
        Logits (E, M, N) (or (M, N)) in float64.
    """
    if not C > 0:
        raise GeosslError(f"C must be > 0, got {C}.")
    single = support.ndim == 3
    s, q = (support[None], query[None]) if single else (support, query)
    e, n, k, d = s.shape
    x = s.reshape(e, n * k, d).double()
    y = torch.arange(n).repeat_interleave(k).expand(e, n * k)
    w = torch.zeros(e, n, d, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(e, n, dtype=torch.float64, requires_grad=True)
    # sklearn's objective divided by C·n_support, so that its scale does not depend on the episode size.
    penalty = 1.0 / (2.0 * C * n * k)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-14)

    def closure() -> Tensor:
        opt.zero_grad()
        logits = torch.baddbmm(b[:, None, :], x, w.transpose(1, 2))  # (E, NK, N)
        ce = F.cross_entropy(logits.reshape(-1, n), y.reshape(-1), reduction="sum") / (n * k)
        loss = ce + penalty * w.pow(2).sum()
        loss.backward()
        return loss

    # L-BFGS makes hundreds of small sequential calls: on shared cores one thread is 4-6x faster than two for a
    # batch of 5-shot episodes (see also geossl.eval.linear).
    with _at_most_threads(1 if e * n * k * d * n <= SINGLE_THREAD_MAX_MACS else torch.get_num_threads()):
        opt.step(closure)
    with torch.no_grad():
        out = torch.baddbmm(b[:, None, :], q.double(), w.transpose(1, 2))
    return out[0] if single else out


def _preprocess(support: Tensor, query: Tensor, mode: str, center: Tensor | None) -> tuple[Tensor, Tensor]:
    """Apply the episode preprocessing to support (E, N, K, D) and query (E, M, D)."""
    if mode == "cl2n":
        mu = center.to(support)[None, None, :] if center is not None else support.mean(dim=(1, 2))[:, None, :]
        support, query = support - mu[:, :, None, :], query - mu
    if mode in ("l2", "cl2n"):
        support, query = F.normalize(support, dim=-1), F.normalize(query, dim=-1)
    return support, query


def sot_episode(
    support: Tensor,
    query: Tensor,
    *,
    reg: float = 0.1,
    n_iters: int = 10,
    label_injection: bool = False,
) -> tuple[Tensor, Tensor]:
    """SOT/BPA features of episodes (Shalam & Korman 2022): the support and query rows are transported to
    themselves together and replaced by the rows of the plan.

    Args:
        support: support features (E, N, K, D), grouped by way.
        query: query features (E, M, D).
        reg: entropic regularisation λ of :func:`geossl.ot.self_transport`.
        n_iters: Sinkhorn iterations.
        label_injection: set the support–support block to 1/K for same-class pairs, 0 otherwise, 1 on the diagonal
            (``ot.md`` §9.4).

    Returns:
        Transformed support (E, N, K, n) and query (E, M, n), with n = N·K + M.
    """
    from geossl.ot.self_transport import self_transport

    e, n, k, _ = support.shape
    x = torch.cat([support.reshape(e, n * k, -1), query], dim=1)
    w = self_transport(x, reg, n_iters)  # (E, NK + M, NK + M)
    if label_injection:
        y = torch.arange(n).repeat_interleave(k)
        block = (y[:, None] == y[None, :]).to(w) / k
        block.fill_diagonal_(1.0)
        w = w.clone()
        w[:, :n * k, :n * k] = block
    return w[:, :n * k].reshape(e, n, k, -1), w[:, n * k:]


def run_episodes(
    features: Tensor | Any,
    labels: Tensor | Any,
    *,
    n_way: int = 5,
    k_shot: int = 1,
    n_query: int = 15,
    n_episodes: int = 600,
    classifier: Head = "prototype",
    metric: Literal["euclidean", "cosine"] = "euclidean",
    preprocess: Literal["l2", "cl2n", "none"] = "l2",
    center: Tensor | Any | None = None,
    transform: Literal["sot"] | None = None,
    sot_reg: float = 0.1,
    sot_iters: int = 10,
    sot_label_injection: bool = False,
    logistic_C: float = 1.0,
    logistic_max_iter: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """Few-shot accuracy of frozen features over seeded N-way K-shot episodes, with a 95 % confidence interval.

    Args:
        features: features of the held-out (novel) classes (M, D), torch or NumPy.
        labels: their class indices (M,).
        n_way: N (default 5).
        k_shot: K (1 and 5 are the usual settings; see :func:`evaluate_fewshot`).
        n_query: Q queries per class (default 15).
        n_episodes: E (default 600).
        classifier: ``"prototype"`` (alias ``"protonet"``) or ``"logistic"``.
        metric: distance of the prototype head, ``"euclidean"`` or ``"cosine"``.
        preprocess: ``"l2"``, ``"cl2n"`` or ``"none"`` (see the module docstring).
        center: (D,) centring vector for ``"cl2n"`` (e.g. the base-class mean); default: the support mean.
        transform: ``None`` or ``"sot"``.
        sot_reg: SOT entropic regularisation λ.
        sot_iters: SOT Sinkhorn iterations.
        sot_label_injection: overwrite the support–support block of the SOT features with the labels.
        logistic_C: C of the logistic head (scikit-learn's convention).
        logistic_max_iter: L-BFGS iterations of the logistic head.
        seed: episode sampling seed.

    Returns:
        ``{"accuracy", "ci95", "std", "episode_accuracies" (E,) float64, "n_way", "k_shot", "n_query",
        "n_episodes", "classifier", "transform"}``; accuracies in percent, ``ci95`` = 1.96 · std / sqrt(E).

    Raises:
        GeosslError: on mismatched lengths, fewer eligible classes than N, an unknown head / metric / preprocessing /
            transform, or non-finite features.
    """
    if classifier not in _HEADS:
        raise unknown_name_error("classifier", str(classifier), _HEADS)
    if metric not in _METRICS:
        raise unknown_name_error("metric", str(metric), _METRICS)
    if preprocess not in _PREPROCESS:
        raise unknown_name_error("preprocess", str(preprocess), _PREPROCESS)
    if transform not in (None, "sot"):
        raise unknown_name_error("transform", str(transform), ("sot",))
    x = as_features(features, "features", dtype=torch.float64).cpu()
    y = as_labels(labels, "labels").cpu()
    check_same_length(x, y, "features", "labels")
    mu = None
    if center is not None:
        mu = torch.as_tensor(center, dtype=torch.float64).cpu().flatten()
        if mu.numel() != x.shape[1]:
            raise GeosslError(f"center has {mu.numel()} entries but the features have dimension {x.shape[1]}.")
    episodes = sample_episodes(y, n_way=n_way, k_shot=k_shot, n_query=n_query, n_episodes=n_episodes, seed=seed)
    query_y = torch.arange(n_way).repeat_interleave(n_query)  # queries are flattened way-major
    per_episode = n_way * (k_shot + n_query) * max(x.shape[1], n_way * (k_shot + n_query))
    batch = max(1, _BATCH_ENTRIES // per_episode)
    accs = torch.empty(n_episodes, dtype=torch.float64)
    for start in range(0, n_episodes, batch):
        sup_idx = episodes.support[start:start + batch]
        qry_idx = episodes.query[start:start + batch].flatten(1)
        support, query = _preprocess(x[sup_idx], x[qry_idx], preprocess, mu)
        if transform == "sot":
            support, query = sot_episode(support, query, reg=sot_reg, n_iters=sot_iters,
                                         label_injection=sot_label_injection)
        if classifier == "logistic":
            logits = logistic_logits(support, query, C=logistic_C, max_iter=logistic_max_iter)
        else:
            logits = prototype_logits(support, query, metric)
        accs[start:start + batch] = 100.0 * (logits.argmax(dim=-1) == query_y).double().mean(dim=1)
    std = float(accs.std(correction=0))
    return {
        "accuracy": float(accs.mean()),
        "ci95": 1.96 * std / math.sqrt(n_episodes),
        "std": std,
        "episode_accuracies": accs,
        "n_way": n_way,
        "k_shot": k_shot,
        "n_query": n_query,
        "n_episodes": n_episodes,
        "classifier": "prototype" if classifier == "protonet" else classifier,
        "transform": transform,
    }


def evaluate_fewshot(
    features: Tensor | Any,
    labels: Tensor | Any,
    *,
    k_shots: Sequence[int] = (1, 5),
    **kwargs: Any,
) -> dict[int, dict[str, Any]]:
    """:func:`run_episodes` for each K in ``k_shots`` (the 5-way 1-shot / 5-shot table of the literature).

    Args:
        features: features (M, D).
        labels: class indices (M,).
        k_shots: the K values.
        **kwargs: passed to :func:`run_episodes` (same seed for every K).

    Returns:
        ``{K: run_episodes(...)}``.
    """
    return {int(k): run_episodes(features, labels, k_shot=int(k), **kwargs) for k in k_shots}
