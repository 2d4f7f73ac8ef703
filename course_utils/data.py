"""Datasets as ready loaders: MNIST, Fashion-MNIST, any ImageFolder and the ants/bees set (``cu.data``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from . import _setup
from ._files import DatasetNotFoundError, ensure_idx, load_idx
from ._setup import data_dir, smoke_mode
from ._tensorloader import TensorLoader

__all__ = ["mnist", "fashion_mnist", "image_folder", "hymenoptera", "default_transforms", "DataBundle"]
__all__ += ["DatasetNotFoundError", "TensorLoader", "dataset_status", "data_dir", "MNIST_MEAN", "MNIST_STD"]
__all__ += ["FASHION_MEAN", "FASHION_STD", "IMAGENET_MEAN", "IMAGENET_STD"]

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)  # computed from the 60,000 training images in notebook 02
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SMOKE_TRAIN, SMOKE_TEST = 2048, 1024  # images kept in smoke mode: enough to see learning, seconds to run
STAND_IN = "STAND-IN.txt"  # marks a folder of synthetic stand-in data (the tests' set-up writes them)


@dataclass
class DataBundle:
    """Loaders for one dataset.

    Attributes:
        train: Batches for training (shuffled).
        val: Batches held out from the training set, or None.
        test: Batches of the official test split.
        classes: Class names, indexed by label.
        mean: Per-channel mean used for normalisation (to un-normalise for plots).
        std: Per-channel standard deviation used for normalisation.
        source: Where the data came from, in words.
        root: The folder that holds the files (for MNIST-like sets: the ``root`` torchvision's classes take).
    """

    train: Any
    val: Any | None
    test: Any
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    root: Path | None = None

    def __repr__(self) -> str:
        def size(loader: Any) -> str:
            return "None" if loader is None else f"{len(loader.dataset)} images in {len(loader)} batches"

        return (
            f"DataBundle(source={self.source!r}, classes={len(self.classes)},\n"
            f"  train: {size(self.train)},\n  val:   {size(self.val)},\n  test:  {size(self.test)})"
        )


def _split(n: int, val_fraction: float, subset: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded indices for (train, val) out of ``n`` training images, after taking ``subset`` of them."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    order = order[: n if subset is None else max(1, subset)]
    n_val = int(round(len(order) * val_fraction))
    return order[n_val:], order[:n_val]


def _dataloader(
    dataset: Dataset, indices: list[int], batch_size: int, shuffle: bool, seed: int, workers: int
) -> DataLoader:
    """A DataLoader over ``dataset[indices]`` with its own seeded shuffling (the per-sample path)."""
    seeded, pin = torch.Generator().manual_seed(seed), torch.cuda.is_available()
    return DataLoader(
        Subset(dataset, indices), batch_size, shuffle, generator=seeded, num_workers=workers, pin_memory=pin
    )


def _source(name: str, folder: Path) -> str:
    """Where a dataset came from, in words; says so loudly when the folder holds a synthetic stand-in."""
    marker = folder / STAND_IN
    if not marker.is_file():
        return f"{name} from {folder}"
    print(f"!!! STAND-IN DATA: {folder} is not {name}. {marker.read_text().strip()} !!!")
    return f"SYNTHETIC stand-in for {name} in {folder}"


def mnist(
    *,
    batch_size: int = 64,
    val_fraction: float = 0.1,
    subset: int | None = None,
    test_subset: int | None = None,
    augment: bool = False,
    fast: bool | None = None,
    transform: Any = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    num_workers: int = 0,
    data_dir: str | Path | None = None,
    download: bool = True,
    _dataset: type[datasets.MNIST] = datasets.MNIST,  # fashion_mnist passes datasets.FashionMNIST
) -> DataBundle:
    """MNIST handwritten digits (28x28 grey), normalised with mean 0.1307 and std 0.3081.

    Args:
        batch_size: Images per batch.
        val_fraction: Part of the 60,000 training images held out as ``.val`` (0 for none).
        subset: Use only this many training images (before the validation split); None for all. Smoke mode
            keeps at most 2,048 (and 1,024 test images).
        test_subset: Use only this many test images; None for all 10,000.
        augment: Randomly shift training images by up to 2 pixels.
        fast: Keep the data as in-memory tensors (default when no ``transform`` is given) instead of a
            torchvision dataset with per-sample transforms behind a ``DataLoader``.
        transform: A per-sample transform for every split (implies the DataLoader path); default ToTensor +
            Normalize, with the shifts of ``augment`` for training.
        device: Where the fast path keeps the data; default: the best available device.
        seed: Seed for the split, the subset, shuffling and augmentation.
        num_workers: DataLoader worker processes (DataLoader path only); 0 is safe in notebooks everywhere.
        data_dir: Where to look for ``MNIST/raw``; default ``COURSE_DATA_DIR``.
        download: Download the files if they are missing.

    Returns:
        A DataBundle with ``.train``, ``.val``, ``.test`` loaders and ``.classes``.

    Raises:
        DatasetNotFoundError: The files are missing and could not be downloaded.
    """
    cls, root = _dataset, Path(data_dir) if data_dir is not None else _setup.data_dir()
    mean, std = (FASHION_MEAN, FASHION_STD) if cls is datasets.FashionMNIST else (MNIST_MEAN, MNIST_STD)
    if smoke_mode():
        subset = min(subset or SMOKE_TRAIN, SMOKE_TRAIN)
        test_subset = min(test_subset or SMOKE_TEST, SMOKE_TEST)
    if augment and transform is not None:
        raise ValueError(
            "augment=True adds random 2-pixel shifts to the default transform; with your own transform, put the "
            "shifts in it (transforms.RandomAffine(0, translate=(2 / 28, 2 / 28))) and leave augment=False"
        )
    use_fast = transform is None if fast is None else fast
    if use_fast and transform is not None:
        raise ValueError("fast=True keeps data as tensors, without per-sample transforms; pass fast=False")
    ensure_idx(cls, root, download)
    source = _source(cls.__name__, root / cls.__name__)
    (x_train, y_train), (x_test, y_test) = load_idx(cls, root, True), load_idx(cls, root, False)
    train_idx, val_idx = _split(len(x_train), val_fraction, subset, seed)
    test_idx = torch.arange(len(x_test))[:test_subset]

    if use_fast:
        device = device if device is not None else _setup.get_device(verbose=False)
        source += f" (in-memory tensors on {torch.device(device)})"

        def loader(train_split: bool, idx: torch.Tensor, train: bool) -> Any:
            x, y = (x_train, y_train) if train_split else (x_test, y_test)
            return TensorLoader(
                x[idx], y[idx], batch_size=batch_size, shuffle=train, mean=mean, std=std,
                max_shift=2 if augment and train else 0, device=device, seed=seed,
            )  # fmt: skip

    else:  # the classic path: a torchvision dataset with per-sample PIL transforms, batched by a DataLoader
        source += " (torchvision DataLoader, per-sample transforms)"
        base = [transforms.ToTensor(), transforms.Normalize(mean, std)]
        shift = [transforms.RandomAffine(0, translate=(2 / 28, 2 / 28))] if augment else []

        def loader(train_split: bool, idx: torch.Tensor, train: bool) -> Any:
            tf = transform or transforms.Compose((shift if train else []) + base)
            ds = cls(str(root), train=train_split, transform=tf, download=False)
            return _dataloader(ds, idx.tolist(), batch_size, train, seed, num_workers)

    train = loader(True, train_idx, True)
    val = loader(True, val_idx, False) if len(val_idx) else None
    return DataBundle(train, val, loader(False, test_idx, False), list(cls.classes), mean, std, source, root)


def fashion_mnist(**options: Any) -> DataBundle:
    """Fashion-MNIST clothing images (28x28 grey, 10 classes), normalised with mean 0.2860 and std 0.3530.

    Args:
        **options: The same keyword arguments as :func:`mnist` (``batch_size``, ``subset``, ``augment``, ...).

    Returns:
        A DataBundle with ``.train``, ``.val``, ``.test`` loaders and ``.classes``.
    """
    return mnist(**options, _dataset=datasets.FashionMNIST)


def dataset_status(root: Path | None = None) -> dict[str, bool]:
    """Which of the course's datasets are present under the data folder (the layouts the loaders look for).

    Args:
        root: The data folder; defaults to ``COURSE_DATA_DIR``.

    Returns:
        A mapping from dataset name to whether its files are present.
    """
    root = Path(root) if root is not None else data_dir()

    def has_idx(cls: type[datasets.MNIST]) -> bool:  # each file extracted or still .gz
        raw = root / cls.__name__ / "raw"
        return all((raw / f.removesuffix(".gz")).is_file() or (raw / f).is_file() for f, _ in cls.resources)

    folder = root / HYMENOPTERA_DIR
    return {
        "MNIST": has_idx(datasets.MNIST),
        "FashionMNIST": has_idx(datasets.FashionMNIST),
        "hymenoptera": all((folder / s / c).is_dir() for s in ("train", "val") for c in ("ants", "bees")),
    }


# At the end: these build DataBundles.
from ._folders import HYMENOPTERA_DIR, default_transforms, hymenoptera, image_folder  # noqa: E402
