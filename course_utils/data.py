"""Datasets for the course: MNIST, Fashion-MNIST, any ImageFolder and the ants/bees set, as ready loaders."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torchvision import datasets, transforms

from . import config
from ._bundle import IMAGENET_MEAN, IMAGENET_STD, DataBundle, DatasetNotFoundError, _dataloader, _split
from ._idx import ensure_idx, idx_files, load_idx
from .folders import HYMENOPTERA_DIR, default_transforms, hymenoptera, image_folder
from .synthetic import write_idx_dataset
from .tensorloader import TensorLoader

__all__ = [
    "DataBundle",
    "DatasetNotFoundError",
    "mnist",
    "fashion_mnist",
    "image_folder",
    "hymenoptera",
    "default_transforms",
    "MNIST_MEAN",
    "MNIST_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "dataset_status",
    "TensorLoader",
]

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)  # computed from the 60,000 training images in notebook 02
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
SMOKE_TRAIN, SMOKE_TEST = 2048, 1024  # images kept in smoke mode: enough to see learning, seconds to run


# ---------------------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST
# ---------------------------------------------------------------------------------------------------------
def _idx_dataset(
    cls: type[datasets.MNIST],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    *,
    batch_size: int,
    val_fraction: float,
    subset: int | None,
    test_subset: int | None,
    augment: bool,
    fast: bool | None,
    transform: Any,
    device: torch.device | str | None,
    seed: int,
    num_workers: int,
    data_dir: str | Path | None,
    download: bool,
) -> DataBundle:
    root = Path(data_dir) if data_dir is not None else config.data_dir()
    if config.SMOKE:
        subset = min(subset or SMOKE_TRAIN, SMOKE_TRAIN)
        test_subset = min(test_subset or SMOKE_TEST, SMOKE_TEST)
    try:
        ensure_idx(cls, root, download)
        source, classes = f"{cls.__name__} from {root / cls.__name__ / 'raw'}", list(cls.classes)
    except DatasetNotFoundError as exc:
        if not config.SMOKE:
            raise
        # Smoke mode on a machine without the data: rendered digits written as idx files in torchvision's layout,
        # so every path that reads the files (torchvision's own dataset classes too) runs unchanged.
        root = config.cache_dir() / "synthetic-data"
        write_idx_dataset(root / cls.__name__ / "raw", SMOKE_TRAIN, SMOKE_TEST)
        reason = str(exc).splitlines()[0]
        warnings.warn(
            f"SMOKE MODE: {reason} SYNTHETIC rendered digits stand in for it (written to {root}). "
            "Numbers from this run say nothing about the real dataset.",
            stacklevel=3,
        )
        print(
            f"!!! SMOKE MODE: {cls.__name__} is missing; SYNTHETIC rendered digits stand in for it, "
            f"in {root / cls.__name__ / 'raw'} !!!"
        )
        source, classes = (
            f"SYNTHETIC rendered digits standing in for {cls.__name__} (smoke mode)",
            [str(i) for i in range(10)],
        )
    (x_train, y_train), (x_test, y_test) = load_idx(cls, root, True), load_idx(cls, root, False)

    train_idx, val_idx = _split(len(x_train), val_fraction, subset, seed)
    test_idx = torch.arange(len(x_test) if test_subset is None else min(test_subset, len(x_test)))
    if augment and transform is not None:
        raise ValueError(
            "augment=True adds random 2-pixel shifts to the default transform; with your own transform, put the "
            "shifts in it (transforms.RandomAffine(0, translate=(2 / 28, 2 / 28))) and leave augment=False"
        )
    use_fast = transform is None if fast is None else fast
    if use_fast and transform is not None:
        raise ValueError(
            "fast=True keeps data as tensors and cannot apply a per-sample transform; pass fast=False"
        )
    if use_fast:
        device = torch.device(device) if device is not None else _default_device()

        def fast_loader(x: torch.Tensor, y: torch.Tensor, train: bool) -> TensorLoader:
            return TensorLoader(
                x,
                y,
                batch_size=batch_size,
                shuffle=train,
                mean=mean,
                std=std,
                max_shift=2 if (augment and train) else 0,
                device=device,
                seed=seed,
            )

        return DataBundle(
            train=fast_loader(x_train[train_idx], y_train[train_idx], True),
            val=fast_loader(x_train[val_idx], y_train[val_idx], False) if len(val_idx) else None,
            test=fast_loader(x_test[test_idx], y_test[test_idx], False),
            classes=classes,
            mean=mean,
            std=std,
            source=source + f" (in-memory tensors on {device})",
            root=root,
        )

    # The classic path: a torchvision dataset with per-sample PIL transforms, batched by a DataLoader.
    base = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    eval_tf = transform or transforms.Compose(base)
    shift = [transforms.RandomAffine(0, translate=(2 / 28, 2 / 28))] if augment else []
    train_tf = transform or transforms.Compose(shift + base)

    def torch_loader(
        train_split: bool, tf: Any, idx: torch.Tensor, shuffle: bool
    ) -> torch.utils.data.DataLoader:
        ds = cls(str(root), train=train_split, transform=tf, download=False)
        return _dataloader(
            ds, idx.tolist(), batch_size=batch_size, shuffle=shuffle, seed=seed, num_workers=num_workers
        )

    return DataBundle(
        train=torch_loader(True, train_tf, train_idx, True),
        val=torch_loader(True, eval_tf, val_idx, False) if len(val_idx) else None,
        test=torch_loader(False, eval_tf, test_idx, False),
        classes=classes,
        mean=mean,
        std=std,
        source=source + " (torchvision DataLoader, per-sample transforms)",
        root=root,
    )


def _default_device() -> torch.device:
    from .utils import get_device

    return get_device(verbose=False)


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
) -> DataBundle:
    """MNIST handwritten digits (28x28 grey), normalised with mean 0.1307 and std 0.3081.

    Args:
        batch_size: Images per batch.
        val_fraction: Part of the 60,000 training images held out as ``.val`` (0 for none).
        subset: Use only this many training images (before the validation split); None for all.
        test_subset: Use only this many test images; None for all 10,000.
        augment: Randomly shift training images by up to 2 pixels.
        fast: Keep the data as in-memory tensors (default when no ``transform`` is given) instead of a
            torchvision dataset with per-sample transforms behind a ``DataLoader``.
        transform: A per-sample transform for every split, as in :func:`cu.data.image_folder` (implies the
            DataLoader path); default ToTensor + Normalize, with the shifts of ``augment`` for training.
        device: Where the fast path keeps the data; default: the best available device.
        seed: Seed for the split, the subset, shuffling and augmentation.
        num_workers: DataLoader worker processes (DataLoader path only); 0 is safe in notebooks everywhere.
        data_dir: Where to look for ``MNIST/raw``; default ``COURSE_DATA_DIR``.
        download: Download the files if they are missing.

    Returns:
        A DataBundle with ``.train``, ``.val``, ``.test`` loaders and ``.classes``.

    Raises:
        DatasetNotFoundError: The files are missing and could not be downloaded (outside smoke mode).
    """
    return _idx_dataset(
        datasets.MNIST,
        MNIST_MEAN,
        MNIST_STD,
        batch_size=batch_size,
        val_fraction=val_fraction,
        subset=subset,
        test_subset=test_subset,
        augment=augment,
        fast=fast,
        transform=transform,
        device=device,
        seed=seed,
        num_workers=num_workers,
        data_dir=data_dir,
        download=download,
    )


def fashion_mnist(
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
) -> DataBundle:
    """Fashion-MNIST clothing images (28x28 grey, 10 classes); the same options as :func:`mnist`."""
    return _idx_dataset(
        datasets.FashionMNIST,
        FASHION_MEAN,
        FASHION_STD,
        batch_size=batch_size,
        val_fraction=val_fraction,
        subset=subset,
        test_subset=test_subset,
        augment=augment,
        fast=fast,
        transform=transform,
        device=device,
        seed=seed,
        num_workers=num_workers,
        data_dir=data_dir,
        download=download,
    )


# ---------------------------------------------------------------------------------------------------------
# What is present
# ---------------------------------------------------------------------------------------------------------
def dataset_status(root: Path | None = None) -> dict[str, bool]:
    """Which of the course's datasets are present under the data folder (the layouts the loaders look for).

    Args:
        root: The data folder; defaults to ``COURSE_DATA_DIR``.

    Returns:
        A mapping from dataset name to whether its files are present.
    """
    root = Path(root) if root is not None else config.data_dir()

    def has_idx(cls: type[datasets.MNIST]) -> bool:
        raw = root / cls.__name__ / "raw"
        return all(
            (raw / gz.removesuffix(".gz")).is_file() or (raw / gz).is_file() for gz, _ in idx_files(cls)
        )

    folder = root / HYMENOPTERA_DIR
    return {
        "MNIST": has_idx(datasets.MNIST),
        "FashionMNIST": has_idx(datasets.FashionMNIST),
        "hymenoptera": all(
            (folder / split / cls).is_dir() for split in ("train", "val") for cls in ("ants", "bees")
        ),
    }
