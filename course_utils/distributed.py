"""Training in several processes under torchrun (DistributedDataParallel); without torchrun, no-ops."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ._diagnose import non_finite_loss
from ._shard import is_sharded, padded, shard
from ._tensorloader import TensorLoader

__all__ = ["setup", "cleanup", "rank", "world_size", "is_main_process", "unwrap", "shard"]


# --- Who am I: the process group torchrun started ---------------------------------------------------------
def _grouped() -> bool:
    """True inside a process group (``torch.distributed`` initialised): under torchrun after ``setup()``."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's number, 0 to ``world_size() - 1``; 0 without a process group."""
    return dist.get_rank() if _grouped() else 0


def world_size() -> int:
    """How many processes train together; 1 without a process group."""
    return dist.get_world_size() if _grouped() else 1


def is_main_process() -> bool:
    """True in process 0 (the one that prints and saves) and in a single-process run."""
    return rank() == 0


def setup(backend: str | None = None, *, timeout_s: float = 300.0) -> torch.device:
    """Join the process group that torchrun started and return this process's device.

    Under torchrun, process ``LOCAL_RANK`` of a machine with CUDA GPUs uses GPU ``LOCAL_RANK`` and nccl;
    without GPUs, the CPU and gloo. Without torchrun it joins nothing and returns the CPU (or the first GPU).

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default: nccl with CUDA GPUs, else gloo.
        timeout_s: Seconds a collective operation waits for the others before failing (PyTorch's: 10-30 min).

    Returns:
        The device this process trains on.

    Raises:
        RuntimeError: nccl was asked for but this process has no GPU of its own.
    """
    cuda = torch.cuda.is_available()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return torch.device("cuda" if cuda else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = backend or ("nccl" if cuda else "gloo")
    device = torch.device("cpu")
    if backend == "nccl":
        if torch.cuda.device_count() <= local_rank:
            raise RuntimeError(
                f"process {local_rank} of this machine needs GPU {local_rank}, but {torch.cuda.device_count()} "
                "GPU(s) are visible: start at most one process per GPU (--nproc_per_node), or use gloo on CPUs."
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    # Linux: if torchrun itself is killed (SIGKILL gives it no chance to stop its workers), the kernel sends
    # each worker SIGTERM, so no worker is left behind waiting for the others. Elsewhere the launcher does it.
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # (another C library)
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
    if not _grouped():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return device


def cleanup() -> None:
    """Leave the process group (at the end of a script); nothing happens without one."""
    if _grouped():
        dist.destroy_process_group()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside ``DistributedDataParallel`` (what to save, evaluate or load weights into).

    Args:
        model: A model, wrapped or not.

    Returns:
        ``model.module`` for a DDP (or DataParallel) model, the original module of a ``torch.compile``d one
        (both unwrapped, in any order), else ``model`` itself.
    """
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers) or isinstance(getattr(model, "_orig_mod", None), nn.Module):
        model = model.module if isinstance(model, wrappers) else model._orig_mod  # (torch.compile's wrapper)
    return model


# --- What cu.fit calls: readiness, per-epoch sampler, per-step agreement, per-epoch metrics ---------------
def check_ready(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None) -> None:
    """Fail on a model not wrapped, or a validation shard that repeats samples; warn on an unsharded one."""
    wrappers = {"DistributedDataParallel", "FullyShardedDataParallel", "FSDPModule"}
    if not wrappers & {cls.__name__ for cls in type(model).__mro__}:
        raise ValueError(
            f"cu.fit runs in {world_size()} processes here, but the model is a plain {type(model).__name__}: "
            "each process would train its own copy and they would drift apart. Wrap it after moving it to "
            "its device: model = torch.nn.parallel.DistributedDataParallel(model)."
        )
    if rank() == 0 and isinstance(train_loader, (TensorLoader, DataLoader)) and not is_sharded(train_loader):
        warnings.warn(
            f"every one of the {world_size()} processes reads the whole training set, so an epoch does "
            f"{world_size()}x the work: give each its own part with train_loader = cu.distributed.shard(...)",
            stacklevel=3,
        )
    if val_loader is not None and padded(val_loader):
        raise ValueError(
            f"the validation loader repeats {padded(val_loader)} sample(s) (so all processes get as many): "
            "they would count twice. Shard it with cu.distributed.shard(val_loader, pad=False)."
        )


def sync_buffers(model: nn.Module) -> None:
    """Give all processes process 0's buffers (BatchNorm statistics, which each one's last step updated)."""
    for buffer in unwrap(model).buffers():
        if buffer.is_floating_point():
            dist.broadcast(buffer.data, src=0)


def start_epoch(loader: Any, epoch: int) -> None:
    """Tell a DistributedSampler the epoch, so that it shuffles differently every epoch (alike everywhere)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


_stop_requested = threading.Event()  # set by a Ctrl-C inside stop_together()


@contextlib.contextmanager
def stop_together() -> Iterator[None]:
    """While fit trains under torchrun, a first Ctrl-C (SIGINT) only sets a flag that all processes read at
    their next all-reduce, so all stop at the same step (one stopped alone would leave the others waiting).
    SIGTERM keeps its default: torchrun sends it when a process fails; one stuck in a collective must end."""

    def request_stop(signum: int, frame: Any) -> None:
        if _stop_requested.is_set():  # a second Ctrl-C interrupts at once
            raise KeyboardInterrupt
        _stop_requested.set()

    main = threading.current_thread() is threading.main_thread()  # (signal handlers live there only)
    previous = signal.signal(signal.SIGINT, request_stop) if world_size() > 1 and main else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        _stop_requested.clear()


def _sum_or_stop(values: list[float]) -> list[float]:
    """``values`` summed over all processes, in one all-reduce that also raises KeyboardInterrupt everywhere
    if any process was asked to stop. (nccl exchanges tensors between GPUs only; gloo between CPU tensors.)"""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    summed = torch.tensor([*values, float(_stop_requested.is_set())], dtype=torch.float64, device=device)
    dist.all_reduce(summed)
    *summed, stop = summed.tolist()
    if stop:
        raise KeyboardInterrupt
    return summed


def agree(bad: bool, epoch: int, steps: tuple[int, int]) -> None:
    """One all-reduce, at the same step everywhere: did any process see a non-finite loss (``bad``) or Ctrl-C?
    Then every process raises KeyboardInterrupt, or NonFiniteLossError naming the processes."""
    if world_size() == 1:
        return
    flags = [float(bad and r == rank()) for r in range(world_size())]  # this process's place says ``bad``
    processes = [r for r, flag in enumerate(_sum_or_stop(flags)) if flag]
    if processes:
        error = non_finite_loss(epoch, steps)
        error.add_note(f"The loss was not finite in process(es) {processes}; all {len(flags)} stopped here.")
        raise error


def combine_epoch(
    train: dict[str, float], val: dict[str, float] | None, seconds: float
) -> tuple[dict[str, float], dict[str, float] | None, float]:
    """One all-reduce at the end of an epoch: metrics of all processes by sample count, process 0's time and
    the stop flag. Returns ``(train, val, seconds)``, alike in every process, or raises KeyboardInterrupt."""

    def sums(metrics: dict[str, float]) -> list[float]:
        return [metrics["loss"] * metrics["n"], metrics["acc"] * metrics["n"], float(metrics["n"])]

    def means(loss: float, correct: float, n: float) -> dict[str, float]:
        return {"loss": loss / n, "acc": round(correct) / n, "n": int(n)}

    values = sums(train) + (sums(val) if val is not None else []) + [seconds if rank() == 0 else 0.0]
    *summed, seconds = _sum_or_stop(values)
    return means(*summed[:3]), means(*summed[3:]) if val is not None else None, seconds
