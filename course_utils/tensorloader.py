"""The fast data path: a whole small dataset kept as one uint8 tensor, normalised and augmented per batch."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

__all__ = ["TensorLoader", "random_shift"]


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image of a batch by its own random offset of up to ``max_shift`` pixels, padding with 0.

    Args:
        images: A float batch ``(batch, channels, height, width)``.
        max_shift: Largest shift in pixels, in each direction.
        generator: A CPU generator, so the shifts are reproducible.

    Returns:
        The shifted batch, same shape as ``images``.
    """
    b, _, h, w = images.shape
    s = max_shift
    padded = torch.nn.functional.pad(images, (s, s, s, s))  # (b, c, h + 2s, w + 2s)
    offsets = torch.randint(0, 2 * s + 1, (b, 2), generator=generator).to(images.device)
    rows = offsets[:, 0:1] + torch.arange(h, device=images.device)  # (b, h)
    cols = offsets[:, 1:2] + torch.arange(w, device=images.device)  # (b, w)
    batch_idx = torch.arange(b, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch_idx, rows[:, :, None], cols[:, None, :]]  # (b, h, w, c)
    return out.permute(0, 3, 1, 2)


class _NormalizedView(torch.utils.data.Dataset):
    """Index a TensorLoader's data one sample at a time, normalised, like a torchvision dataset."""

    def __init__(self, loader: TensorLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return self.loader.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.loader.normalize(self.loader.images[index : index + 1])[0]
        return image, int(self.loader.labels[index])


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
        if images.ndim == 3:
            images = images.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
        if images.ndim != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"expected images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and {tuple(labels.shape)}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.max_shift = max_shift
        self.drop_last = drop_last
        channels = images.shape[1]
        mean_t = torch.as_tensor(mean, dtype=torch.float32).expand(channels)
        std_t = torch.as_tensor(std, dtype=torch.float32).expand(channels)
        # (x / 255 - mean) / std  ==  x * scale - shift: one fused multiply-subtract per batch.
        self._scale = (1.0 / (255.0 * std_t)).view(1, channels, 1, 1).to(self.device)
        self._shift = (mean_t / std_t).view(1, channels, 1, 1).to(self.device)
        self.mean, self.std = tuple(mean_t.tolist()), tuple(std_t.tolist())
        self.generator = torch.Generator().manual_seed(seed)
        self.dataset = _NormalizedView(self)

    def reseed(self, seed: int) -> None:
        """Restart the shuffling and augmentation from ``seed``: the next passes repeat those of a new loader.

        Use it to give two models exactly the same batches in the same order (a fair comparison).

        Args:
            seed: The seed, as in the constructor.
        """
        self.generator.manual_seed(seed)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Turn a uint8 batch into normalised float32: ``(x / 255 - mean) / std``."""
        return torch.addcmul(-self._shift, images.float(), self._scale)

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.images.shape[0]
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.device)
        else:
            order = None
        for batch in range(len(self)):
            start = batch * self.batch_size
            if order is None:
                images = self.images[start : start + self.batch_size]
                labels = self.labels[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                images, labels = self.images[idx], self.labels[idx]
            if self.max_shift:
                # Shift before normalising so the padding is true black (pixel value 0).
                images = random_shift(images.float(), self.max_shift, self.generator)
            yield self.normalize(images), labels

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        aug = f", random shifts up to {self.max_shift}px" if self.max_shift else ""
        return (
            f"TensorLoader({n} images of {c}x{h}x{w} on {self.device}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}{aug})"
        )
