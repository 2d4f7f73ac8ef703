"""One process's own part of the data under torchrun: shard() for TensorLoaders and DataLoaders."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

from .tensorloader import TensorLoader, random_shift

__all__ = ["ShardedLoader", "shard", "is_sharded"]


# ---------------------------------------------------------------------------------------------------------
# Data: one shard per process
# ---------------------------------------------------------------------------------------------------------
def _rank_and_world(rank_: int | None, world: int | None) -> tuple[int, int]:
    grouped = dist.is_available() and dist.is_initialized()
    rank_ = (dist.get_rank() if grouped else 0) if rank_ is None else rank_
    world = (dist.get_world_size() if grouped else 1) if world is None else world
    if world < 1 or not 0 <= rank_ < world:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank_} and world_size {world}")
    return rank_, world


class ShardedLoader:
    """One process's share of a ``TensorLoader``'s batches (made by :func:`shard`).

    Every pass draws one permutation from the loader's own generator, seeded alike in every process, so all
    processes agree on it and it changes every epoch; process ``r`` of ``W`` takes positions ``r, r+W, ...``.
    Batch ``k`` of all processes together is therefore batch ``k`` of a single process whose batches are ``W``
    times larger: the same data, the same gradient. Random shifts use a generator of each process's own.

    Args:
        loader: The whole dataset's loader.
        rank: This process's number.
        world_size: The number of processes.
        pad: Repeat a few samples so every process gets the same number (see :func:`shard`).
    """

    def __init__(self, loader: TensorLoader, rank: int, world_size: int, *, pad: bool = True) -> None:
        self.loader, self.rank, self.world_size, self.pad = loader, rank, world_size, pad
        self.batch_size, self.dataset = loader.batch_size, loader.dataset
        self._augment = torch.Generator().manual_seed(loader.generator.initial_seed() + 1 + rank)

    def reseed(self, seed: int) -> None:
        """Restart shuffling (shared by all processes) and this process's augmentation from ``seed``."""
        self.loader.reseed(seed)
        self._augment.manual_seed(seed + 1 + self.rank)

    def _count(self) -> int:
        n = self.loader.images.shape[0]
        return math.ceil(n / self.world_size) if self.pad else len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        count, b = self._count(), self.batch_size
        return count // b if self.loader.drop_last else math.ceil(count / b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data, n = self.loader, self.loader.images.shape[0]
        order = torch.randperm(n, generator=data.generator) if data.shuffle else torch.arange(n)
        if self.pad:  # the first samples again at the end, until every process has the same number
            total = self._count() * self.world_size
            order = order.repeat(math.ceil(total / n))[:total]
        mine = order[self.rank :: self.world_size].to(data.device)
        for batch in range(len(self)):
            idx = mine[batch * self.batch_size : (batch + 1) * self.batch_size]
            images, labels = data.images[idx], data.labels[idx]
            if data.max_shift:
                images = random_shift(images.float(), data.max_shift, self._augment)
            yield data.normalize(images), labels

    def __repr__(self) -> str:
        return (
            f"ShardedLoader(process {self.rank} of {self.world_size}, {len(self)} batches of {self.loader!r})"
        )


def shard(loader: Any, *, rank: int | None = None, world_size: int | None = None, pad: bool = True) -> Any:
    """This process's own part of a loader's data, different in every process and reshuffled every epoch.

    Args:
        loader: A ``TensorLoader`` (the course's fast path) or a ``DataLoader`` (it gets a
            ``DistributedSampler``, whose epoch ``cu.fit`` sets).
        rank: This process's number; default: from the process group.
        world_size: The number of processes; default: from the process group.
        pad: True: repeat up to ``world_size - 1`` samples so that every process gets the same number of
            batches. Training needs this: each step waits for every process. False: each sample exactly once,
            shards differ by at most one sample; for validation and test loaders, where nothing waits per batch.

    Returns:
        A loader over this process's shard; ``loader`` itself when there is one process.

    Raises:
        TypeError: ``loader`` is neither a TensorLoader nor a DataLoader.
    """
    rank_, world = _rank_and_world(rank, world_size)
    if world == 1:
        return loader
    if isinstance(loader, TensorLoader):
        return ShardedLoader(loader, rank_, world, pad=pad)
    if isinstance(loader, DataLoader):
        dataset, shuffle = loader.dataset, isinstance(loader.sampler, RandomSampler)
        seed = loader.generator.initial_seed() if loader.generator is not None else 0
        if pad:
            sampler = DistributedSampler(dataset, world, rank_, shuffle=shuffle, seed=seed)
        else:
            dataset, sampler = Subset(dataset, range(rank_, len(dataset), world)), None
        sharded = DataLoader(
            dataset,
            batch_size=loader.batch_size,
            sampler=sampler,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            drop_last=loader.drop_last,
        )
        sharded.course_shard = (rank_, world)  # marks it as sharded for fit's check
        return sharded
    raise TypeError(
        f"shard() takes a TensorLoader or a DataLoader, got {type(loader).__name__}. For another iterable, "
        "give each process its own part yourself (e.g. with a DistributedSampler)."
    )


def is_sharded(loader: Any) -> bool:
    """Whether a loader holds one process's part only (from shard(), or with a DistributedSampler)."""
    sampler = getattr(loader, "sampler", None)
    return (
        isinstance(loader, ShardedLoader)
        or hasattr(loader, "course_shard")
        or isinstance(sampler, DistributedSampler)
    )
