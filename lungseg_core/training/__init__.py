"""Training and evaluation infrastructure: dataset readers, slice sampling, augmentation, losses, configs,
and the (optionally distributed) training loop that ends in a model package.

``lungseg train CONFIG.json`` is the command-line entry point (see docs/training.md).
"""

from lungseg_core.training.config import DataSource, TrainConfig, load_config
from lungseg_core.training.datasets import LAYOUTS, Case, Dataset, open_dataset
from lungseg_core.training.trainer import TrainResult, train

__all__ = [
    "LAYOUTS",
    "Case",
    "DataSource",
    "Dataset",
    "TrainConfig",
    "TrainResult",
    "load_config",
    "open_dataset",
    "train",
]
