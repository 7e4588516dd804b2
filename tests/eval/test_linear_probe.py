"""L-BFGS linear probe (evaluation.md §2, preset lbfgs); oracle: scikit-learn LogisticRegression on digits."""

from __future__ import annotations

import math

import pytest
import torch

from geossl.errors import GeosslError
from geossl.eval import linear_probe, stratified_split

datasets = pytest.importorskip("sklearn.datasets")
threadpoolctl = pytest.importorskip("threadpoolctl")  # ships with scikit-learn


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """scikit-learn's solver on one BLAS thread: the tests share 2 cores, where threads only add overhead."""
    with threadpoolctl.threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def digits():
    """Raw 8x8 digit pixels (0..16), a seeded stratified 75/25 split."""
    x, y = datasets.load_digits(return_X_y=True)
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    train_idx, test_idx = stratified_split(y, 0.25, seed=0)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


@pytest.fixture(scope="module")
def digits_probe(digits):
    return linear_probe(*digits)


def test_digits_accuracy_at_least_95(digits, digits_probe):
    out = digits_probe
    assert out["top1"] >= 95.0
    assert out["top1"] <= out["top5"] <= 100.0
    assert out["weight_decay"] in (0.0, 1e-5, 1e-4, 1e-3, 1e-2)
    assert out["val_top1"] is not None and 0.0 <= out["val_top1"] <= 100.0
    assert out["predictions"].shape == digits[3].shape and out["predictions"].dtype == torch.long
    assert out["top1"] == pytest.approx(100.0 * (out["predictions"] == digits[3]).double().mean().item())


@pytest.mark.parametrize("weight_decay", [1e-3, 1e-2])
def test_agrees_with_sklearn_logistic_regression(digits, weight_decay):
    linear_model = pytest.importorskip("sklearn.linear_model")
    x_tr, y_tr, x_te, y_te = digits
    ours = linear_probe(x_tr, y_tr, x_te, y_te, weight_decays=(weight_decay,), max_iter=500)
    # Same standardisation (train mean, population std; constant pixels keep std 1) and C = 1 / (λ · n).
    mean, std = x_tr.double().mean(0), x_tr.double().std(0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    clf = linear_model.LogisticRegression(C=1.0 / (weight_decay * len(y_tr)), max_iter=10_000, tol=1e-8)
    clf.fit(((x_tr - mean) / std).numpy(), y_tr.numpy())
    sk_pred = torch.as_tensor(clf.predict(((x_te - mean) / std).numpy()))
    sk_top1 = 100.0 * (sk_pred == y_te).double().mean().item()
    assert abs(ours["top1"] - sk_top1) <= 1.0
    assert (ours["predictions"] == sk_pred).double().mean() >= 0.99


def test_weight_decay_maps_to_sklearn_c(digits):
    """The fitted coefficients equal scikit-learn's with C = 1 / (λ · n): the objective mapping is exact."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    from geossl.eval.linear import _at_most_threads, _fit, _Standardizer

    x_tr, y_tr = digits[0].double(), digits[1]
    x = _Standardizer(x_tr)(x_tr)
    wd = 1e-3
    with _at_most_threads(1):
        w, b = _fit(x, y_tr, 10, wd, max_iter=1000)
    clf = linear_model.LogisticRegression(C=1.0 / (wd * len(y_tr)), max_iter=10_000, tol=1e-10).fit(x.numpy(),
                                                                                                   y_tr.numpy())
    coef, intercept = torch.as_tensor(clf.coef_), torch.as_tensor(clf.intercept_)
    assert torch.allclose(w, coef, atol=2e-3 * coef.abs().max())
    assert torch.allclose(b - b.mean(), intercept - intercept.mean(), atol=2e-3 * intercept.abs().max())


def test_deterministic_across_calls(digits, digits_probe):
    threads = torch.get_num_threads()
    a = digits_probe
    with torch.inference_mode():  # also works in a no-grad context such as a validation hook, on inference tensors
        b = linear_probe(*(t.clone() for t in digits))
    assert torch.get_num_threads() == threads  # the single-thread cap is undone
    assert torch.equal(a["predictions"], b["predictions"])
    assert a["top1"] == b["top1"] and a["weight_decay"] == b["weight_decay"] and a["val_top1"] == b["val_top1"]


def test_explicit_validation_split_and_single_weight_decay(digits):
    x_tr, y_tr, x_te, y_te = digits
    fit_idx, val_idx = stratified_split(y_tr, 0.2, seed=1)
    out = linear_probe(x_tr[fit_idx], y_tr[fit_idx], x_te, y_te, val_features=x_tr[val_idx],
                       val_labels=y_tr[val_idx], weight_decays=(1e-2, 1e-4))
    assert out["weight_decay"] in (1e-2, 1e-4) and out["val_top1"] >= 90.0
    single = linear_probe(x_tr, y_tr, x_te, y_te, weight_decays=(1e-3,))
    assert single["val_top1"] is None and single["weight_decay"] == 1e-3


def test_per_class_accuracy_and_absent_class():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 8, generator=g) * 4
    y_tr = torch.arange(200) % 4
    x_tr = centers[y_tr] + torch.randn(200, 8, generator=g)
    y_te = torch.tensor([0, 0, 1, 1, 2, 2])  # class 3 absent from the test set
    x_te = centers[y_te] + torch.randn(6, 8, generator=g)
    out = linear_probe(x_tr, y_tr, x_te, y_te, weight_decays=(1e-3,))
    pca = out["per_class_accuracy"]
    assert pca.shape == (4,) and math.isnan(pca[3].item())
    for c in range(3):
        m = y_te == c
        assert pca[c].item() == pytest.approx(100.0 * (out["predictions"][m] == c).double().mean().item())


def test_stratified_split_keeps_class_proportions():
    y = torch.cat([torch.zeros(100), torch.ones(50), torch.full((10,), 2), torch.full((1,), 3)]).long()
    kept, held = stratified_split(y, 0.1, seed=0)
    assert torch.equal(torch.sort(torch.cat([kept, held])).values, torch.arange(161))
    assert torch.bincount(y[held], minlength=4).tolist() == [10, 5, 1, 0]
    assert torch.equal(held, stratified_split(y, 0.1, seed=0)[1])
    assert not torch.equal(held, stratified_split(y, 0.1, seed=1)[1])


def test_user_errors(digits):
    x_tr, y_tr, x_te, y_te = digits
    with pytest.raises(GeosslError, match="rows"):
        linear_probe(x_tr, y_tr[:-1], x_te, y_te)
    with pytest.raises(GeosslError, match="rows"):
        linear_probe(x_tr, y_tr, x_te[:-1], y_te)
    with pytest.raises(GeosslError, match="both"):
        linear_probe(x_tr, y_tr, x_te, y_te, val_features=x_te)
    with pytest.raises(GeosslError, match="weight_decays"):
        linear_probe(x_tr, y_tr, x_te, y_te, weight_decays=())
    with pytest.raises(GeosslError, match="-1"):
        linear_probe(x_tr, torch.full_like(y_tr, -1), x_te, y_te)
    with pytest.raises(GeosslError, match="dimension"):
        linear_probe(x_tr, y_tr, x_te[:, :10], y_te)


def test_sgd_solver_matches_lbfgs_on_digits():
    """The SGD preset (lr and λ swept on a held-out split) reaches the L-BFGS accuracy within a couple of points."""
    from sklearn.datasets import load_digits

    from geossl.eval.linear import linear_probe

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1200], perm[1200:]
    lbfgs = linear_probe(x[tr], y[tr], x[te], y[te], seed=0)
    sgd = linear_probe(x[tr], y[tr], x[te], y[te], seed=0, solver="sgd", weight_decays=(0.0, 1e-3))
    assert sgd["top1"] > 90 and abs(sgd["top1"] - lbfgs["top1"]) < 3
    assert sgd["lr"] in (0.01, 0.1, 1.0)
    again = linear_probe(x[tr], y[tr], x[te], y[te], seed=0, solver="sgd", weight_decays=(0.0, 1e-3))
    assert torch.equal(again["predictions"], sgd["predictions"])  # seeded: deterministic


def test_unknown_solver_is_refused():
    from geossl.eval.linear import linear_probe

    with pytest.raises(GeosslError, match="solver"):
        linear_probe(torch.randn(10, 3), torch.arange(10) % 2, torch.randn(4, 3), torch.arange(4) % 2, solver="adam")
