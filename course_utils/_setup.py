"""Setting up a lesson: seeds, the device, where data lives, smoke mode, train/eval modes and the report."""

import contextlib
import os
import platform
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn


def smoke_mode() -> bool:
    """True when ``COURSE_SMOKE`` is 1/true/yes/on (read at each call): small subsets, one short epoch."""
    return os.environ.get("COURSE_SMOKE", "").strip().lower() in {"1", "true", "yes", "on"}


def data_dir() -> Path:
    """Where datasets are found and downloaded.

    Returns:
        ``$COURSE_DATA_DIR``; else a checkout's ``data/``; else per user (``~/.local/share/cnn-course/data``).
    """
    if env := os.environ.get("COURSE_DATA_DIR", "").strip():
        return Path(env).expanduser().resolve()
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        return root / "data"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "cnn-course" / "data"


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
        device, reason = torch.device(prefer), "as requested"
    elif torch.cuda.is_available():
        device, reason = torch.device("cuda"), torch.cuda.get_device_name(0)
    elif torch.backends.mps.is_available():
        device, reason = torch.device("mps"), "Apple GPU"
    else:
        device, reason = torch.device("cpu"), f"no GPU found; {torch.get_num_threads()} CPU threads"
    if verbose:
        print(f"Using device: {device} ({reason})")
    return device


@contextlib.contextmanager
def kept_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Restore each submodule's own train/eval mode after the block (``model.train(was)`` sets all alike)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the ``with`` block; afterwards each submodule has its own mode again."""
    with kept_modes(model):
        yield model.eval()


def bf16_native(device: torch.device | str) -> bool:
    """Whether bfloat16 autocast is *fast* here (native instructions), which ``precision="auto"`` asks."""
    device = torch.device(device)
    if device.type == "cuda":  # compute capability 8.0 (Ampere) or newer; T4 and V100 only emulate it
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        with contextlib.suppress(OSError):  # on Linux, the CPU's flags are words of /proc/cpuinfo
            return bool({"avx512_bf16", "amx_bf16"} & set(Path("/proc/cpuinfo").read_text().split()))
    return False  # another device, or no cheap way to ask (not Linux)


def environment_report(*, print_report: bool = True) -> dict[str, str]:
    """Collect (and print) the versions, device, data folder and which datasets are present.

    Args:
        print_report: Print the report as aligned lines.

    Returns:
        The report as an ordered mapping of name to value.
    """
    import matplotlib
    import torchvision

    from . import __version__
    from .data import dataset_status

    present = [name for name, ok in dataset_status().items() if ok]
    report = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "matplotlib": matplotlib.__version__,
        "course_utils": __version__,
        "cpu threads": str(torch.get_num_threads()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available",
        "mps": str(torch.backends.mps.is_available()),
        "bf16 native (cpu)": str(bf16_native("cpu")),
        "data dir": str(data_dir()) + ("" if os.environ.get("COURSE_DATA_DIR") else " (default)"),
        "datasets present": ", ".join(present) or "none (downloaded on first use; needs network)",
        "smoke mode": str(smoke_mode()),
    }
    if print_report:
        width = max(map(len, report))
        print("\n".join(f"{key:<{width}} : {value}" for key, value in report.items()))
    return report
