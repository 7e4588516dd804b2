"""Classic SSL losses against lightly's implementations and the papers' formulas written out plainly."""

import math

import pytest
import torch
import torch.nn.functional as F
from lightly.loss import BarlowTwinsLoss as LightlyBarlowTwins
from lightly.loss import MMCRLoss as LightlyMMCR
from lightly.loss import NegativeCosineSimilarity as LightlyNegCos
from lightly.loss import NTXentLoss as LightlyNTXent
from lightly.loss import VICRegLoss as LightlyVICReg

from geossl.errors import GeosslError
from geossl.losses.barlow_twins import BarlowTwinsLoss, barlow_twins_loss, cross_correlation, cross_product_norms, off_diagonal
from geossl.losses.mmcr import MMCRLoss, mmcr_loss
from geossl.losses.moco import MemoryQueue, MoCoLoss, MoCoV3Loss, moco_loss, moco_v3_contrastive
from geossl.losses.negative_cosine import NegativeCosineSimilarity
from geossl.losses.vicreg import VICRegLoss, covariance_term, variance_term, vicreg_loss


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _hadamard(n: int) -> torch.Tensor:
    """Sylvester Hadamard matrix (n a power of 2): ±1 entries, orthogonal columns, first column all ones."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


# -- negative cosine similarity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 16), (3, 256)])
def test_simsiam_form_equals_lightly(shape):
    p, z = _randn(*shape, seed=1), _randn(*shape, seed=2)
    assert torch.allclose(NegativeCosineSimilarity("simsiam")(p, z), LightlyNegCos()(p, z), atol=1e-6)


def test_byol_form_is_squared_distance_of_normalised_vectors():
    p, z = _randn(10, 32, seed=3, dtype=torch.float64), _randn(10, 32, seed=4, dtype=torch.float64)
    # BYOL eq. 2: ‖p/‖p‖ − z/‖z‖‖², batch mean; and 2 − 2 cos via lightly's cosine.
    written = torch.stack([(p[i] / p[i].norm() - z[i] / z[i].norm()).pow(2).sum() for i in range(10)]).mean()
    loss = NegativeCosineSimilarity("byol")(p, z)
    assert torch.allclose(loss, written, atol=1e-12)
    assert torch.allclose(loss, 2 + 2 * LightlyNegCos()(p, z), atol=1e-12)


def test_negative_cosine_gradient_flows_into_both_unless_detached():
    p, z = _randn(4, 8, seed=5).requires_grad_(), _randn(4, 8, seed=6).requires_grad_()
    NegativeCosineSimilarity()(p, z.detach()).backward()
    assert p.grad is not None and z.grad is None


def test_negative_cosine_bad_input():
    with pytest.raises(GeosslError, match="form"):
        NegativeCosineSimilarity("simclr")
    with pytest.raises(GeosslError, match="same shape"):
        NegativeCosineSimilarity()(torch.randn(4, 8), torch.randn(4, 9))


# -- Barlow Twins -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,d,lam", [(16, 32, 5e-3), (64, 8, 5.1e-3), (5, 128, 0.1)])
def test_barlow_twins_equals_lightly_loss_and_gradient(n, d, lam):
    z_a, z_b = _randn(n, d, seed=n), _randn(n, d, seed=n + 1) + 0.5 * _randn(n, d, seed=n)
    ours_a, ours_b = z_a.clone().requires_grad_(), z_b.clone().requires_grad_()
    ref_a, ref_b = z_a.clone().requires_grad_(), z_b.clone().requires_grad_()
    loss = BarlowTwinsLoss(lambda_=lam)(ours_a, ours_b)
    ref = LightlyBarlowTwins(lambda_param=lam)(ref_a, ref_b)
    loss.backward()
    ref.backward()
    assert abs(loss.item() - ref.item()) <= 1e-5 * max(1.0, abs(ref.item()))
    assert torch.allclose(ours_a.grad, ref_a.grad, atol=1e-5, rtol=1e-4)
    assert torch.allclose(ours_b.grad, ref_b.grad, atol=1e-5, rtol=1e-4)


def test_barlow_twins_formula_written_out_in_float64():
    n, d, lam = 12, 6, 5e-3
    z_a, z_b = _randn(n, d, seed=7, dtype=torch.float64), _randn(n, d, seed=8, dtype=torch.float64)
    # Standardise each feature over the batch (biased std, BatchNorm's eps 1e-5), C = Âᵀ B̂ / N.
    a = (z_a - z_a.mean(0)) / torch.sqrt(z_a.var(0, unbiased=False) + 1e-5)
    b = (z_b - z_b.mean(0)) / torch.sqrt(z_b.var(0, unbiased=False) + 1e-5)
    total = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[k, i] * b[k, j] for k in range(n)) / n
            total = total + ((1 - c_ij) ** 2 if i == j else lam * c_ij**2)
    assert torch.allclose(barlow_twins_loss(z_a, z_b, lam), total, atol=1e-12)


@pytest.mark.parametrize("n, d", [(8, 64), (64, 8), (16, 33)])
def test_cross_product_norms_gram_route_equals_the_d_by_d_product(n, d):
    a, b = _randn(n, d, seed=20, dtype=torch.float64), _randn(n, d, seed=21, dtype=torch.float64)
    m = a.T @ b
    for use_gram in (True, False, None):
        diag, frob = cross_product_norms(a, b, use_gram=use_gram)
        assert torch.allclose(diag, torch.diagonal(m), atol=1e-12)
        assert torch.allclose(frob, m.pow(2).sum(), rtol=1e-12)
    # The same object for both arguments (VICReg's covariance) reuses one Gram matrix.
    assert torch.allclose(cross_product_norms(a, a, use_gram=True)[1], (a.T @ a).pow(2).sum(), rtol=1e-12)


def test_barlow_twins_gram_route_matches_the_explicit_matrix_in_float32():
    # Batch 64 < D/2 = 256 takes the Gram route; compare the loss and its gradient with the (D, D) matrix in float64.
    z_a, z_b = _randn(64, 512, seed=22).requires_grad_(), _randn(64, 512, seed=23).requires_grad_()
    a64, b64 = z_a.detach().double().requires_grad_(), z_b.detach().double().requires_grad_()
    loss = barlow_twins_loss(z_a, z_b, 5e-3)
    c = cross_correlation(a64, b64)
    reference = (torch.diagonal(c) - 1).pow(2).sum() + 5e-3 * off_diagonal(c).pow(2).sum()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    loss.backward()
    reference.backward()
    assert torch.allclose(z_a.grad.double(), a64.grad, rtol=1e-4, atol=1e-7)
    assert torch.allclose(z_b.grad.double(), b64.grad, rtol=1e-4, atol=1e-7)


def test_barlow_twins_uncentred_is_thesis_equation_2_6():
    n, d = 10, 5
    z_a, z_b = _randn(n, d, seed=9, dtype=torch.float64), _randn(n, d, seed=10, dtype=torch.float64)
    # C_ij = Σ_b a_bi b_bj / (sqrt(Σ_b a_bi²) sqrt(Σ_b b_bj²)): the cosine between raw feature columns.
    written = torch.tensor([[F.cosine_similarity(z_a[:, i], z_b[:, j], dim=0) for j in range(d)] for i in range(d)], dtype=torch.float64)
    assert torch.allclose(cross_correlation(z_a, z_b, center=False, eps=0.0), written, atol=1e-12)


def test_barlow_twins_is_zero_for_standardised_decorrelated_identical_views():
    # Hadamard columns 2..N: entries ±1, mean 0, variance 1, mutually orthogonal: C = I (up to eps).
    z = _hadamard(16)[:, 1:]
    assert barlow_twins_loss(z, z, 5e-3, eps=0.0).item() == pytest.approx(0.0, abs=1e-20)
    assert barlow_twins_loss(z, z, 5e-3).item() < 1e-8
    # Uncentred form with batch = dim: a scaled orthogonal matrix has orthogonal unit-cosine columns.
    q, _ = torch.linalg.qr(_randn(8, 8, seed=11, dtype=torch.float64))
    # Not exactly 0: the off-diagonal term is ||C||_F^2 - sum(diag(C)^2), a difference of two sums near D, whose
    # float64 rounding (~D * 2e-16, scaled by lambda) depends on the BLAS; a wrong C would give O(1).
    assert barlow_twins_loss(3 * q, 3 * q, 5e-3, center=False, eps=0.0).item() < 1e-12
    # Any correlation between features raises it.
    mixed = z.clone()
    mixed[:, 1] = mixed[:, 1] + 0.5 * mixed[:, 0]
    assert barlow_twins_loss(mixed, mixed, 5e-3).item() > 1e-3


def test_barlow_twins_bad_input():
    with pytest.raises(GeosslError, match="lambda_"):
        BarlowTwinsLoss(lambda_=-1)
    with pytest.raises(GeosslError, match="same shape"):
        BarlowTwinsLoss()(torch.randn(4, 8), torch.randn(5, 8))


# -- VICReg -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,d", [(16, 32), (64, 8), (3, 5), (8, 64)])
def test_vicreg_equals_lightly_loss_and_gradient(n, d):
    z_a, z_b = 0.5 * _randn(n, d, seed=n), 0.5 * _randn(n, d, seed=n + 1)
    ours_a, ours_b = z_a.clone().requires_grad_(), z_b.clone().requires_grad_()
    ref_a, ref_b = z_a.clone().requires_grad_(), z_b.clone().requires_grad_()
    loss = VICRegLoss()(ours_a, ours_b)
    ref = LightlyVICReg()(ref_a, ref_b)
    loss.backward()
    ref.backward()
    assert abs(loss.item() - ref.item()) <= 1e-5 * max(1.0, abs(ref.item()))
    assert torch.allclose(ours_a.grad, ref_a.grad, atol=1e-6, rtol=1e-4)
    assert torch.allclose(ours_b.grad, ref_b.grad, atol=1e-6, rtol=1e-4)


def test_vicreg_paper_formula_written_out():
    """reference_scaling=False: the spec's formulas (ssl_methods.md §1.7) literally, with loops."""
    n, d, lam, mu, nu, eps = 7, 4, 25.0, 25.0, 1.0, 1e-4
    z_a, z_b = _randn(n, d, seed=12, dtype=torch.float64), _randn(n, d, seed=13, dtype=torch.float64)

    def v(z):
        total = 0.0
        for j in range(d):
            mean = sum(z[i, j] for i in range(n)) / n
            var = sum((z[i, j] - mean) ** 2 for i in range(n)) / (n - 1)
            total = total + max(0.0, 1.0 - math.sqrt(var + eps))
        return total / d

    def c(z):
        zc = z - z.mean(0)
        total = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    total = total + (sum(zc[k, i] * zc[k, j] for k in range(n)) / (n - 1)) ** 2
        return total / d

    s = sum(((z_a[i] - z_b[i]) ** 2).sum() for i in range(n)) / n
    written = lam * s + mu * (v(z_a) + v(z_b)) + nu * (c(z_a) + c(z_b))
    loss = vicreg_loss(z_a, z_b, lam, mu, nu, eps, reference_scaling=False)
    assert torch.allclose(loss, torch.as_tensor(written, dtype=torch.float64), atol=1e-10)


def test_vicreg_collapsed_batch_maximises_the_variance_term():
    eps = 1e-4
    collapsed = _randn(1, 16, seed=14, dtype=torch.float64).expand(32, 16).clone()
    assert variance_term(collapsed, eps=eps).item() == pytest.approx(1 - math.sqrt(eps), abs=1e-12)
    for seed in range(5):
        spread = _randn(32, 16, seed=seed, dtype=torch.float64) * (0.1 + seed / 4)
        assert variance_term(spread, eps=eps) < variance_term(collapsed, eps=eps)
    # Every std >= γ: the hinge is inactive.
    assert variance_term(3 * _randn(64, 8, seed=15)).item() == 0.0


def test_vicreg_covariance_zero_for_decorrelated_features():
    z = _hadamard(16)[:, 1:]
    assert covariance_term(z).item() == pytest.approx(0.0, abs=1e-20)
    assert covariance_term(_randn(16, 15, seed=16, dtype=torch.float64)).item() > 1e-3


def test_vicreg_covariance_gram_route_equals_the_written_formula():
    z = _randn(20, 96, seed=24, dtype=torch.float64)  # N < D/2: Gram route
    zc = z - z.mean(0)
    cov = zc.T @ zc / 19
    written = sum(cov[i, j] ** 2 for i in range(96) for j in range(96) if i != j) / 96
    assert covariance_term(z).item() == pytest.approx(float(written), rel=1e-10)


def test_vicreg_bad_input():
    with pytest.raises(GeosslError, match="at least 2 samples"):
        VICRegLoss()(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(GeosslError, match="var"):
        VICRegLoss(var=-1.0)


# -- MoCo v2 ----------------------------------------------------------------------------------------------------


def test_moco_equals_lightly_memory_bank_over_several_steps():
    """Same queue: same loss and gradient every step, and the queue evolves like lightly's memory bank."""
    n, d, k, tau = 4, 16, 12, 0.2  # K a multiple of the batch: lightly's bank drops keys otherwise
    torch.manual_seed(0)
    ours = MoCoLoss(temperature=tau, queue_size=k, dim=d)
    ref = LightlyNTXent(temperature=tau, memory_bank_size=(k, d))
    ref.memory_bank.bank.copy_(ours.queue.keys)
    for step in range(5):
        q, key = _randn(n, d, seed=2 * step), _randn(n, d, seed=2 * step + 1)
        q_ours, q_ref = q.clone().requires_grad_(), q.clone().requires_grad_()
        loss = ours(q_ours, key)
        ref_loss = ref(q_ref, key)  # lightly enqueues inside forward when q requires grad
        loss.backward()
        ref_loss.backward()
        ours.enqueue(key)
        assert abs(loss.item() - ref_loss.item()) < 1e-5
        assert torch.allclose(q_ours.grad, q_ref.grad, atol=1e-6)
        assert torch.allclose(ours.queue.keys, ref.memory_bank.bank, atol=1e-7)
        assert int(ours.queue.ptr) == int(ref.memory_bank.bank_ptr)


def test_moco_loss_is_infonce_with_explicit_negatives():
    n, d, k, tau = 5, 8, 7, 0.2
    q, key = _randn(n, d, seed=20, dtype=torch.float64), _randn(n, d, seed=21, dtype=torch.float64)
    queue = F.normalize(_randn(k, d, seed=22, dtype=torch.float64), dim=1)
    total = 0.0
    for i in range(n):
        qi, ki = q[i] / q[i].norm(), key[i] / key[i].norm()
        pos = torch.exp(qi @ ki / tau)
        neg = sum(torch.exp(qi @ queue[j] / tau) for j in range(k))
        total = total - torch.log(pos / (pos + neg))
    assert torch.allclose(moco_loss(q, key, queue, tau), total / n, atol=1e-12)


def test_queue_is_fifo_with_wrap_around():
    queue = MemoryQueue(size=5, dim=2)
    batches = [torch.full((2, 2), float(i)) for i in range(1, 5)]  # 8 keys through 5 slots
    for b in batches:
        queue.enqueue(b)
    # Keys in arrival order 1,1,2,2,3,3,4,4; the newest 5 stay, oldest overwritten first (ring).
    assert queue.keys[:, 0].tolist() == [3.0, 4.0, 4.0, 2.0, 3.0]
    assert int(queue.ptr) == 3  # slot of the oldest remaining key (the 2)
    oldest_first = torch.roll(queue.keys[:, 0], -int(queue.ptr)).tolist()
    assert oldest_first == [2.0, 3.0, 3.0, 4.0, 4.0]


def test_queue_keeps_only_the_newest_keys_of_a_large_batch():
    queue = MemoryQueue(size=3, dim=1)
    queue.enqueue(torch.arange(1.0, 8.0).unsqueeze(1))  # 7 keys > 3 slots
    assert torch.roll(queue.keys[:, 0], -int(queue.ptr)).tolist() == [5.0, 6.0, 7.0]


def test_moco_forward_does_not_change_the_queue_and_keys_get_no_gradient():
    loss_fn = MoCoLoss(queue_size=8, dim=4)
    before = loss_fn.queue.keys.clone()
    q, key = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    loss_fn(q, key).backward()
    assert torch.equal(loss_fn.queue.keys, before) and key.grad is None and q.grad is not None
    loss_fn.enqueue(key)
    assert torch.allclose(loss_fn.queue.keys[:3], F.normalize(key.detach(), dim=1))


def test_moco_bad_input():
    with pytest.raises(GeosslError, match="temperature"):
        MoCoLoss(temperature=0.0)
    with pytest.raises(GeosslError, match="queue size"):
        MoCoLoss(queue_size=0)
    with pytest.raises(GeosslError, match="keys must be"):
        MemoryQueue(4, 3).enqueue(torch.randn(2, 5))


# -- MoCo v3 ----------------------------------------------------------------------------------------------------


def test_moco_v3_formula_written_out():
    n, d, tau = 6, 8, 0.2
    q_a, q_b, k_a, k_b = (_randn(n, d, seed=30 + i, dtype=torch.float64) for i in range(4))

    def ctr(q, k):
        # 2τ · mean_i −log softmax_j(q_i·k_j/τ)[i], q and k normalised.
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        total = 0.0
        for i in range(n):
            den = sum(torch.exp(q[i] @ k[j] / tau) for j in range(n))
            total = total - torch.log(torch.exp(q[i] @ k[i] / tau) / den)
        return 2 * tau * total / n

    written = ctr(q_a, k_b) + ctr(q_b, k_a)
    assert torch.allclose(MoCoV3Loss(temperature=tau)(q_a, q_b, k_a, k_b), written, atol=1e-12)


def test_moco_v3_keys_are_constants():
    q, k = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    moco_v3_contrastive(q, k, 0.2).backward()
    assert q.grad is not None and k.grad is None


# -- MMCR -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,k,d,lam", [(16, 2, 8, 0.0), (8, 4, 32, 5e-3), (32, 6, 16, 0.1)])
def test_mmcr_equals_lightly_on_the_normalised_views(n, k, d, lam):
    z = _randn(n, k, d, seed=n + k)
    ours = z.clone().requires_grad_()
    ref_in = z.clone().requires_grad_()
    zn = F.normalize(ref_in, dim=-1)  # lightly does not normalise; the authors' code and ours do
    half = k // 2
    ref = LightlyMMCR(lmda=lam)(zn[:, :half], zn[:, half:])
    loss = MMCRLoss(lambda_=lam)(ours)
    loss.backward()
    ref.backward()
    assert abs(loss.item() - ref.item()) <= 1e-5 * max(1.0, abs(ref.item()))
    assert torch.allclose(ours.grad, ref_in.grad, atol=1e-5)


def test_mmcr_is_minus_nuclear_norm_of_centroids_written_out():
    n, k, d = 6, 3, 4
    z = _randn(n, k, d, seed=40, dtype=torch.float64)
    centroids = torch.stack([sum(z[i, v] / z[i, v].norm() for v in range(k)) / k for i in range(n)])
    eigenvalues = torch.linalg.eigvalsh(centroids.T @ centroids)  # σ_i² of C
    assert torch.allclose(mmcr_loss(z), -eigenvalues.clamp_min(0).sqrt().sum(), atol=1e-10)


def test_mmcr_nuclear_norm_bound_and_its_equality_case():
    n, d = 32, 8
    z = _randn(n, 2, d, seed=41)
    assert -mmcr_loss(z).item() <= math.sqrt(min(n, d) * n) + 1e-5
    # Equality: views of each image coincide (unit centroids) and centroids orthonormal (N <= d).
    q, _ = torch.linalg.qr(_randn(d, d, seed=42, dtype=torch.float64))
    rows = q[:6]
    same = torch.stack([rows, rows], dim=1)
    assert mmcr_loss(same).item() == pytest.approx(-math.sqrt(6 * 6), abs=1e-10)


def test_mmcr_gradient_is_finite_and_scale_invariant():
    z = (_randn(16, 2, 8, seed=43) + 1e-12 * _randn(16, 2, 8, seed=44)).requires_grad_()
    mmcr_loss(z, 5e-3).backward()
    assert torch.isfinite(z.grad).all()
    assert torch.allclose(mmcr_loss(z.detach()), mmcr_loss(7 * z.detach()), atol=1e-5)


def test_mmcr_bad_input():
    with pytest.raises(GeosslError, match=r"\(N, K, d\)"):
        MMCRLoss()(torch.randn(8, 16))
    with pytest.raises(GeosslError, match="lambda_"):
        MMCRLoss(lambda_=-1.0)
