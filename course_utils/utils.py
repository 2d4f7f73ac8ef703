"""Small utilities: seeding, picking a device, keeping train/eval modes, and the environment report."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import sys
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from . import config

__all__ = [
    "set_seed",
    "get_device",
    "environment_report",
]


@contextlib.contextmanager
def kept_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Give the model and every submodule back its own train/eval mode when the ``with`` block ends.

    ``model.train(was_training)`` would not do: it sets every submodule alike, so a backbone the learner had
    put in eval mode on purpose would come back in train mode.

    Args:
        model: Any module.

    Yields:
        The same module.
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the ``with`` block; afterwards every submodule has its own mode again.

    Args:
        model: Any module.

    Yields:
        The same module, in eval mode.
    """
    with kept_modes(model):
        yield model.eval()


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so runs can be repeated.

    Args:
        seed: The seed to use everywhere.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def get_device(prefer: str | None = None, *, verbose: bool = True) -> torch.device:
    """Pick the fastest available device: CUDA, then Apple MPS, then the CPU.

    Args:
        prefer: Force a device such as ``"cpu"`` or ``"cuda:1"`` instead of choosing.
        verbose: Print which device was chosen and why.

    Returns:
        The chosen ``torch.device``.
    """
    if prefer is not None:
        device = torch.device(prefer)
        reason = "as requested"
    elif torch.cuda.is_available():
        device = torch.device("cuda")
        reason = torch.cuda.get_device_name(0)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
        reason = "Apple GPU"
    else:
        device = torch.device("cpu")
        reason = f"no GPU found; {torch.get_num_threads()} CPU threads"
    if verbose:
        print(f"Using device: {device} ({reason})")
    return device


def environment_report(*, print_report: bool = True) -> dict[str, str]:
    """Collect (and print) the versions, device and data folder: paste this into a bug report.

    Args:
        print_report: Print the report as aligned lines.

    Returns:
        The report as an ordered mapping of name to value.
    """
    import matplotlib
    import torchvision

    from . import __version__, speed

    report = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "matplotlib": matplotlib.__version__,
        "course_utils": __version__,
        "cpu threads": str(torch.get_num_threads()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available",
        "mps": str(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()),
        "bf16 (cpu, native)": str(speed.bf16_supported("cpu")),
        "cpu allocator": "tuned (speed.tune_cpu_allocator)" if speed.allocator_tuned() else "default",
        "data dir": str(config.data_dir()) + ("" if os.environ.get("COURSE_DATA_DIR") else " (default)"),
        "smoke mode": str(config.smoke_mode()),
    }
    if print_report:
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}} : {value}")
    return report
