"""The training engine: fit, which trains for several epochs and returns a History.

The passes it is made of (``train_one_epoch``, ``evaluate``, ``predict``) live in ``course_utils.epoch`` and are
re-exported here and as ``cu.train_one_epoch``, ``cu.evaluate``, ``cu.predict``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from . import distributed
from ._diagnose import NonFiniteLossError, check_optimizer
from ._step import infer_device, is_channels_last, resolve_precision
from .epoch import evaluate, predict, train_one_epoch
from .history import History
from .utils import kept_modes

__all__ = ["fit", "train_one_epoch", "evaluate", "predict"]


_PER_BATCH = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)
_PLATEAU = torch.optim.lr_scheduler.ReduceLROnPlateau


def _scheduler_step(scheduler: Any, scheduler_step: str | None) -> str | None:
    """When the scheduler steps: 'batch' or 'epoch'; asks the caller wherever the type does not settle it."""
    if scheduler is None:
        return None
    name = type(scheduler).__name__
    if scheduler_step is None:
        if isinstance(scheduler, _PER_BATCH):
            return "batch"  # their total_steps / step_size count batches
        if isinstance(scheduler, _PLATEAU):
            return "epoch"  # it needs the validation loss
        raise ValueError(
            f"say when {name} should step: fit(..., scheduler_step='batch') steps it after every batch (e.g. a "
            "warm-up or a schedule over all training steps), scheduler_step='epoch' after every epoch (e.g. "
            "StepLR(optimizer, step_size=10) counting epochs)."
        )
    if scheduler_step not in {"batch", "epoch"}:
        raise ValueError(f"scheduler_step must be 'batch' or 'epoch', got {scheduler_step!r}")
    if scheduler_step == "batch" and isinstance(scheduler, _PLATEAU):
        raise ValueError(
            "ReduceLROnPlateau steps on the validation loss once per epoch: use scheduler_step='epoch'"
        )
    return scheduler_step


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    device: torch.device | str | None = None,
    scheduler: Any = None,
    scheduler_step: str | None = None,
    keep_best: bool = False,
    precision: str = "fp32",
    verbose: bool = True,
    name: str = "",
) -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader``, evaluating on ``val_loader`` after each.

    It never re-initialises weights (so pretrained weights survive), gives every submodule its own
    train/eval mode back at the end, weights metrics by sample count and says what it does. An epoch's
    numbers are recorded together, once the epoch is over: Ctrl-C at any point returns the history of the
    completed epochs (with the best weights, if ``keep_best``).

    Under torchrun (``cu.distributed``: a ``DistributedDataParallel`` model, ``cu.distributed.shard``-ed
    loaders), the same call trains in every process: metrics are combined over all processes by sample count
    (the history is the same in each), only process 0 prints, and a NaN loss or Ctrl-C in any process stops all
    of them at the same step.

    Args:
        model: The network (moved to ``device`` if given).
        train_loader: Training batches ``(images, labels)``.
        val_loader: Validation batches, evaluated after every epoch; or None.
        epochs: Number of passes over the training data.
        optimizer: Built by the caller from the model's trainable parameters.
        loss_fn: E.g. ``nn.CrossEntropyLoss()``.
        device: Where to train; default: where the model's parameters are.
        scheduler: A learning-rate scheduler, or None.
        scheduler_step: ``"batch"`` (after every batch) or ``"epoch"`` (after every epoch). Needed for any
            scheduler but ``OneCycleLR``/``CyclicLR`` (always per batch) and ``ReduceLROnPlateau`` (per epoch,
            on the validation loss, or the training loss without validation).
        keep_best: Keep the weights of the epoch with the best validation accuracy and load them at the end
            (also after Ctrl-C or a non-finite loss). Needs ``val_loader``.
        precision: ``"fp32"`` (default), ``"bf16"`` autocast, or ``"auto"`` (bf16 where natively fast). For
            channels-last memory layout, convert the model first (``model.to(memory_format=torch.channels_last)``):
            every batch then follows the model's layout.
        verbose: Print what fit does, a progress bar per epoch and a line per epoch; False: silent.
        name: The run's name, used by plots and tables.

    Returns:
        The History of per-epoch metrics.

    Raises:
        ValueError: The optimizer has nothing to train, the data does not fit the model, or the scheduler's
            stepping is not said.
        NonFiniteLossError: The loss became NaN/inf. Training stops before that step's update; the model
            keeps finite weights (the best ones with ``keep_best``); ``exc.history`` holds the history so far.
    """
    from tqdm.auto import tqdm

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if keep_best and val_loader is None:
        raise ValueError("keep_best=True chooses the best epoch by validation accuracy: pass a val_loader")
    step_every = _scheduler_step(scheduler, scheduler_step)
    trainable = check_optimizer(model, optimizer)
    processes = distributed.world_size()
    if processes > 1:
        distributed.check_ready(model, train_loader)
    verbose = verbose and distributed.is_main_process()  # one process speaks for all
    # Under torchrun, process 0 draws bars on a terminal only: piped into a log or a notebook cell, they are noise.
    bars = verbose and (processes == 1 or sys.stderr.isatty())
    device = infer_device(model, device)
    model.to(device)
    precision = resolve_precision(precision, device)
    history = History(name=name, precision=precision)
    best_state = None
    if verbose:
        stepping = (
            f"; {type(scheduler).__name__} steps after every {step_every}" if scheduler is not None else ""
        )
        model_name = type(distributed.unwrap(model)).__name__  # the model inside DistributedDataParallel
        print(
            f"Training {model_name} ({trainable:,} trainable parameters) on {device} for {epochs} "
            f"epoch(s), precision {precision}{', channels_last' if is_channels_last(model) else ''}{stepping}"
            + (f", in {processes} processes." if processes > 1 else "."),
            flush=True,  # (a script's output reaches a log or a notebook cell as it happens)
        )
    with kept_modes(model), distributed.stop_together():
        last_good = None if keep_best else _snapshot(model)  # finite weights to fall back on after a NaN
        try:
            for epoch in range(1, epochs + 1):
                start = time.perf_counter()
                distributed.start_epoch(train_loader, epoch)
                total = len(train_loader) if hasattr(train_loader, "__len__") else None
                with tqdm(total=total, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not bars) as bar:
                    train = train_one_epoch(
                        model,
                        train_loader,
                        optimizer=optimizer,
                        loss_fn=loss_fn,
                        device=device,
                        scheduler=scheduler if step_every == "batch" else None,
                        precision=precision,
                        progress=bar,
                        epoch=epoch,
                    )
                val = None
                if val_loader is not None:
                    val = evaluate(
                        distributed.unwrap(model),  # local work only: no process waits for another per batch
                        val_loader,
                        loss_fn=loss_fn,
                        device=device,
                        precision=precision,
                    )
                seconds = time.perf_counter() - start
                if processes > 1:  # every process gets the same numbers, so they also step schedulers alike
                    train, val, seconds = distributed.combine_epoch(train, val, seconds)
                if step_every == "epoch":
                    scheduler.step(*([(val or train)["loss"]] if isinstance(scheduler, _PLATEAU) else []))
                # Every number of this epoch is recorded at once, so an interrupted epoch leaves no trace.
                history.record(train, val, lr=optimizer.param_groups[0]["lr"], seconds=seconds)
                if keep_best and history.best_epoch == epoch:
                    best_state = _snapshot(model)
                elif not keep_best:
                    last_good = _snapshot(model)
                if verbose:
                    print(f"epoch {epoch}/{epochs}: {history.epoch_line(epoch - 1)}", flush=True)
        except KeyboardInterrupt:
            history.interrupted = True
            if verbose:
                print(
                    f"Interrupted during epoch {history.epochs + 1}: returning the history of {history.epochs} "
                    "completed epoch(s)."
                )
        except NonFiniteLossError as exc:
            exc.history = history  # type: ignore[attr-defined]
            if best_state is None and not all(
                torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point()
            ):
                model.load_state_dict(last_good)
                if distributed.is_main_process():
                    print(
                        f"The weights had become non-finite: restored those after epoch {history.epochs} "
                        f"({'the initial weights' if history.epochs == 0 else 'the last completed epoch'})."
                    )
            _restore_best(model, best_state, history, verbose)
            raise
    _restore_best(model, best_state, history, verbose)
    return history


def _restore_best(model: nn.Module, best_state: dict | None, history: History, verbose: bool) -> None:
    if best_state is None:
        return
    model.load_state_dict(best_state)
    if verbose:
        print(
            f"Restored the best weights: epoch {history.best_epoch}, "
            f"val_acc {history.val_acc[history.best_epoch - 1]:.2%}."
        )
