"""course_utils: the CNN course's helpers for data, training, models, plots, widgets and exercise checks.

Importing it changes no global state. The short API below is what the notebooks use; each submodule
(``cu.data``, ``cu.engine``, ``cu.models``, ``cu.plotting``, ``cu.features``, ``cu.widgets``, ``cu.checks``) holds
the rest.
"""

__version__ = "0.1.0"

from . import (
    blocks,
    checks,
    config,
    data,
    debug,
    distributed,
    engine,
    features,
    fewshot,
    mistakes,
    models,
    plotting,
    speed,
    widgets,
)
from ._diagnose import NonFiniteLossError
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import DATA_DIR, SMOKE
from .engine import evaluate, fit, predict, train_one_epoch
from .features import show_feature_maps, show_filters
from .history import History, Predictions
from .mistakes import plot_confusion_matrix, show_misclassified
from .models import (
    ImprovedCNN,
    SimpleCNN,
    conv_output_size,
    count_parameters,
    resnet18_transfer,
    trainable_summary,
)
from .plotting import plot_history, show_images
from .utils import environment_report, get_device, set_seed

__all__ = [
    "__version__",
    # configuration
    "SMOKE",
    "DATA_DIR",
    # submodules
    "blocks",
    "checks",
    "config",
    "data",
    "debug",
    "distributed",
    "engine",
    "fewshot",
    "models",
    "plotting",
    "mistakes",
    "speed",
    "features",
    "widgets",
    # setup
    "set_seed",
    "get_device",
    "environment_report",
    # training
    "fit",
    "evaluate",
    "predict",
    "train_one_epoch",
    "History",
    "Predictions",
    "NonFiniteLossError",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointError",
    # models
    "SimpleCNN",
    "ImprovedCNN",
    "resnet18_transfer",
    "count_parameters",
    "trainable_summary",
    "conv_output_size",
    # plots
    "show_images",
    "plot_history",
    "plot_confusion_matrix",
    "show_misclassified",
    "show_filters",
    "show_feature_maps",
]
