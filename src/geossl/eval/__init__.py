"""Evaluation protocols on frozen features, online probes, collapse monitors and reports (``evaluation.md``).

Typical offline evaluation::

    from geossl.eval import extract_features, knn_classify, linear_probe, write_report

    train_f, train_y = extract_features(encoder, train_set, preprocess=normalise)
    test_f, test_y = extract_features(encoder, test_set, preprocess=normalise)
    knn = knn_classify(train_f, train_y, test_f, test_y)          # k = 20, T = 0.07 (DINO)
    lin = linear_probe(train_f, train_y, test_f, test_y)          # L-BFGS logistic regression
"""

from geossl.eval.clustering import (
    KMeansResult,
    adjusted_rand_index,
    clustering_accuracy,
    contingency_matrix,
    kmeans,
    kmeans_metrics,
    normalized_mutual_info,
    purity,
    silhouette,
)
from geossl.eval.features import FeatureCache, extract_features
from geossl.eval.fewshot import Episodes, evaluate_fewshot, logistic_logits, prototype_logits, run_episodes, sample_episodes, sot_episode
from geossl.eval.hierarchy import (
    EUROSAT_CLASSES,
    ClassHierarchy,
    accuracy_at_height,
    average_hierarchical_cost,
    eurosat_hierarchy,
    hierarchical_distance_at_k,
    hierarchical_metrics,
    load_hierarchy,
    mistake_severity,
)
from geossl.eval.knn import knn_classify, knn_predict, knn_sweep
from geossl.eval.linear import linear_probe, stratified_split, stratified_subset
from geossl.eval.monitors import collapse_warnings, mean_pairwise_cosine, per_dim_std, rankme
from geossl.eval.online import OnlineLinearProbe, knn_accuracy_on_split
from geossl.eval.plots import (
    plot_confusion_matrix,
    plot_embedding_2d,
    plot_knn_vs_k,
    plot_loss_curve,
    plot_per_class_accuracy,
)
from geossl.eval.report import (
    assemble_report,
    compare_results,
    format_results_table,
    format_tidy_results,
    rich_results_table,
    write_report,
)
from geossl.eval.representation import alignment, effective_rank, uniformity
from geossl.eval.retrieval import nearest_neighbors, retrieval_metrics

__all__ = [
    "ClassHierarchy",
    "EUROSAT_CLASSES",
    "Episodes",
    "FeatureCache",
    "KMeansResult",
    "OnlineLinearProbe",
    "accuracy_at_height",
    "adjusted_rand_index",
    "assemble_report",
    "alignment",
    "average_hierarchical_cost",
    "clustering_accuracy",
    "collapse_warnings",
    "compare_results",
    "contingency_matrix",
    "effective_rank",
    "eurosat_hierarchy",
    "evaluate_fewshot",
    "extract_features",
    "format_results_table",
    "format_tidy_results",
    "hierarchical_distance_at_k",
    "hierarchical_metrics",
    "kmeans",
    "kmeans_metrics",
    "knn_accuracy_on_split",
    "knn_classify",
    "knn_predict",
    "knn_sweep",
    "linear_probe",
    "load_hierarchy",
    "logistic_logits",
    "mean_pairwise_cosine",
    "mistake_severity",
    "nearest_neighbors",
    "normalized_mutual_info",
    "per_dim_std",
    "plot_confusion_matrix",
    "plot_embedding_2d",
    "plot_knn_vs_k",
    "plot_loss_curve",
    "plot_per_class_accuracy",
    "prototype_logits",
    "purity",
    "rankme",
    "retrieval_metrics",
    "rich_results_table",
    "run_episodes",
    "sample_episodes",
    "silhouette",
    "sot_episode",
    "stratified_split",
    "stratified_subset",
    "uniformity",
    "write_report",
]
