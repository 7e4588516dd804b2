"""Evaluation protocols on frozen features, online probes, collapse monitors and reports (``evaluation.md``).

Typical offline evaluation::

    from geossl.eval import extract_features, knn_classify, linear_probe, write_report

    train_f, train_y = extract_features(encoder, train_set, preprocess=normalise)
    test_f, test_y = extract_features(encoder, test_set, preprocess=normalise)
    knn = knn_classify(train_f, train_y, test_f, test_y)          # k = 20, T = 0.07 (DINO)
    lin = linear_probe(train_f, train_y, test_f, test_y)          # L-BFGS logistic regression
"""

from geossl.eval.features import FeatureCache, extract_features
from geossl.eval.knn import knn_classify, knn_predict
from geossl.eval.linear import linear_probe, stratified_split
from geossl.eval.monitors import collapse_warnings, mean_pairwise_cosine, per_dim_std, rankme
from geossl.eval.online import OnlineLinearProbe, knn_accuracy_on_split
from geossl.eval.plots import plot_confusion_matrix, plot_embedding_2d, plot_loss_curve
from geossl.eval.report import format_results_table, rich_results_table, write_report

__all__ = [
    "FeatureCache",
    "OnlineLinearProbe",
    "collapse_warnings",
    "extract_features",
    "format_results_table",
    "knn_accuracy_on_split",
    "knn_classify",
    "knn_predict",
    "linear_probe",
    "mean_pairwise_cosine",
    "per_dim_std",
    "plot_confusion_matrix",
    "plot_embedding_2d",
    "plot_loss_curve",
    "rankme",
    "rich_results_table",
    "stratified_split",
    "write_report",
]
