"""The training engine: train_one_epoch, evaluate, predict and fit, which returns a History."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ._diagnose import (
    NonFiniteLossError,
    check_images,
    check_optimizer,
    explain_model_errors,
    non_finite_loss,
)
from ._step import forward, hits, infer_device, is_channels_last, resolve_precision
from .history import History, Predictions
from .utils import eval_mode, kept_modes

__all__ = ["train_one_epoch", "evaluate", "predict", "fit"]  # History and its kin: cu.History, cu.history


# ---------------------------------------------------------------------------------------------------------
# One epoch, evaluation and prediction
# ---------------------------------------------------------------------------------------------------------
def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    *,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    device: torch.device | str | None = None,
    scheduler: Any = None,
    precision: str = "fp32",
    progress: Any = None,
    epoch: int = 1,
) -> dict[str, float]:
    """Train ``model`` for one pass over ``loader``: the loop notebook 02 writes by hand.

    Args:
        model: The network; put in train mode here.
        loader: Yields ``(images, labels)`` batches.
        optimizer: Updates the parameters.
        loss_fn: E.g. ``nn.CrossEntropyLoss()``.
        device: Where to compute; default: where the model's parameters are.
        scheduler: Stepped after every batch (e.g. ``OneCycleLR``); epoch-level schedulers belong in ``fit``.
        precision: ``"fp32"`` or ``"bf16"`` autocast. Images follow the model's memory layout (channels-last
            after ``model.to(memory_format=torch.channels_last)``).
        progress: A tqdm bar to advance per batch, or None.
        epoch: The epoch number, for error messages.

    Returns:
        ``{"loss": mean loss, "acc": accuracy, "n": number of images}``, weighted by sample count.

    Raises:
        NonFiniteLossError: The loss became NaN or infinite (says at which epoch and step).
    """
    device = infer_device(model, device)
    channels_last = is_channels_last(model)
    model.train()
    # Sums stay on the device: reading them (a host sync) only every few steps keeps a GPU busy.
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for step, (images, labels) in enumerate(loader, 1):
        outputs, labels = forward(model, images, labels, device, precision, channels_last, first=step == 1)
        loss = loss_fn(outputs.float(), labels)
        # Checked at every step, before the update: a NaN never reaches the weights. On a CPU the check costs
        # nothing measurable (benchmarks/README.md); on a GPU it waits for the step to finish.
        if not torch.isfinite(loss):
            raise non_finite_loss(epoch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()

        batch = labels.shape[0]
        n += batch
        loss_sum += loss.detach() * batch
        correct += hits(outputs, labels)
        if progress is not None:
            if step % 50 == 0 or step == 1:
                progress.set_postfix(
                    loss=f"{loss_sum.item() / n:.4f}", acc=f"{correct.item() / n:.2%}", refresh=False
                )
            progress.update(1)
    if n == 0:
        raise ValueError("the training loader yielded no batches; is the dataset empty?")
    return {"loss": loss_sum.item() / n, "acc": correct.item() / n, "n": n}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    loss_fn: nn.Module | None = None,
    device: torch.device | str | None = None,
    precision: str = "fp32",
) -> dict[str, float]:
    """Loss and accuracy of ``model`` on ``loader``, in eval mode; the model's mode is restored afterwards.

    Args:
        model: The network.
        loader: Yields ``(images, labels)`` batches.
        loss_fn: If given, the mean loss is reported too.
        device: Where to compute; default: where the model's parameters are.
        precision: ``"fp32"`` or ``"bf16"`` autocast.

    Returns:
        ``{"loss": mean loss or nan, "acc": accuracy, "n": number of images}``, weighted by sample count.
    """
    device = infer_device(model, device)
    channels_last = is_channels_last(model)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    with eval_mode(model):  # every submodule gets its own mode back afterwards
        for step, (images, labels) in enumerate(loader):
            outputs, labels = forward(
                model, images, labels, device, precision, channels_last, first=step == 0
            )
            if loss_fn is not None:
                loss_sum += loss_fn(outputs.float(), labels) * labels.shape[0]
            correct += hits(outputs, labels)
            n += labels.shape[0]
    if n == 0:
        raise ValueError("the loader yielded no batches; is the dataset empty?")
    return {
        "loss": loss_sum.item() / n if loss_fn is not None else math.nan,
        "acc": correct.item() / n,
        "n": n,
    }


@torch.no_grad()
def predict(
    model: nn.Module, data: Iterable | torch.Tensor, *, device: torch.device | str | None = None
) -> Predictions:
    """Predict classes for a loader of ``(images, labels)`` batches or for one tensor of images.

    Args:
        model: The network; evaluated in eval mode, its mode restored afterwards.
        data: A loader, or an image batch ``(batch, C, H, W)``.
        device: Where to compute; default: where the model's parameters are.

    Returns:
        ``Predictions(preds, labels, probs)`` on the CPU; ``labels`` is None for a plain tensor.
    """
    device = infer_device(model, device)
    batches = [(data, None)] if isinstance(data, torch.Tensor) else data
    preds, labels, probs = [], [], []
    with eval_mode(model):
        for images, batch_labels in batches:
            images = images.to(device)
            check_images(images)
            with explain_model_errors(model, images):
                p = model(images).float().softmax(dim=1)  # (batch, num_classes)
            probs.append(p.cpu())
            preds.append(p.argmax(dim=1).cpu())
            if batch_labels is not None:
                labels.append(batch_labels.cpu())
    return Predictions(torch.cat(preds), torch.cat(labels) if labels else None, torch.cat(probs))


# ---------------------------------------------------------------------------------------------------------
# fit: the whole training run
# ---------------------------------------------------------------------------------------------------------
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
    label: str = "",
) -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader``, evaluating on ``val_loader`` after each.

    It never re-initialises weights (so pretrained weights survive), gives every submodule its own
    train/eval mode back at the end, weights metrics by sample count and says what it does. An epoch's
    numbers are recorded together, once the epoch is over: Ctrl-C at any point returns the history of the
    completed epochs (with the best weights, if ``keep_best``).

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
        label: A name for this run, used by plots and tables.

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
    device = infer_device(model, device)
    model.to(device)
    precision = resolve_precision(precision, device)
    history = History(label=label, precision=precision)
    best_state = None
    if verbose:
        stepping = (
            f"; {type(scheduler).__name__} steps after every {step_every}" if scheduler is not None else ""
        )
        print(
            f"Training {type(model).__name__} ({trainable:,} trainable parameters) on {device} for {epochs} "
            f"epoch(s), precision {precision}{', channels_last' if is_channels_last(model) else ''}{stepping}."
        )
    with kept_modes(model):
        last_good = None if keep_best else _snapshot(model)  # finite weights to fall back on after a NaN
        try:
            for epoch in range(1, epochs + 1):
                start = time.perf_counter()
                total = len(train_loader) if hasattr(train_loader, "__len__") else None
                with tqdm(
                    total=total, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not verbose
                ) as bar:
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
                        model,
                        val_loader,
                        loss_fn=loss_fn,
                        device=device,
                        precision=precision,
                    )
                if step_every == "epoch":
                    scheduler.step(*([(val or train)["loss"]] if isinstance(scheduler, _PLATEAU) else []))
                # Every number of this epoch is recorded at once, so an interrupted epoch leaves no trace.
                history.record(
                    train, val, lr=optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - start
                )
                if keep_best and history.best_epoch == epoch:
                    best_state = _snapshot(model)
                elif not keep_best:
                    last_good = _snapshot(model)
                if verbose:
                    print(f"epoch {epoch}/{epochs}: {history.epoch_line(epoch - 1)}")
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
