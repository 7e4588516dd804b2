"""Result container shared by the Sinkhorn-type solvers."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SinkhornResult:
    """Everything a Sinkhorn-type solver computed (returned with ``return_result=True``).

    Shapes are given for a single problem; batched problems carry a leading batch dimension ``B``.

    Attributes:
        plan: transport plan ``P``, shape (n, m) or (B, n, m).
        f: source dual potential in cost units, shape (n,) or (B, n); ``P_ij = exp((f_i + g_j - M'_ij) / reg)``
            with ``M' = M`` (balanced, unbalanced ``reg_type="entropy"``) or
            ``M'_ij = M_ij - reg log a_i - reg log b_j`` (unbalanced ``reg_type="kl"``).
        g: target dual potential in cost units, shape (m,) or (B, m).
        value: linear cost ``<P, M>`` (the POT ``sinkhorn2`` / ``sinkhorn_unbalanced2`` convention), shape () or (B,).
        objective: full regularised objective at ``P`` (see the solver's docstring), shape () or (B,).
        n_iters: number of iterations run.
        marginal_error: per-problem stopping quantity, shape () or (B,). Balanced: L1 violation of the row marginal
            ``||P 1 - a||_1`` (columns are exact after each iteration). Unbalanced: largest change of the scaled
            potentials ``f / reg``, ``g / reg`` over the last iteration.
        converged: whether ``marginal_error < tol`` for every problem of the batch.
    """

    plan: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    value: torch.Tensor
    objective: torch.Tensor
    n_iters: int
    marginal_error: torch.Tensor
    converged: bool
