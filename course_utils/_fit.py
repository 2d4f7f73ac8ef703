"""fit: train for several epochs, validating after each, and return a History (Keras' ``model.fit``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from . import distributed
from ._diagnose import NonFiniteLossError, check_optimizer
from ._history import History
from ._loop import evaluate, infer_device, is_channels_last, resolve_precision, train_one_epoch
from ._setup import kept_modes

_PER_BATCH = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)
_PLATEAU = torch.optim.lr_scheduler.ReduceLROnPlateau


def _scheduler_step(scheduler: Any, scheduler_step: str | None) -> str | None:
    """When the scheduler steps: 'batch' or 'epoch'; asks the caller wherever the type does not settle it."""
    if scheduler is None:
        return None
    if scheduler_step is None:
        if isinstance(scheduler, _PER_BATCH):
            return "batch"  # their total_steps / step_size count batches
        if isinstance(scheduler, _PLATEAU):
            return "epoch"  # it needs the validation loss
        raise ValueError(
            f"say when {type(scheduler).__name__} should step: fit(..., scheduler_step='batch') steps it "
            "after every batch (e.g. a warm-up or a schedule over all training steps), "
            "scheduler_step='epoch' after every epoch (e.g. StepLR(optimizer, step_size=10) counting epochs)."
        )
    if scheduler_step not in {"batch", "epoch"}:
        raise ValueError(f"scheduler_step must be 'batch' or 'epoch', got {scheduler_step!r}")
    if scheduler_step == "batch" and isinstance(scheduler, _PLATEAU):
        raise ValueError(
            "ReduceLROnPlateau steps on the validation loss once per epoch: use scheduler_step='epoch'"
        )
    return scheduler_step


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

    It never re-initialises weights, gives every submodule its own train/eval mode back, weights metrics by
    sample count and says what it does. An epoch is recorded once it is over: Ctrl-C at any point returns the
    history of the completed epochs. A NaN or infinite loss is noticed within ``CHECK_EVERY`` (50) steps (a
    read makes a GPU wait): training stops, and the model gets its last finite weights back.

    Under torchrun (a DDP model, ``cu.distributed.shard``-ed loaders, validation with ``pad=False``) the
    same call trains in every process: all validate process 0's BatchNorm statistics, metrics are combined
    by sample count, only process 0 prints, and a NaN or Ctrl-C anywhere stops all at the same step.

    Args:
        model: The network (moved to ``device`` if given).
        train_loader: Training batches ``(images, labels)``.
        val_loader: Validation batches, evaluated after every epoch; or None.
        epochs: Number of passes over the training data.
        optimizer: Built by the caller from the model's trainable parameters.
        loss_fn: E.g. ``nn.CrossEntropyLoss()``.
        device: Where to train; default: where the model's parameters are.
        scheduler: A learning-rate scheduler, or None.
        scheduler_step: ``"batch"`` or ``"epoch"``: when it steps. Needed for any scheduler but
            ``OneCycleLR``/``CyclicLR`` (per batch) and ``ReduceLROnPlateau`` (per epoch, on the validation
            loss, or the training loss without validation).
        keep_best: Keep the weights of the epoch with the best validation accuracy and load them at the end
            (also after Ctrl-C or a non-finite loss). Needs ``val_loader``.
        precision: ``"fp32"``, ``"bf16"`` autocast, or ``"auto"`` (bf16 where natively fast). Every batch
            follows the model's memory layout (``model.to(memory_format=torch.channels_last)``, say).
        verbose: Print what fit does, a progress bar per epoch and a line per epoch; False: silent.
        name: The run's name, used by plots and tables.

    Returns:
        The History of per-epoch metrics.

    Raises:
        ValueError: Nothing to train, data that does not fit the model, or a scheduler's stepping unsaid.
        NonFiniteLossError: The loss became NaN/inf; ``exc.history`` holds the completed epochs' history.
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
        distributed.check_ready(model, train_loader, val_loader)
    verbose = verbose and distributed.is_main_process()  # one process speaks for all
    bars = verbose and (processes == 1 or sys.stderr.isatty())  # torchrun piped into a log: bars are noise
    device = infer_device(model, device)
    model.to(device)
    precision = resolve_precision(precision, device)
    history, best_state = History(name=name, precision=precision), None
    if verbose:
        model_name = type(distributed.unwrap(model)).__name__  # the model inside DistributedDataParallel
        stepping = f"; {type(scheduler).__name__} steps after every {step_every}" if step_every else ""
        print(
            f"Training {model_name} ({trainable:,} trainable parameters) on {device} for {epochs} epoch(s), "
            f"precision {precision}{', channels_last' if is_channels_last(model) else ''}{stepping}"
            + (f", in {processes} processes." if processes > 1 else "."),
            flush=True,  # (a script's output reaches a log or a notebook cell as it happens)
        )
    evaluate_kw = dict(loss_fn=loss_fn, device=device, precision=precision)  # training passes them too
    batch_scheduler = scheduler if step_every == "batch" else None  # one that steps per epoch does so below
    train_kw = dict(optimizer=optimizer, scheduler=batch_scheduler, **evaluate_kw)
    with kept_modes(model), distributed.stop_together():
        last_good = _snapshot(model)  # finite weights to fall back on after a NaN: the last completed epoch's
        try:
            for epoch in range(1, epochs + 1):
                start = time.perf_counter()
                distributed.start_epoch(train_loader, epoch)
                total = len(train_loader) if hasattr(train_loader, "__len__") else None
                with tqdm(total=total, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not bars) as bar:
                    train = train_one_epoch(model, train_loader, progress=bar, epoch=epoch, **train_kw)
                val = None
                if val_loader is not None:
                    if processes > 1:  # every process scores process 0's BatchNorm statistics: one model
                        distributed.sync_buffers(model)
                    # The unwrapped model: local work only, no process waits for another per batch.
                    val = evaluate(distributed.unwrap(model), val_loader, **evaluate_kw)
                seconds, lr = time.perf_counter() - start, train["lr"]  # the rate this epoch used
                if processes > 1:  # every process gets the same numbers, so they also step schedulers alike
                    train, val, seconds = distributed.combine_epoch(train, val, seconds)
                # Every number of this epoch is recorded at once, so an interrupted epoch leaves no trace.
                history.record(train, val, lr=lr, seconds=seconds)
                last_good = _snapshot(model)
                if keep_best and history.best_epoch == epoch:
                    best_state = last_good
                if step_every == "epoch":  # after the record: it sets the rate of the next epoch
                    scheduler.step(*([(val or train)["loss"]] if isinstance(scheduler, _PLATEAU) else []))
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
            if best_state is None:  # (with keep_best, the best weights are restored below)
                model.load_state_dict(last_good)
                if verbose:
                    what = "the initial weights" if history.epochs == 0 else "the last completed epoch"
                    print(f"Restored the weights after epoch {history.epochs} ({what}).")
            _restore_best(model, best_state, history, verbose)
            raise
    _restore_best(model, best_state, history, verbose)
    return history


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _restore_best(model: nn.Module, best_state: dict | None, history: History, verbose: bool) -> None:
    if best_state is not None:
        model.load_state_dict(best_state)
        if verbose:
            best = history.best_epoch
            print(f"Restored the best weights: epoch {best}, val_acc {history.val_acc[best - 1]:.2%}.")
