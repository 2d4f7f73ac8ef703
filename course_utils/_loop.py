"""One pass over a loader: train_one_epoch (the loop notebook 02 writes by hand), evaluate and predict."""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from . import distributed
from ._diagnose import check_images, check_labels, explain_model_errors, non_finite_loss
from ._history import Predictions
from ._setup import bf16_native, eval_mode

# Steps between two reads of the running loss. Each read is a host sync (the CPU waits for the GPU) and, under
# torchrun, one all-reduce; so a NaN loss stops training, in every process, at most this many steps later.
CHECK_EVERY = 50


def train_one_epoch(
    model: nn.Module,
    train_loader: Iterable,
    *,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    device: torch.device | str | None = None,
    scheduler: Any = None,
    precision: str = "fp32",
    progress: Any = None,
    epoch: int = 1,
) -> dict[str, float]:
    """Train ``model`` for one pass over ``train_loader``: the loop notebook 02 writes by hand.

    Args:
        model: The network; put in train mode here.
        train_loader: Yields ``(images, labels)`` batches.
        optimizer: Updates the parameters.
        loss_fn: E.g. ``nn.CrossEntropyLoss()``.
        device: Where to compute; default: where the model's parameters are.
        scheduler: Stepped after every batch (e.g. ``OneCycleLR``); epoch-level schedulers belong in ``fit``.
        precision: ``"fp32"`` or ``"bf16"`` autocast.
        progress: A tqdm bar to advance per batch, or None.
        epoch: The epoch number, for messages.

    Returns:
        ``{"loss", "acc", "n", "lr"}``: sample-weighted loss and accuracy, images seen, the last step's lr.

    Raises:
        NonFiniteLossError: The loss became NaN or infinite (noticed within ``CHECK_EVERY`` steps).
    """
    device = infer_device(model, device)
    model.train()  # training mode: dropout drops, BatchNorm uses (and updates) batch statistics
    tally = Tally(device, epoch=epoch, progress=progress, guard=True)
    for step, (images, labels) in enumerate(train_loader, 1):
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()  # 1. forget the previous batch's gradients
        outputs = forward(model, images, labels, precision, first=step == 1)  # 2. forward: (batch, classes)
        loss = loss_fn(outputs.float(), labels)  # 3. mean loss over the batch
        loss.backward()  # 4. gradient of the loss for every parameter
        optimizer.step()  # 5. update the parameters
        tally.add(loss, outputs, labels, optimizer)  # + sums on the device; a NaN check every 50 steps
        if scheduler is not None:  # + a learning-rate schedule that steps after every batch
            scheduler.step()
    return tally.result()


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
    tally = Tally(device)
    with eval_mode(model):  # every submodule gets its own mode back afterwards
        for step, (images, labels) in enumerate(loader, 1):
            images, labels = images.to(device), labels.to(device)
            outputs = forward(model, images, labels, precision, first=step == 1)
            loss = loss_fn(outputs.float(), labels) if loss_fn is not None else None
            tally.add(loss, outputs, labels)
    return tally.result() | ({} if loss_fn is not None else {"loss": math.nan})


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
    labels, probs = [], []
    with eval_mode(model):
        for images, batch_labels in batches:
            outputs = forward(model, images.to(device), None, "fp32", first=False)  # (batch, num_classes)
            probs.append(outputs.float().softmax(dim=1).cpu())
            if batch_labels is not None:
                labels.append(batch_labels.cpu())
    probs = torch.cat(probs)
    return Predictions(probs.argmax(dim=1), torch.cat(labels) if labels else None, probs)


# --- One call away: a batch through the model, and the running sums ---------------------------------------
def forward(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None, precision: str, *, first: bool
) -> torch.Tensor:
    """``model(images)`` in the model's memory layout and precision, with a beginner's mistakes explained."""
    check_images(images)
    if is_channels_last(model):  # the batch follows the model's layout: the convolutions need no conversion
        images = images.contiguous(memory_format=torch.channels_last)
    bf16 = torch.autocast(images.device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    with explain_model_errors(model, images), bf16:
        outputs = model(images)  # (batch, num_classes)
    if first:  # one check per pass: it reads labels.max(), a host sync
        check_labels(outputs, labels)
    return outputs


class Tally:
    """Sample-weighted sums of loss and hits, kept on the device. Their read every ``CHECK_EVERY`` steps (one
    all-reduce under torchrun) also checks for a NaN loss (it makes the sum non-finite) and for a stop."""

    def __init__(self, device: torch.device, *, epoch: int = 1, progress: Any = None, guard: bool = False):
        self.loss = torch.zeros((), device=device, dtype=torch.float64)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.n, self.steps, self.checked, self.lr = 0, 0, 0, math.nan
        self.epoch, self.progress, self.guard = epoch, progress, guard

    def add(
        self, loss: torch.Tensor | None, outputs: torch.Tensor, labels: torch.Tensor, optimizer: Any = None
    ) -> None:
        """Add one batch's numbers; with ``guard``, read and check the sums every ``CHECK_EVERY`` steps."""
        batch = labels.shape[0]
        self.n, self.steps = self.n + batch, self.steps + 1
        if optimizer is not None:  # the rate this step used (a scheduler may change it next)
            self.lr = optimizer.param_groups[0]["lr"]
        if loss is not None:
            self.loss += loss.detach().double() * batch
        targets = labels.argmax(dim=1) if labels.ndim == 2 else labels  # class probabilities, or indices
        self.correct += (outputs.argmax(dim=1) == targets).sum()
        if self.progress is not None:
            self.progress.update(1)
        if self.guard and self.steps % CHECK_EVERY == 0:
            self._check()

    def _check(self) -> tuple[float, int]:
        """Read the sums (a host sync); raise if the loss was not finite anywhere, or a process must stop."""
        loss, correct = self.loss.item(), int(self.correct.item())
        distributed.agree(not math.isfinite(loss), self.epoch, (self.checked, self.steps))
        if not math.isfinite(loss):
            raise non_finite_loss(self.epoch, (self.checked, self.steps))
        self.checked = self.steps
        if self.progress is not None and self.n:
            n = self.n
            self.progress.set_postfix(loss=f"{loss / n:.4f}", acc=f"{correct / n:.2%}", refresh=False)
        return loss, correct

    def result(self) -> dict[str, float]:
        """The pass's metrics (a last check first, with ``guard``)."""
        if self.n == 0:
            raise ValueError("the loader yielded no batches; is the dataset empty?")
        loss, correct = self._check() if self.guard else (self.loss.item(), int(self.correct.item()))
        metrics = {"loss": loss / self.n, "acc": correct / self.n, "n": self.n}
        return metrics | {"lr": self.lr} if self.guard else metrics


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in {"fp32", "bf16", "auto"}:
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto', got {precision!r}")
    return ("bf16" if bf16_native(device) else "fp32") if precision == "auto" else precision


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-D weights are in channels-last layout (``model.to(memory_format=...)``)."""
    return any(
        p.ndim == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters()
    )


def infer_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    default = next((p.device for p in model.parameters()), torch.device("cpu"))  # where the weights are
    return torch.device(device) if device is not None else default
