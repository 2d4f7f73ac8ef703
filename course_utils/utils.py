"""Small utilities: seeding, picking a device, bf16 detection and the environment report."""

from __future__ import annotations

import os
import platform
import random
import sys
from pathlib import Path

import numpy as np
import torch

from . import config

__all__ = ["set_seed", "get_device", "bf16_supported", "environment_report", "dataset_status"]


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


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bfloat16 autocast is *fast* on this device, not merely possible.

    On CPUs bf16 is only faster with native instructions (AVX512-BF16 or AMX); elsewhere it is emulated and
    slower than fp32, so we report False.

    Args:
        device: The device that will run the model.

    Returns:
        True where bf16 autocast is natively supported.
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        # Native bf16 needs compute capability 8.0 (Ampere) or newer; older GPUs (T4, V100) only emulate it,
        # slowly, which torch.cuda.is_bf16_supported() counts as supported by default.
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        flags = _cpu_flags()
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    return False


def dataset_status(root: Path | None = None) -> dict[str, bool]:
    """Which of the course's datasets are present under the data folder.

    Args:
        root: The data folder; defaults to ``COURSE_DATA_DIR``.

    Returns:
        A mapping from dataset name to whether its files are present.
    """
    root = Path(root) if root is not None else config.data_dir()
    idx = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

    def has_idx(name: str) -> bool:
        raw = root / name / "raw"
        return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in idx)

    hym = root / "hymenoptera_data"
    return {
        "MNIST": has_idx("MNIST"),
        "FashionMNIST": has_idx("FashionMNIST"),
        "hymenoptera": all((hym / split / c).is_dir() for split in ("train", "val") for c in ("ants", "bees")),
    }


def environment_report(*, print_report: bool = True) -> dict[str, str]:
    """Collect (and print) the versions, device and data folder: paste this into a bug report.

    Args:
        print_report: Print the report as aligned lines.

    Returns:
        The report as an ordered mapping of name to value.
    """
    import matplotlib
    import torchvision

    from . import __version__

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
        "bf16 (cpu, native)": str(bf16_supported("cpu")),
        "data dir": str(config.data_dir()) + ("" if os.environ.get("COURSE_DATA_DIR") else " (default)"),
        "smoke mode": str(config.smoke_mode()),
    }
    if print_report:
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}} : {value}")
    return report
