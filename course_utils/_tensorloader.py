"""The fast data path: a whole small dataset kept as one uint8 tensor, normalised and augmented per batch."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

__all__ = ["TensorLoader", "random_shift"]


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image of a float batch by its own random offset of up to ``max_shift`` pixels, 0-padded."""
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)  # (b, c, h + 2 max_shift, w + 2 max_shift)
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator).to(images.device)
    rows = offsets[:, 0:1] + torch.arange(h, device=images.device)  # (b, h)
    cols = offsets[:, 1:2] + torch.arange(w, device=images.device)  # (b, w)
    batch_idx = torch.arange(b, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch_idx, rows[:, :, None], cols[:, None, :]]  # (b, h, w, c)
    return out.permute(0, 3, 1, 2)


class _NormalizedView(torch.utils.data.Dataset):
    """A TensorLoader's data one normalised sample at a time, like a torchvision dataset."""

    def __init__(self, loader: TensorLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return self.loader.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.loader.normalize(self.loader.images[index : index + 1])[0], int(self.loader.labels[index])


class TensorLoader:
    """Iterate over ``(images, labels)`` batches of an in-memory uint8 dataset, like a ``DataLoader``.

    A per-sample pipeline (PIL image -> ``ToTensor`` -> ``Normalize``) costs Python work for every image;
    here the whole dataset is one tensor on the device, a batch is one slice, and normalisation (and
    optional random shifts) run once per batch. Shuffling uses its own seeded generator.

    Args:
        images: uint8 images ``(N, C, H, W)`` (or ``(N, H, W)`` for one channel).
        labels: int64 labels ``(N,)``.
        batch_size: Images per batch.
        shuffle: Reshuffle at the start of every pass.
        mean: Per-channel mean of the ``[0, 1]`` pixel values, for normalisation.
        std: Per-channel standard deviation, for normalisation.
        max_shift: Randomly shift each image by up to this many pixels (0: no augmentation).
        device: Where to keep the data; batches come out on this device.
        seed: Seed for shuffling and augmentation.
        drop_last: Drop a final batch smaller than ``batch_size``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int = 64,
        shuffle: bool = False,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        max_shift: int = 0,
        device: torch.device | str = "cpu",
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if images.dtype != torch.uint8:
            raise TypeError(f"TensorLoader expects uint8 images (0-255), got {images.dtype}")
        images = images.unsqueeze(1) if images.ndim == 3 else images  # (N, H, W) -> (N, 1, H, W)
        if images.ndim != 4 or images.shape[0] != labels.shape[0]:
            got = f"{tuple(images.shape)} and {tuple(labels.shape)}"
            raise ValueError(f"expected images (N, C, H, W) and labels (N,), got {got}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.images, self.labels = images.to(self.device), labels.to(self.device, torch.int64)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.max_shift, self._per_pass = max_shift, images.shape[0]  # samples per pass (fewer in a shard)
        mean_t, std_t = (torch.as_tensor(v, dtype=torch.float32).expand(images.shape[1]) for v in (mean, std))
        self.mean, self.std = tuple(mean_t.tolist()), tuple(std_t.tolist())
        # (x / 255 - mean) / std  ==  x * scale - shift: one fused multiply-subtract per batch.
        self._scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1).to(self.device)  # (1, channels, 1, 1)
        self._shift = (mean_t / std_t).view(1, -1, 1, 1).to(self.device)
        self.generator = self._augment = torch.Generator().manual_seed(seed)  # a shard shifts with its own
        self.dataset = _NormalizedView(self)

    def reseed(self, seed: int) -> None:
        """Restart shuffling and augmentation from ``seed``: the next passes repeat those of a new loader.

        Args:
            seed: The seed, as in the constructor; e.g. to give two models the very same batches.
        """
        self.generator.manual_seed(seed)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Turn a uint8 batch into normalised float32: ``(x / 255 - mean) / std``."""
        return torch.addcmul(-self._shift, images.float(), self._scale)

    def _order(self) -> torch.Tensor | None:  # the next pass's sample indices; None: in order, as slices
        n = self.images.shape[0]
        return torch.randperm(n, generator=self.generator).to(self.device) if self.shuffle else None

    def __len__(self) -> int:
        n, b = self._per_pass, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, b = self._order(), self.batch_size
        for start in range(0, len(self) * b, b):
            idx = slice(start, start + b) if order is None else order[start : start + b]
            images, labels = self.images[idx], self.labels[idx]
            if self.max_shift:  # shift before normalising so the padding is true black (pixel value 0)
                images = random_shift(images.float(), self.max_shift, self._augment)
            yield self.normalize(images), labels

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        aug = f", random shifts up to {self.max_shift}px" if self.max_shift else ""
        size = f"{n} images of {c}x{h}x{w} on {self.device}"
        return f"TensorLoader({size}, batch_size={self.batch_size}, shuffle={self.shuffle}{aug})"
