"""What every dataset loader returns (DataBundle), its error, and the seeded split and loader they share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not where the course looks, and could not be downloaded."""


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
        root: The folder that holds the files (for MNIST-like sets: the ``root`` torchvision's dataset
            classes take); in smoke mode without the real data, the folder of the synthetic stand-in.
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
    if subset is not None:
        order = order[: max(1, min(subset, n))]
    n_val = int(round(len(order) * val_fraction))
    return order[n_val:], order[:n_val]


def _dataloader(
    dataset: Dataset, indices: list[int], *, batch_size: int, shuffle: bool, seed: int, num_workers: int
) -> DataLoader:
    """A DataLoader over ``dataset[indices]`` with its own seeded shuffling (the per-sample path)."""
    return DataLoader(
        Subset(dataset, indices),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )
