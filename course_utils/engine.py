"""The training engine: train_one_epoch, evaluate, predict and fit, which returns a History."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .checkpoint import save_checkpoint
from .utils import bf16_supported

__all__ = ["History", "Predictions", "NonFiniteLossError", "train_one_epoch", "evaluate", "predict", "fit"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: training stopped rather than continuing on garbage."""


@dataclass
class History:
    """Per-epoch metrics of one :func:`fit` run, like Keras' ``History``.

    Attributes:
        train_loss: Mean training loss of each epoch (weighted by sample count).
        train_acc: Training accuracy of each epoch, as a fraction.
        val_loss: Validation loss of each epoch (empty without a validation loader).
        val_acc: Validation accuracy of each epoch (empty without a validation loader).
        epoch_time: Wall-clock seconds of each epoch (training and validation).
        lr: Learning rate at the end of each epoch.
        best_epoch: 1-based epoch with the best validation accuracy (None without validation).
        interrupted: True when training was stopped early with Ctrl-C.
        precision: The precision training used (``"fp32"`` or ``"bf16"``; ``"auto"`` resolved).
        label: A name for plots and tables.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    interrupted: bool = False
    precision: str = "fp32"
    label: str = ""

    @property
    def epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.train_loss)

    @property
    def total_time(self) -> float:
        """Seconds spent in all epochs together."""
        return sum(self.epoch_time)

    def to_dict(self) -> dict[str, Any]:
        """The metrics as plain lists (safe to store in a checkpoint)."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}

    def plot(self, title: str | None = None):
        """Plot loss and accuracy curves; see :func:`course_utils.plotting.plot_history`."""
        from .plotting import plot_history

        return plot_history(self, title=title)

    def __repr__(self) -> str:
        lines = [f"History({self.label or 'run'}: {self.epochs} epochs, {self.total_time:.1f} s"
                 + (", interrupted" if self.interrupted else "") + ")"]
        for i in range(self.epochs):
            val = f"  val_loss {self.val_loss[i]:.4f}  val_acc {self.val_acc[i]:.2%}" if self.val_acc else ""
            lines.append(f"  epoch {i + 1}: train_loss {self.train_loss[i]:.4f}  train_acc {self.train_acc[i]:.2%}"
                         f"{val}  ({self.epoch_time[i]:.1f} s)")
        return "\n".join(lines)


class Predictions(NamedTuple):
    """Model outputs for a whole loader, on the CPU: predicted class, true label (or None), probabilities."""

    preds: torch.Tensor
    labels: torch.Tensor | None
    probs: torch.Tensor


# ---------------------------------------------------------------------------------------------------------
# Helpers that turn deep PyTorch errors into messages a beginner can act on
# ---------------------------------------------------------------------------------------------------------
def _first_conv_or_linear(model: nn.Module) -> nn.Module | None:
    return next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)


@contextlib.contextmanager
def _explain_shape_errors(model: nn.Module, images: torch.Tensor) -> Iterator[None]:
    try:
        yield
    except RuntimeError as exc:
        text = str(exc)
        if not any(s in text for s in ("channels", "shapes cannot be multiplied", "size mismatch", "Expected")):
            raise
        first = _first_conv_or_linear(model)
        expects = ""
        if isinstance(first, nn.Conv2d):
            expects = f" Its first layer, {first}, expects {first.in_channels} input channel(s)."
        raise ValueError(
            f"{type(model).__name__} could not process a batch of images of shape {tuple(images.shape)} "
            f"(batch, channels, height, width).{expects} Check that the images have the number of channels and "
            f"the size the model was built for (e.g. 1x28x28 for MNIST, 3x224x224 for ResNet).\n"
            f"PyTorch said: {text}"
        ) from exc


def _check_classes(outputs: torch.Tensor, labels: torch.Tensor) -> None:
    """Fail clearly when the model has fewer outputs than the labels need (checked on the first batch)."""
    if outputs.ndim != 2:
        raise ValueError(f"the model should output (batch, num_classes) scores, got shape {tuple(outputs.shape)}")
    top = int(labels.max())
    if top >= outputs.shape[1]:
        raise ValueError(
            f"the model outputs {outputs.shape[1]} class scores, but the labels go up to {top}, so it needs at "
            f"least {top + 1}. Make its last layer's out_features equal the number of classes "
            f"(e.g. nn.Linear(..., {top + 1}))."
        )


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
    with _explain_shape_errors(model, images), _autocast(device, precision):
        outputs = model(images)  # (batch, num_classes)
    if first:  # one check per pass: it reads labels.max(), a host sync
        _check_classes(outputs, labels)
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
            _raise_if_bad(first_bad, epoch)
            if progress is not None:
                progress.set_postfix(loss=f"{loss_sum.item() / n:.4f}", acc=f"{correct.item() / n:.2%}",
                                     refresh=False)
        if progress is not None:
            progress.update(1)
    _raise_if_bad(first_bad, epoch)
    if n == 0:
        raise ValueError("the training loader yielded no batches; is the dataset empty?")
    return {"loss": loss_sum.item() / n, "acc": correct.item() / n, "n": n}


def _raise_if_bad(first_bad: torch.Tensor, epoch: int) -> None:
    step = int(first_bad)
    if step >= 0:
        raise NonFiniteLossError(
            f"the loss became NaN or infinite at epoch {epoch}, step {step + 1}. Training stopped. Usual causes: "
            "a learning rate that is too high, unnormalised inputs, or a log of zero in a custom loss. Try a "
            "10x smaller lr."
        )


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
            with _explain_shape_errors(model, images):
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
def _check_trainable(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    trainable = sum(p.numel() for p in params if p.requires_grad)
    if trainable == 0:
        raise ValueError(
            "the optimizer has no trainable parameter: every parameter it was given has requires_grad=False, "
            "so loss.backward() has nothing to compute. A common cause: replacing the head (model.fc = ...) and "
            "*then* freezing every parameter, which freezes the new head too. Freeze the backbone first, then "
            "add the head (new layers are trainable), and build the optimizer from "
            "[p for p in model.parameters() if p.requires_grad]."
        )
    model_ids = {id(p) for p in model.parameters()}
    if not any(id(p) in model_ids for p in params):
        raise ValueError("the optimizer's parameters do not belong to this model; build the optimizer from "
                         "model.parameters() after creating the model you pass to fit")
    return trainable


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
    trainable = _check_trainable(model, optimizer)
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
