"""The training engine: train_one_epoch, evaluate, predict and fit, which returns a History."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._diagnose import NonFiniteLossError, check_classes, check_optimizer, explain_shape_errors, raise_if_bad
from .checkpoint import save_checkpoint
from .history import History, Predictions
from .utils import bf16_supported

__all__ = ["History", "Predictions", "NonFiniteLossError", "train_one_epoch", "evaluate", "predict", "fit"]


# ---------------------------------------------------------------------------------------------------------
# One batch through the model: device, memory layout, precision
# ---------------------------------------------------------------------------------------------------------
def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in {"fp32", "bf16", "auto"}:
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto', got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


def _forward(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    precision: str,
    channels_last: bool,
    *,
    first: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch to the device and run the model on it; explain shape and class-count mistakes."""
    images = images.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with explain_shape_errors(model, images), _autocast(device, precision):
        outputs = model(images)  # (batch, num_classes)
    if first:  # one check per pass: it reads labels.max(), a host sync
        check_classes(outputs, labels)
    return outputs, labels


def _infer_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


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
    channels_last: bool = False,
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
        precision: ``"fp32"`` or ``"bf16"`` autocast.
        channels_last: Feed images in channels-last memory layout (the model should be converted too).
        progress: A tqdm bar to advance per batch, or None.
        epoch: The epoch number, for error messages.

    Returns:
        ``{"loss": mean loss, "acc": accuracy, "n": number of images}``, weighted by sample count.

    Raises:
        NonFiniteLossError: The loss became NaN or infinite (says at which epoch and step).
    """
    device = _infer_device(model, device)
    model.train()
    # Sums stay on the device: reading them (a host sync) only every few steps keeps a GPU busy.
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)  # first step with a non-finite loss
    n = 0
    for step, (images, labels) in enumerate(loader):
        outputs, labels = _forward(model, images, labels, device, precision, channels_last, first=step == 0)
        loss = loss_fn(outputs.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()

        batch = labels.shape[0]
        n += batch
        loss = loss.detach().float()
        loss_sum += loss * batch
        correct += (outputs.argmax(dim=1) == labels).sum()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
        if step % 50 == 49 or step == 0:
            raise_if_bad(first_bad, epoch)
            if progress is not None:
                progress.set_postfix(loss=f"{loss_sum.item() / n:.4f}", acc=f"{correct.item() / n:.2%}",
                                     refresh=False)
        if progress is not None:
            progress.update(1)
    raise_if_bad(first_bad, epoch)
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
    channels_last: bool = False,
) -> dict[str, float]:
    """Loss and accuracy of ``model`` on ``loader``, in eval mode; the model's mode is restored afterwards.

    Args:
        model: The network.
        loader: Yields ``(images, labels)`` batches.
        loss_fn: If given, the mean loss is reported too.
        device: Where to compute; default: where the model's parameters are.
        precision: ``"fp32"`` or ``"bf16"`` autocast.
        channels_last: Feed images in channels-last memory layout.

    Returns:
        ``{"loss": mean loss or nan, "acc": accuracy, "n": number of images}``, weighted by sample count.
    """
    device = _infer_device(model, device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    try:
        for step, (images, labels) in enumerate(loader):
            outputs, labels = _forward(model, images, labels, device, precision, channels_last, first=step == 0)
            if loss_fn is not None:
                loss_sum += loss_fn(outputs.float(), labels) * labels.shape[0]
            correct += (outputs.argmax(dim=1) == labels).sum()
            n += labels.shape[0]
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("the loader yielded no batches; is the dataset empty?")
    return {"loss": loss_sum.item() / n if loss_fn is not None else math.nan, "acc": correct.item() / n, "n": n}


@torch.no_grad()
def predict(model: nn.Module, data: Iterable | torch.Tensor, *, device: torch.device | str | None = None) -> Predictions:
    """Predict classes for a loader of ``(images, labels)`` batches or for one tensor of images.

    Args:
        model: The network; evaluated in eval mode, its mode restored afterwards.
        data: A loader, or an image batch ``(batch, C, H, W)``.
        device: Where to compute; default: where the model's parameters are.

    Returns:
        ``Predictions(preds, labels, probs)`` on the CPU; ``labels`` is None for a plain tensor.
    """
    device = _infer_device(model, device)
    was_training = model.training
    model.eval()
    batches = [(data, None)] if isinstance(data, torch.Tensor) else data
    preds, labels, probs = [], [], []
    try:
        for images, batch_labels in batches:
            images = images.to(device)
            with explain_shape_errors(model, images):
                p = model(images).float().softmax(dim=1)  # (batch, num_classes)
            probs.append(p.cpu())
            preds.append(p.argmax(dim=1).cpu())
            if batch_labels is not None:
                labels.append(batch_labels.cpu())
    finally:
        model.train(was_training)
    return Predictions(torch.cat(preds), torch.cat(labels) if labels else None, torch.cat(probs))


# ---------------------------------------------------------------------------------------------------------
# fit: the whole training run
# ---------------------------------------------------------------------------------------------------------
def _per_batch(scheduler: Any) -> bool:
    return isinstance(scheduler, (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR))


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
    keep_best: bool = False,
    checkpoint_path: str | Path | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    progress: bool = True,
    verbose: bool = True,
    label: str = "",
) -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader``, evaluating on ``val_loader`` after each.

    It never re-initialises weights (so pretrained weights survive), restores train/eval mode itself,
    weights metrics by sample count and says what it does. Ctrl-C stops training cleanly and returns the
    history so far.

    Args:
        model: The network (moved to ``device`` if given).
        train_loader: Training batches ``(images, labels)``.
        val_loader: Validation batches, evaluated after every epoch; or None.
        epochs: Number of passes over the training data.
        optimizer: Built by the caller from the model's trainable parameters.
        loss_fn: E.g. ``nn.CrossEntropyLoss()``.
        device: Where to train; default: where the model's parameters are.
        scheduler: A learning-rate scheduler. ``OneCycleLR``/``CyclicLR`` step every batch,
            ``ReduceLROnPlateau`` steps on the validation loss, others step every epoch.
        keep_best: Keep the weights of the epoch with the best validation accuracy and load them at the end
            (also after Ctrl-C or a non-finite loss). Needs ``val_loader``.
        checkpoint_path: Save a checkpoint here (atomically) whenever the model improves (every epoch
            without validation).
        precision: ``"fp32"`` (default), ``"bf16"`` autocast, or ``"auto"`` (bf16 where natively fast).
        channels_last: Use channels-last memory layout for model and images (faster convs on some hardware).
        progress: Show a progress bar per epoch.
        verbose: Print a line per epoch and what fit did.
        label: A name for this run, used by plots and tables.

    Returns:
        The History of per-epoch metrics.

    Raises:
        ValueError: The optimizer has nothing to train, or the data does not fit the model.
        NonFiniteLossError: The loss became NaN/inf; ``exc.history`` holds the history so far.
    """
    from tqdm.auto import tqdm

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if keep_best and val_loader is None:
        raise ValueError("keep_best=True chooses the best epoch by validation accuracy: pass a val_loader")
    trainable = check_optimizer(model, optimizer)
    device = _infer_device(model, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    precision = _resolve_precision(precision, device)
    history = History(label=label, precision=precision)
    was_training = model.training
    best_acc, best_state = -1.0, None
    if verbose:
        print(f"Training {type(model).__name__} ({trainable:,} trainable parameters) on {device} for {epochs} "
              f"epoch(s), precision {precision}{', channels_last' if channels_last else ''}.")
    try:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            total = len(train_loader) if hasattr(train_loader, "__len__") else None
            with tqdm(total=total, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress) as bar:
                train = train_one_epoch(
                    model, train_loader, optimizer=optimizer, loss_fn=loss_fn, device=device,
                    scheduler=scheduler if _per_batch(scheduler) else None, precision=precision,
                    channels_last=channels_last, progress=bar, epoch=epoch,
                )
            history.train_loss.append(train["loss"])
            history.train_acc.append(train["acc"])
            if val_loader is not None:
                val = evaluate(model, val_loader, loss_fn=loss_fn, device=device, precision=precision,
                               channels_last=channels_last)
                history.val_loss.append(val["loss"])
                history.val_acc.append(val["acc"])
            if scheduler is not None and not _per_batch(scheduler):
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(history.val_loss[-1] if history.val_loss else train["loss"])
                else:
                    scheduler.step()
            history.lr.append(optimizer.param_groups[0]["lr"])
            history.epoch_time.append(time.perf_counter() - start)

            improved = val_loader is None or history.val_acc[-1] > best_acc
            if val_loader is not None and improved:
                best_acc, history.best_epoch = history.val_acc[-1], epoch
                if keep_best:
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            if checkpoint_path is not None and improved:
                save_checkpoint(model, checkpoint_path, optimizer=optimizer, history=history)
            if verbose:
                val_text = f", val_loss {history.val_loss[-1]:.4f}, val_acc {history.val_acc[-1]:.2%}" if val_loader else ""
                print(f"epoch {epoch}/{epochs}: train_loss {train['loss']:.4f}, train_acc {train['acc']:.2%}"
                      f"{val_text} ({history.epoch_time[-1]:.1f} s)")
    except KeyboardInterrupt:
        history.interrupted = True
        if verbose:
            print(f"Interrupted during epoch {history.epochs + 1}: returning the history of {history.epochs} "
                  "completed epoch(s).")
    except NonFiniteLossError as exc:
        _restore_best(model, best_state, history, verbose)
        exc.history = history  # type: ignore[attr-defined]
        raise
    finally:
        model.train(was_training)
    _restore_best(model, best_state, history, verbose)
    return history


def _restore_best(model: nn.Module, best_state: dict | None, history: History, verbose: bool) -> None:
    if best_state is None:
        return
    model.load_state_dict(best_state)
    if verbose:
        print(f"Restored the best weights: epoch {history.best_epoch}, "
              f"val_acc {history.val_acc[history.best_epoch - 1]:.2%}.")
