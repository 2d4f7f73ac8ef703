"""The first checks of the debugging routine: the loss at initialisation, overfitting one batch, an LR range test.

Each leaves the model as it found it: weights, BatchNorm statistics, gradients, modes and optimizer state.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from .._step import infer_device
from ..utils import eval_mode, kept_modes

OptimizerLike = torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


@contextlib.contextmanager
def _restored(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> Iterator[None]:
    """Put back weights, buffers (BatchNorm statistics), gradients, modes and optimizer state on exit."""
    state = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
    grads = [(p, None if p.grad is None else p.grad.clone()) for p in model.parameters()]
    with kept_modes(model):
        try:
            yield
        finally:
            model.load_state_dict(state)  # copies in place: the optimizer's references stay valid
            if opt_state is not None:
                optimizer.load_state_dict(opt_state)  # also puts back each group's lr
            for p, g in grads:
                p.grad = g


def _make_optimizer(model: nn.Module, optimizer: OptimizerLike) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        return optimizer(model.parameters())
    raise TypeError(
        "optimizer must be a torch optimizer built on model.parameters(), or a function that builds one, e.g. "
        f"lambda params: torch.optim.SGD(params, lr=0.01); got {type(optimizer).__name__}"
    )


def loss_at_init(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module, *, verbose: bool = True
) -> float:
    """The loss on a batch in eval mode, beside ln(C), the loss of a uniform guess over C classes.

    Args:
        model: The freshly built classifier (its modes are kept).
        images: A batch of inputs, prepared as for training.
        labels: Their class indices.
        loss_fn: The training loss, e.g. ``nn.CrossEntropyLoss()``.
        verbose: Print the loss beside ln(C).

    Returns:
        The mean loss on the batch.
    """
    device = infer_device(model, None)
    with eval_mode(model), torch.no_grad():
        outputs = model(images.to(device))  # (batch, num_classes)
        loss = float(loss_fn(outputs, labels.to(device)))
    if verbose:
        chance = math.log(outputs.shape[1])
        print(f"loss at init {loss:.4f}; ln({outputs.shape[1]}) = {chance:.4f}; ratio {loss / chance:.2f}")
    return loss


class OverfitResult(NamedTuple):
    """What :func:`overfit_one_batch` saw; ``fits`` is its rule of thumb: every image right, loss below 5% of
    where it started."""

    losses: list[float]
    acc: float
    fits: bool


def overfit_one_batch(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: nn.Module,
    optimizer: OptimizerLike,
    *,
    steps: int = 100,
    verbose: bool = True,
) -> OverfitResult:
    """Train on one small batch again and again: a sound setup drives its loss to about 0.

    Turn off what is meant to prevent this first (dropout, weight decay, label smoothing). The model,
    its gradients and modes, and the optimizer are restored afterwards.

    Args:
        model: The classifier.
        images: One small batch (e.g. 32 images), prepared as for training.
        labels: Their class indices.
        loss_fn: The training loss.
        optimizer: An optimizer built on ``model.parameters()``, or a function ``params -> optimizer``.
        steps: Training steps on the batch.
        verbose: Print the first and last loss, the final accuracy and the verdict.

    Returns:
        An OverfitResult (``losses``, ``acc``, ``fits``).
    """
    device = infer_device(model, None)
    images, labels = images.to(device), labels.to(device)
    optimizer = _make_optimizer(model, optimizer)
    losses = []
    with _restored(model, optimizer):
        model.train()
        for _ in range(steps):
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        with eval_mode(model), torch.no_grad():
            acc = float((model(images).argmax(dim=1) == labels).float().mean())
    result = OverfitResult(losses, acc, acc == 1.0 and losses[-1] < 0.05 * losses[0])
    if verbose:
        verdict = "it fits one batch" if result.fits else "it does NOT fit one batch: find out why first"
        print(f"{steps} steps on {len(labels)} images: loss {losses[0]:.4f} -> {losses[-1]:.4f}, ", end="")
        print(f"accuracy {acc:.0%}: {verdict}")
    return result


@dataclass
class LRRangeResult:
    """The learning rates tried, the smoothed loss at each, the raw losses and a suggestion (a heuristic)."""

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggestion: float

    def plot(self, *, mark: dict[str, float] | None = None, ax: Any = None) -> Figure:
        """Loss against learning rate (log scale); the suggestion dashed and ``mark``'s lrs dotted."""
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
        ax.plot(self.lrs, self.losses, color="C0", label="smoothed training loss")
        ax.axvline(self.suggestion, color="C2", ls="--", label=f"suggestion {self.suggestion:.2g} (min / 10)")
        for i, (name, lr) in enumerate((mark or {}).items()):
            ax.axvline(lr, color=f"C{3 + i}", ls=":", lw=2, label=f"{name}: {lr:.2g}")
        ax.set(xscale="log", xlabel="learning rate", ylabel="loss", title="Learning-rate range test")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return ax.figure


def lr_range_test(
    model: nn.Module,
    train_loader: Iterable,
    loss_fn: nn.Module,
    optimizer: OptimizerLike,
    *,
    start_lr: float = 1e-5,
    end_lr: float = 10.0,
    steps: int = 100,
    beta: float = 0.9,
    stop_factor: float = 4.0,
) -> LRRangeResult:
    """Train briefly while the learning rate grows exponentially from ``start_lr`` to ``end_lr``.

    The loss barely moves (lr too small), then falls, then explodes (too large); the test stops when the
    smoothed loss exceeds ``stop_factor`` times its minimum or is NaN. The suggestion (the lr of the lowest
    loss / 10, fastai v1's rule) is a heuristic to confirm with a short run. The model (weights, BatchNorm
    statistics, gradients, modes) and the optimizer (state, lrs) are restored; only the loader's shuffling
    and the random generators move on.

    Args:
        model: The network to test.
        train_loader: Training batches ``(images, labels)``; passes restart as needed.
        loss_fn: The training loss.
        optimizer: An optimizer built on ``model.parameters()``, or a function ``params -> optimizer``.
        start_lr: The first learning rate.
        end_lr: The last learning rate (if the loss has not blown up before).
        steps: Number of training steps (batches).
        beta: Smoothing of the loss curve (exponential moving average, bias-corrected).
        stop_factor: Stop when the smoothed loss exceeds this multiple of its minimum.

    Returns:
        An LRRangeResult with ``lrs``, smoothed ``losses``, ``raw_losses`` and ``suggestion``.
    """
    if not 0 < start_lr < end_lr or steps < 2:
        raise ValueError(f"need 0 < start_lr < end_lr and steps >= 2; got {start_lr}, {end_lr}, {steps}")
    if hasattr(train_loader, "__len__") and len(train_loader) == 0:
        raise ValueError("the training loader yields no batches; is the dataset empty?")
    device = infer_device(model, None)
    optimizer = _make_optimizer(model, optimizer)
    factor = (end_lr / start_lr) ** (1 / (steps - 1))
    batches = itertools.islice(itertools.chain.from_iterable(itertools.repeat(train_loader)), steps)
    lrs, losses, raw, average = [], [], [], 0.0
    with _restored(model, optimizer):
        model.train()
        for step, (images, labels) in enumerate(batches):
            lr = start_lr * factor**step
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = loss_fn(model(images.to(device)), labels.to(device))
            value = loss.item()
            if not math.isfinite(value):
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            average = beta * average + (1 - beta) * value
            lrs.append(lr)
            raw.append(value)
            losses.append(average / (1 - beta ** (step + 1)))  # bias-corrected: early values not pulled to 0
            if losses[-1] > stop_factor * min(losses):
                break
    if len(losses) < 2:
        raise ValueError(
            "the loss was NaN or infinite from the first steps: check the inputs and the loss at init first, "
            "then lower start_lr"
        )
    best = min(range(len(losses)), key=losses.__getitem__)
    return LRRangeResult(lrs, losses, raw, lrs[best] / 10)
