"""Training on several processes with PyTorch's own engine (torchrun, DistributedDataParallel): cu.fit's helpers.

A script started by ``torchrun --nproc_per_node=N script.py`` runs N times, once per process; ``setup()`` joins
them into one process group (gloo on CPUs, nccl on CUDA GPUs), ``shard()`` gives each process its own part of
the data, the model is wrapped in ``DistributedDataParallel``, and the same ``cu.fit`` call trains. Without
torchrun every helper here does nothing, so the same script also runs as a single process.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterable
from datetime import timedelta
from types import TracebackType
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ._diagnose import non_finite_loss
from ._launch import LaunchResult, launch
from ._shard import ShardedLoader, is_sharded, shard
from .tensorloader import TensorLoader

__all__ = [
    "setup",
    "cleanup",
    "is_distributed",
    "rank",
    "world_size",
    "is_main_process",
    "unwrap",
    "shard",
    "ShardedLoader",
    "reduce_metrics",
    "launch",
    "LaunchResult",
]


# ---------------------------------------------------------------------------------------------------------
# Who am I: the process group torchrun started
# ---------------------------------------------------------------------------------------------------------
def is_distributed() -> bool:
    """True inside a process group (``torch.distributed`` initialised), e.g. under torchrun after ``setup()``."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's number, 0 to ``world_size() - 1``; 0 without a process group."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes train together; 1 without a process group."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True in process 0 (the one that prints and saves) and in a single-process run."""
    return rank() == 0


def setup(backend: str | None = None, *, timeout_s: float = 300.0) -> torch.device:
    """Join the process group that torchrun started and return this process's device.

    Under torchrun (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``),
    process ``LOCAL_RANK`` of a machine with CUDA GPUs uses GPU ``LOCAL_RANK`` and the nccl backend; without
    GPUs, the CPU and gloo. Run without torchrun, it joins nothing and returns the CPU (or the first GPU).

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default: nccl with CUDA GPUs, else gloo.
        timeout_s: How long a collective operation waits for the other processes before failing with an error,
            instead of hanging for PyTorch's default of 10-30 minutes.

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
    if backend == "nccl":
        if torch.cuda.device_count() <= local_rank:
            raise RuntimeError(
                f"process {local_rank} of this machine needs GPU {local_rank}, but {torch.cuda.device_count()} "
                "GPU(s) are visible: start at most one process per GPU (--nproc_per_node), or use gloo on CPUs."
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    _die_with_parent()
    if not is_distributed():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return device


def cleanup() -> None:
    """Leave the process group (at the end of a script); nothing happens without one."""
    if is_distributed():
        dist.destroy_process_group()


def _die_with_parent() -> None:
    # Linux: if torchrun itself is killed (SIGKILL gives it no chance to stop its workers), the kernel sends
    # each worker SIGTERM, so no worker is left behind waiting for the others.
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # another C library: the launcher still stops the workers
            pass


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside ``DistributedDataParallel`` (what to save, evaluate or load weights into).

    Args:
        model: A model, wrapped or not.

    Returns:
        ``model.module`` for a DDP (or DataParallel) model, the original module of a ``torch.compile``d one
        (both unwrapped, in any order), else ``model`` itself.
    """
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while True:
        if isinstance(model, wrappers):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


# ---------------------------------------------------------------------------------------------------------
# What cu.fit calls: readiness, per-epoch sampler, per-step agreement, per-epoch metrics
# ---------------------------------------------------------------------------------------------------------
def check_ready(model: nn.Module, train_loader: Iterable) -> None:
    """Under torchrun: fail on a model that is not wrapped, warn (once, process 0) on an unsharded loader."""
    names = {cls.__name__ for cls in type(model).__mro__}
    if not names & {"DistributedDataParallel", "FullyShardedDataParallel", "FSDPModule"}:
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


def start_epoch(loader: Any, epoch: int) -> None:
    """Tell a DistributedSampler the epoch, so that it shuffles differently every epoch (alike everywhere)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def _comm_device() -> torch.device:
    # nccl exchanges tensors between GPUs only; gloo between CPU tensors.
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


class _StopTogether:
    """While fit trains under torchrun, Ctrl-C (SIGINT) and SIGTERM set a flag instead of interrupting at once.

    Every process reads every flag at its next step (:func:`agree_on_step`) or at the end of the epoch
    (:func:`combine_epoch`), so all processes stop at the same point; a process interrupted alone would leave
    the others waiting for it forever. A second signal interrupts at once.
    """

    requested = False

    def __enter__(self) -> _StopTogether:
        self._previous: dict[int, Any] = {}
        if world_size() > 1 and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if _StopTogether.requested:
            raise KeyboardInterrupt
        _StopTogether.requested = True

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        _StopTogether.requested = False


stop_together = _StopTogether


def agree_on_step(loss: torch.Tensor, epoch: int, step: int) -> None:
    """All processes learn whether any loss was non-finite or any process was asked to stop (one all-reduce).

    Called before the backward pass, so a stopped step changes no weights (and DDP, whose gradient exchange
    starts in the backward pass, is left ready for more training).

    Args:
        loss: This process's loss of the step.
        epoch: The epoch, for the error message.
        step: The step, for the error message.

    Raises:
        KeyboardInterrupt: In every process, when any was asked to stop (Ctrl-C, SIGTERM).
        NonFiniteLossError: In every process, when the loss of any was not finite; it names which.
    """
    flags = torch.zeros(world_size() + 1, device=_comm_device())
    flags[rank()] = (~torch.isfinite(loss.detach())).float().to(flags.device)
    flags[-1] = float(_StopTogether.requested)
    dist.all_reduce(flags)
    flags = flags.tolist()
    if flags[-1]:
        raise KeyboardInterrupt
    bad = [r for r, flag in enumerate(flags[:-1]) if flag]
    if bad:
        error = non_finite_loss(epoch, step)
        error.add_note(
            f"The loss was not finite in process(es) {bad}; all {len(flags) - 1} processes stopped here."
        )
        raise error


def _sum_everywhere(values: list[float]) -> list[float]:
    summed = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(summed)
    return summed.tolist()


def _weighted(metrics: dict[str, float]) -> list[float]:
    return [metrics["loss"] * metrics["n"], metrics["acc"] * metrics["n"], float(metrics["n"])]


def _unweighted(sums: list[float]) -> dict[str, float]:
    loss, correct, n = sums
    return {"loss": loss / n, "acc": round(correct) / n, "n": int(n)}


def reduce_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Combine every process's ``{"loss", "acc", "n"}`` (from ``cu.evaluate`` on its shard), weighted by count.

    Call it in every process; each gets the same result.

    Args:
        metrics: This process's metrics.

    Returns:
        The metrics of all processes' samples together; ``metrics`` itself without a process group.
    """
    return _unweighted(_sum_everywhere(_weighted(metrics))) if world_size() > 1 else metrics


def combine_epoch(
    train: dict[str, float], val: dict[str, float] | None, seconds: float
) -> tuple[dict[str, float], dict[str, float] | None, float]:
    """One all-reduce at the end of an epoch: metrics of all processes, process 0's time, and the stop flag.

    Returns:
        ``(train, val, seconds)``, the same in every process.

    Raises:
        KeyboardInterrupt: In every process, when any was asked to stop.
    """
    values = _weighted(train) + (_weighted(val) if val is not None else [])
    values += [seconds if rank() == 0 else 0.0, float(_StopTogether.requested)]
    summed = _sum_everywhere(values)
    if summed[-1]:
        raise KeyboardInterrupt
    return _unweighted(summed[:3]), _unweighted(summed[3:6]) if val is not None else None, summed[-2]
