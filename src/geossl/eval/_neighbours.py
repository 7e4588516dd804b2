"""Float32 candidate search shared by the kNN classifier and retrieval (first stage of their exact search).

Both :mod:`geossl.eval.knn` and :mod:`geossl.eval.retrieval` find their neighbours in two stages: the k + margin best
candidates in float32 here, by blockwise ``torch.topk`` or a faiss flat index, then an exact float64 re-ranking
with their own tie rule (class label for the kNN vote, reference index for retrieval). The margin absorbs float32
near-ties at the k-th neighbour, which is why the two backends give identical final results.
"""

from __future__ import annotations

import torch
from torch import Tensor

from geossl.errors import GeosslError, unknown_name_error

BACKENDS = ("torch", "faiss", "auto")
#: Extra float32 candidates per query re-ranked in float64; covers float32 near-ties at the k-th neighbour.
RERANK_MARGIN = 8
#: Elements of a float64 (queries, candidates, D) block of the re-ranking (32 MiB).
RERANK_BLOCK = 4_000_000


def faiss_available() -> bool:
    """Whether ``faiss`` (faiss-cpu or faiss-gpu) can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device | None = None) -> str:
    """``"torch"`` or ``"faiss"`` for a requested backend (``"auto"``: faiss when installed and on the CPU).

    Raises:
        GeosslError: an unknown backend, or ``"faiss"`` without faiss installed.
    """
    if backend not in BACKENDS:
        raise unknown_name_error("backend", str(backend), BACKENDS)
    if backend == "faiss":
        if not faiss_available():
            raise GeosslError("backend='faiss' needs faiss; install faiss-cpu or use backend='torch'.")
        return "faiss"
    on_cpu = device is None or torch.device(device).type == "cpu"
    return "faiss" if backend == "auto" and on_cpu and faiss_available() else "torch"


def candidate_indices(
    queries: Tensor,
    reference: Tensor,
    kc: int,
    metric: str,
    backend: str,
    *,
    exclude_self: bool = False,
    chunk_size: int = 1024,
) -> Tensor:
    """Indices of the ``kc`` most similar reference rows per query, searched in float32 (order not guaranteed).

    Args:
        queries: (M, D) features, L2-normalised for ``metric="cosine"``.
        reference: (N, D) features, normalised likewise.
        kc: candidates per query (``kc <= N``, or ``N - 1`` with ``exclude_self``).
        metric: ``"cosine"`` (inner product) or ``"euclidean"``.
        backend: ``"torch"`` or ``"faiss"`` (already resolved).
        exclude_self: reference row i is query i; never return it for query i.
        chunk_size: queries per similarity block of the torch backend.

    Returns:
        (M, kc) int64 indices on the reference's device.
    """
    q32, r32 = queries.float(), reference.float()
    if backend == "faiss":
        import faiss
        import numpy as np

        index = faiss.IndexFlatIP(r32.shape[1]) if metric == "cosine" else faiss.IndexFlatL2(r32.shape[1])
        index.add(np.ascontiguousarray(r32.cpu().numpy()))
        _, found = index.search(np.ascontiguousarray(q32.cpu().numpy()), kc + int(exclude_self))
        idx = torch.from_numpy(found).long()
        if exclude_self:
            is_self = idx == torch.arange(q32.shape[0])[:, None]
            # A query missing from its own list (float32 ties with duplicates) drops its last candidate instead.
            is_self[~is_self.any(dim=1), -1] = True
            idx = idx[~is_self].reshape(q32.shape[0], kc)
        return idx.to(reference.device)
    out = torch.empty(q32.shape[0], kc, dtype=torch.long, device=reference.device)
    r_sq = r32.pow(2).sum(dim=1)
    for start in range(0, q32.shape[0], chunk_size):
        qb = q32[start:start + chunk_size]
        # Larger is closer: cosine of normalised rows, or 2<q, r> - |r|^2 (= -|q - r|^2 up to a per-query constant).
        s = qb @ r32.T if metric == "cosine" else 2.0 * (qb @ r32.T) - r_sq[None, :]
        if exclude_self:
            m = qb.shape[0]
            s[torch.arange(m), torch.arange(start, start + m)] = -torch.inf
        out[start:start + chunk_size] = s.topk(kc, dim=1).indices
    return out
