"""The training engine (Lightning): configuration, run directories, pretraining and evaluation runs.

Importing this package does not import Lightning; :func:`pretrain` does, when called.
"""

from geossl.train.checkpoint import LoadedEncoder, load_encoder
from geossl.train.config import PretrainConfig
from geossl.train.evaluate import EvalOptions, embed_dataset, evaluate_checkpoint, evaluate_features
from geossl.train.run import PretrainResult, pretrain

__all__ = [
    "EvalOptions",
    "LoadedEncoder",
    "PretrainConfig",
    "PretrainResult",
    "embed_dataset",
    "evaluate_checkpoint",
    "evaluate_features",
    "load_encoder",
    "pretrain",
]
