"""course_utils: what the CNN course's lessons share: data, training loop, models, plots, checkpoints, set-up.

``import course_utils as cu`` is quick and changes no global state: each part is imported on first use.
These 20 names are the whole API; ``cu.data``, ``cu.plots`` and ``cu.distributed`` hold the rest.
"""

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# module -> the names it defines (private modules: each object has one public path, the one below)
_HOMES = {
    "_setup": ("set_seed", "get_device", "environment_report"),
    "_fit": ("fit",),
    "_loop": ("train_one_epoch", "evaluate", "predict"),
    "_history": ("History",),
    "_diagnose": ("NonFiniteLossError",),
    "_checkpoint": ("save_checkpoint", "load_checkpoint"),
    "_models": ("SimpleCNN", "ImprovedCNN", "resnet18_transfer", "count_parameters", "trainable_summary"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "SMOKE",  # smoke mode (COURSE_SMOKE=1): small subsets and one short epoch; read at every use
    "set_seed",  # setup
    "get_device",
    "environment_report",
    "data",  # data, plots, several processes
    "plots",
    "distributed",
    "fit",  # training
    "train_one_epoch",
    "evaluate",
    "predict",
    "History",
    "NonFiniteLossError",
    "save_checkpoint",
    "load_checkpoint",
    "SimpleCNN",  # models
    "ImprovedCNN",
    "resnet18_transfer",
    "count_parameters",
    "trainable_summary",
]


def __getattr__(name: str) -> Any:
    if name == "SMOKE":  # not stored: an environment change after the import is seen
        return importlib.import_module("._setup", __name__).smoke_mode()
    if name in ("data", "plots", "distributed"):  # the namespaces
        return importlib.import_module(f".{name}", __name__)
    if name in _HOME:
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
        globals()[name] = value  # the next use finds it directly
        return value
    raise AttributeError(f"module 'course_utils' has no attribute {name!r}; its API is: {', '.join(__all__)}")


def __dir__() -> list[str]:
    return [*__all__, "__version__"]


if TYPE_CHECKING:  # what editors and type checkers see; nothing of it is imported at run time
    from . import data, distributed, plots
    from ._checkpoint import load_checkpoint, save_checkpoint
    from ._diagnose import NonFiniteLossError
    from ._fit import fit
    from ._history import History
    from ._loop import evaluate, predict, train_one_epoch
    from ._models import ImprovedCNN, SimpleCNN, count_parameters, resnet18_transfer, trainable_summary
    from ._setup import environment_report, get_device, set_seed

    SMOKE: bool
