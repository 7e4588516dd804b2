import math

import pytest
import torch

from geossl.errors import GeosslError
from geossl.ot.self_transport import SelfTransport, self_transport, self_transport_log_plan


def _features(n=20, d=8, seed=0, dtype=torch.float64):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def reference_log_plan(X, reg, n_iters, diag=1e5):
    """The spec's algorithm written out: unit marginals, row update first, log domain (ot.md §9.1)."""
    Xn = X / X.norm(dim=1, keepdim=True)
    D = 1 - Xn @ Xn.T
    D.fill_diagonal_(diag)
    n = X.shape[0]
    f, g = torch.zeros(n, dtype=X.dtype), torch.zeros(n, dtype=X.dtype)
    for _ in range(n_iters):
        f = -reg * torch.logsumexp((g[None, :] - D) / reg, dim=1)  # log of unit marginals is 0
        g = -reg * torch.logsumexp((f[:, None] - D) / reg, dim=0)
    return (f[:, None] + g[None, :] - D) / reg


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_iters", [1, 5, 10])
def test_matches_the_written_out_algorithm(seed, n_iters):
    X = _features(seed=seed)
    ours = self_transport_log_plan(X, 0.1, n_iters)
    ref = reference_log_plan(X, 0.1, n_iters)
    finite = ref > -1e4  # the masked diagonal is -1e6 in both; compare the rest tightly
    assert torch.allclose(ours[finite], ref[finite], atol=1e-8)


def test_unit_marginals_and_symmetry_at_convergence():
    W = self_transport_log_plan(_features(), 0.1, 200).exp()
    assert torch.allclose(W.sum(0), torch.ones(20, dtype=W.dtype), atol=1e-10)  # columns exact
    assert torch.allclose(W.sum(1), torch.ones(20, dtype=W.dtype), atol=1e-6)  # rows at convergence
    assert torch.allclose(W, W.T, atol=1e-6)
    assert W.diagonal().max() < 1e-100  # self-matches excluded


def test_features_have_unit_diagonal_and_max_one_and_are_symmetric_at_convergence():
    S = self_transport(_features(), 0.1, 200)
    assert torch.equal(S.diagonal(), torch.ones(20, dtype=S.dtype))
    off = S[~torch.eye(20, dtype=torch.bool)]
    assert off.max() <= 1.0 + 1e-12 and off.min() >= 0
    assert torch.allclose(S, S.T, atol=1e-6)


def test_permutation_equivariance():
    X = _features(seed=3)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    S, Sp = self_transport(X, 0.1, 10), self_transport(X[perm], 0.1, 10)
    assert torch.allclose(Sp, S[perm][:, perm], atol=1e-10)


def test_batched_equals_loop_and_module_and_gradients():
    X = torch.stack([_features(seed=s) for s in range(3)]).requires_grad_(True)
    batched = SelfTransport(reg=0.2, n_iters=5)(X)
    loop = torch.stack([self_transport(X[i], 0.2, 5) for i in range(3)])
    assert batched.shape == (3, 20, 20) and torch.allclose(batched, loop, atol=1e-12)
    batched.sum().backward()
    assert torch.isfinite(X.grad).all() and X.grad.abs().sum() > 0


def test_euclidean_and_sigmoid_options():
    X = _features(dtype=torch.float32)
    S = self_transport(X, metric="euclidean", sigmoid=True)
    assert S.dtype == torch.float32 and torch.isfinite(S).all() and S.shape == (20, 20)


def test_more_iterations_reduce_asymmetry():
    X = _features()
    asym = [(W - W.T).abs().max().item() for W in (self_transport_log_plan(X, 0.1, t).exp() for t in (1, 5, 50))]
    assert asym[0] > asym[1] > asym[2]
    assert math.isfinite(asym[2])


@pytest.mark.parametrize(
    "kwargs,fragment",
    [({"X": torch.randn(5)}, "shape"), ({"X": torch.randn(1, 4)}, "at least 2"), ({"reg": 0.0}, "reg"),
     ({"n_iters": 0}, "n_iters"), ({"metric": "l1"}, "metric"), ({"X": torch.full((3, 2), float("nan"))}, "NaN")],
)
def test_bad_inputs(kwargs, fragment):
    args = {"X": torch.randn(6, 3), **kwargs}
    with pytest.raises(GeosslError, match=fragment):
        self_transport(**args)
