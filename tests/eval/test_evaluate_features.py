"""`evaluate_features`: the protocols of `geossl evaluate` from Python, on features saved as .npy files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geossl.errors import GeosslError
from geossl.eval.hierarchy import EUROSAT_CLASSES
from geossl.train.evaluate import END_TO_END, PROTOCOLS, EvalOptions, evaluate_features, parse_protocols

#: every protocol that runs on features (fine-tuning needs the images)
FEATURE_PROTOCOLS = [p for p in PROTOCOLS if p not in END_TO_END]


@pytest.fixture
def feats(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 40)
    x = (rng.normal(size=(10, 24))[y] * 1.5 + rng.normal(size=(400, 24))).astype(np.float32)
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path / "f.npy", tmp_path / "y.npy"


def test_every_protocol_from_python(feats, tmp_path):
    f, y = feats
    opts = EvalOptions(knn_k=[5, 20], knn_t=[0.07], label_fractions=[0.1, 1.0], shots=[1], n_query=5, episodes=30)
    res = evaluate_features(f, y, classes=list(EUROSAT_CLASSES), protocols=FEATURE_PROTOCOLS, options=opts,
                            out_dir=tmp_path / "out", plots=False)
    assert {r["protocol"] for r in res.tidy} == set(FEATURE_PROTOCOLS)
    # the wide rows keep the columns older scripts read: r["top1"], r["protocol"].startswith("knn")
    knn = [r for r in res.rows if r["protocol"].startswith("knn")]
    assert [r["protocol"] for r in knn] == ["knn (cosine, k=5, T=0.07)", "knn (cosine, k=20, T=0.07)"]
    assert all(r["top1"] > 80 for r in knn)
    lin = {r["setting"]: r for r in res.tidy if r["protocol"] == "linear" and r["metric"] == "top1"}
    assert lin["L-BFGS, 10% labels"]["n_train"] == 30 and lin["L-BFGS, 100% labels"]["n_train"] == 320
    hier = [r for r in res.tidy if r["protocol"] == "hierarchy"]
    # scored with the k = 20 kNN (the DINO cell of the sweep) and the full-label probe
    assert {r["setting"].split(",")[0] for r in hier} == {"knn cosine", "linear 100% labels"}
    assert any("k=20" in r["setting"] for r in hier)
    assert "no figures" not in res.report.read_text()


def test_unlabelled_features_get_label_free_metrics_on_every_sample(feats, tmp_path):
    f, _ = feats
    res = evaluate_features(f, protocols="representation", out_dir=tmp_path / "o", plots=False)
    assert {r["metric"] for r in res.tidy} == {"dim", "rankme", "effective_rank", "uniformity", "per_dim_std",
                                               "mean_cosine"}
    assert all(r["n_test"] == 400 for r in res.tidy)
    assert json.loads((tmp_path / "o" / "results.json").read_text())["info"]["labels"] == "none"


def test_input_errors(feats, tmp_path):
    f, y = feats
    with pytest.raises(GeosslError, match="Did you mean 'retrieval'"):
        parse_protocols("knn,retreival")
    with pytest.raises(GeosslError, match="no protocol"):
        parse_protocols(" , ")
    with pytest.raises(GeosslError, match="10 class names|3 class names"):
        evaluate_features(f, y, classes=["a", "b", "c"], protocols="knn", plots=False, out_dir=tmp_path / "o")
    np.save(tmp_path / "y2d.npy", np.zeros((400, 2), np.int64))
    with pytest.raises(GeosslError, match="1-D"):
        evaluate_features(f, tmp_path / "y2d.npy", plots=False)
    (tmp_path / "bad.npy").write_text("not numpy")
    with pytest.raises(GeosslError, match="cannot read"):
        evaluate_features(tmp_path / "bad.npy", plots=False)
    np.save(tmp_path / "yf.npy", np.full(400, 0.5))
    with pytest.raises(GeosslError, match="integer"):
        evaluate_features(f, tmp_path / "yf.npy", plots=False)
    with pytest.raises(GeosslError, match="--test-features"):
        evaluate_features(f, y, test_labels=y, plots=False)
    with pytest.raises(GeosslError, match="class names"):
        evaluate_features(f, y, protocols="hierarchy", plots=False, out_dir=tmp_path / "o")
    with pytest.raises(GeosslError, match="--hierarchy"):
        evaluate_features(f, y, classes=[f"c{i}" for i in range(10)], protocols="hierarchy", plots=False,
                          out_dir=tmp_path / "o")
