"""One pass over a loader: train_one_epoch (the loop notebook 02 writes by hand), evaluate and predict."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from . import distributed
from ._diagnose import check_images, explain_model_errors, non_finite_loss
from ._step import forward, hits, infer_device, is_channels_last
from .history import Predictions
from .utils import eval_mode

__all__ = ["train_one_epoch", "evaluate", "predict"]


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
        NonFiniteLossError: The loss became NaN or infinite (says at which epoch and step). Under torchrun, in
            every process at the same step, when the loss of any of them was not finite.
    """
    device = infer_device(model, device)
    channels_last = is_channels_last(model)
    model.train()
    # Sums stay on the device: reading them (a host sync) only every few steps keeps a GPU busy.
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    processes = distributed.world_size()
    for step, (images, labels) in enumerate(loader, 1):
        outputs, labels = forward(model, images, labels, device, precision, channels_last, first=step == 1)
        loss = loss_fn(outputs.float(), labels)
        # Checked at every step, before the update: a NaN never reaches the weights. On a CPU the check costs
        # nothing measurable (benchmarks/README.md); on a GPU it waits for the step to finish.
        if processes > 1:  # under torchrun all processes decide together, so none is left waiting for another
            distributed.agree_on_step(loss, epoch, step)
        elif not torch.isfinite(loss):
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
