import math

import pytest
import torch
import torch.nn.functional as F

from geossl.losses import NTXentLoss, info_nce, nt_xent


def reference_nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, tau: float) -> torch.Tensor:
    """The SimCLR formula written out with a double loop over anchors (spec ssl_methods.md §1.1)."""
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    n = z_a.shape[0]
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        num = torch.exp(z[i] @ z[j] / tau)
        den = sum(torch.exp(z[i] @ z[k] / tau) for k in range(2 * n) if k != i)
        total = total - torch.log(num / den)
    return total / (2 * n)


@pytest.mark.parametrize("n,d,tau", [(5, 8, 0.1), (16, 32, 0.5), (3, 4, 1.0)])
def test_nt_xent_equals_double_loop_reference(n, d, tau):
    g = torch.Generator().manual_seed(n * d)
    z_a = torch.randn(n, d, generator=g, dtype=torch.float64)
    z_b = torch.randn(n, d, generator=g, dtype=torch.float64)
    assert torch.allclose(nt_xent(z_a, z_b, tau), reference_nt_xent(z_a, z_b, tau), atol=1e-10)


def test_nt_xent_equals_cross_entropy_with_2n_minus_1_candidates():
    torch.manual_seed(0)
    n, tau = 6, 0.2
    z_a, z_b = torch.randn(n, 10, dtype=torch.float64), torch.randn(n, 10, dtype=torch.float64)
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    logits = z @ z.T / tau
    logits.fill_diagonal_(-float("inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    assert torch.allclose(nt_xent(z_a, z_b, tau), F.cross_entropy(logits, targets), atol=1e-10)


def test_identical_embeddings_give_log_2n_minus_1():
    # Spec §0.2: all embeddings identical -> log(2N - 1); 2.1972 = log 9 for N = 5.
    z = torch.ones(5, 4)
    assert NTXentLoss(temperature=0.1)(z, z).item() == pytest.approx(math.log(9), abs=1e-5)


def test_loss_is_symmetric_in_views_and_permutation_invariant():
    torch.manual_seed(1)
    z_a, z_b = torch.randn(8, 16, dtype=torch.float64), torch.randn(8, 16, dtype=torch.float64)
    loss = nt_xent(z_a, z_b, 0.3)
    assert torch.allclose(loss, nt_xent(z_b, z_a, 0.3))
    perm = torch.randperm(8)
    assert torch.allclose(loss, nt_xent(z_a[perm], z_b[perm], 0.3))


def test_aligned_views_have_lower_loss_than_random_pairs():
    torch.manual_seed(2)
    z = torch.randn(32, 64)
    assert nt_xent(z, z + 0.01 * torch.randn_like(z), 0.1) < nt_xent(z, torch.randn(32, 64), 0.1) - 1.0


def test_info_nce_skips_anchors_without_positive():
    torch.manual_seed(3)
    z = torch.randn(4, 8, dtype=torch.float64)
    pos = torch.zeros(4, 4, dtype=torch.bool)
    pos[0, 1] = pos[1, 0] = True  # anchors 2 and 3 have no positive
    full = info_nce(z, pos, 0.5)
    only = info_nce(z, pos[:2], 0.5, anchors=torch.arange(2))
    assert torch.allclose(full, only)


def test_bad_shapes_and_temperature_are_rejected():
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0)


def test_gradients_flow_to_both_views():
    z_a = torch.randn(4, 8, requires_grad=True)
    z_b = torch.randn(4, 8, requires_grad=True)
    NTXentLoss()(z_a, z_b).backward()
    assert z_a.grad.abs().sum() > 0 and z_b.grad.abs().sum() > 0
