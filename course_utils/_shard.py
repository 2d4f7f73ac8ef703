"""One process's own part of the data under torchrun: shard() for TensorLoaders and DataLoaders."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

from ._tensorloader import TensorLoader

__all__ = ["ShardedLoader", "shard", "is_sharded", "padded"]


class ShardedLoader(TensorLoader):
    """One process's share of a ``TensorLoader``'s batches (made by :func:`shard`).

    Every pass draws one permutation from the loader's own generator, seeded alike in every process, so all
    processes agree on it and it changes every epoch; process ``r`` of ``W`` takes positions ``r, r+W, ...``.
    Batch ``k`` of all processes together is therefore batch ``k`` of a single process whose batches are ``W``
    times larger: the same data, the same gradient. Random shifts use a generator of each process's own.
    """

    def __init__(self, loader: TensorLoader, rank: int, world_size: int, *, pad: bool = True) -> None:
        vars(self).update(vars(loader))  # the loader's tensors, options and shuffling generator, shared
        self.loader, self.rank, self.world_size, self.pad = loader, rank, world_size, pad
        n = self.images.shape[0]
        self._total = math.ceil(n / world_size) * world_size if pad else n  # padded: some samples twice
        self._per_pass = len(range(rank, self._total, world_size))
        self._augment = torch.Generator().manual_seed(loader.generator.initial_seed() + 1 + rank)

    def reseed(self, seed: int) -> None:
        """Restart shuffling (shared by all processes) and this process's augmentation from ``seed``."""
        super().reseed(seed)
        self._augment.manual_seed(seed + 1 + self.rank)

    def _order(self) -> torch.Tensor:
        n = self.images.shape[0]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.repeat(math.ceil(self._total / n))[: self._total]  # padded: the first samples again
        return order[self.rank :: self.world_size].to(self.device)

    def __repr__(self) -> str:
        where = f"process {self.rank} of {self.world_size}"
        return f"ShardedLoader({where}, {len(self)} batches of {self.loader!r})"


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
    grouped = dist.is_available() and dist.is_initialized()
    rank = (dist.get_rank() if grouped else 0) if rank is None else rank
    world = (dist.get_world_size() if grouped else 1) if world_size is None else world_size
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank} and world_size {world}")
    if world == 1:
        return loader
    if isinstance(loader, TensorLoader):
        return ShardedLoader(loader, rank, world, pad=pad)
    if not isinstance(loader, DataLoader):
        raise TypeError(
            f"shard() takes a TensorLoader or a DataLoader, got {type(loader).__name__}. For another iterable, "
            "give each process its own part yourself (e.g. with a DistributedSampler)."
        )
    dataset, shuffle = loader.dataset, isinstance(loader.sampler, RandomSampler)
    seed = loader.generator.initial_seed() if loader.generator is not None else 0
    sampler = DistributedSampler(dataset, world, rank, shuffle=shuffle, seed=seed) if pad else None
    dataset = dataset if pad else Subset(dataset, range(rank, len(dataset), world))
    # Every option the loader was built with (in_order: torch >= 2.6); those of workers only with workers.
    kept = ["batch_size", "num_workers", "collate_fn", "pin_memory", "drop_last", "timeout", "worker_init_fn"]
    kept += ["multiprocessing_context", "generator", "in_order"]
    kept += ["persistent_workers", "prefetch_factor"] if loader.num_workers > 0 else []
    options = {name: getattr(loader, name) for name in kept if hasattr(loader, name)}
    sharded = DataLoader(dataset, sampler=sampler, **options)
    sharded.course_shard = (rank, world)  # marks it as sharded for fit's check
    return sharded


def is_sharded(loader: Any) -> bool:
    """Whether a loader holds one process's part only (from shard(), or with a DistributedSampler)."""
    sharded = isinstance(loader, ShardedLoader) or hasattr(loader, "course_shard")
    return sharded or isinstance(getattr(loader, "sampler", None), DistributedSampler)


def padded(loader: Any) -> int:
    """How many samples a sharded loader repeats so that every process gets as many (0 if none)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(loader, ShardedLoader) and loader.pad:
        return -loader.images.shape[0] % loader.world_size
    if isinstance(sampler, DistributedSampler) and not sampler.drop_last:
        return -len(sampler.dataset) % sampler.num_replicas
    return 0
