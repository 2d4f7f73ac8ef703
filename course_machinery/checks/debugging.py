"""Checks for the debugging lesson: a repaired training run must reach its target, checked by running it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ._feedback import NOT_YET, Verdict, failed, passed, raised, unanswered

__all__ = ["check_fixed_run"]

_ROUTINE = (
    "run the routine on your version (a batch with its labels, the loss at init, one batch, the learning "
    "rate, the layer statistics) and compare what it shows with a healthy run"
)


def check_fixed_run(
    run: Callable[..., Any] | None,
    data: Any,
    *,
    make_model: Callable[[], nn.Module],
    steps: int,
    target: float,
    train_size: int = 8192,
    val_size: int = 2000,
    seed: int = 0,
) -> Verdict:
    """Run the learner's training function on a fixed budget; pass if it reaches ``target`` on validation.

    The function is called as ``run(model, loss_fn, train_images, train_labels, val_images, steps)`` with a
    fresh ``make_model()``, ``nn.CrossEntropyLoss()`` and raw uint8 images ``(N, 1, H, W)`` (pixels 0-255); it
    must return one predicted class per validation image, which the check scores itself. It never says what
    was wrong, only how far the run got; the global random state is the same afterwards.

    Args:
        run: The learner's function, or the placeholder None.
        data: A DataBundle whose ``train`` and ``val`` are TensorLoaders (``cu.data.mnist(...)``).
        make_model: Builds the fresh model the run trains.
        steps: Training steps the run may take (its ``steps`` argument).
        target: Validation accuracy (a fraction) the run must reach.
        train_size: Training images handed to the run (the first ones of ``data.train``).
        val_size: Validation images scored (the first ones of ``data.val``).
        seed: Seeds the model's initialisation and the run's random draws.

    Returns:
        A true Verdict when the run reaches the target.
    """
    if unanswered(run):
        return NOT_YET
    if not callable(run):
        return failed(f"give your function itself (its name, without parentheses); got {type(run).__name__}.")
    train_images, train_labels = data.train.images[:train_size], data.train.labels[:train_size]
    val_images, val_labels = data.val.images[:val_size], data.val.labels[:val_size]
    losses: list[float] = []
    loss_fn = nn.CrossEntropyLoss()

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if torch.is_grad_enabled():  # a training step (a validation loss under no_grad does not count)
            losses.append(float(output.detach()))

    loss_fn.register_forward_hook(record)
    devices = [train_images.get_device()] if train_images.is_cuda else []
    with torch.random.fork_rng(devices=devices):  # the learner's random state is left as it was
        torch.manual_seed(seed)
        model = make_model().to(train_images.device)
        try:
            preds = run(model, loss_fn, train_images.clone(), train_labels.clone(), val_images.clone(), steps)
        except Exception as exc:  # the learner's code failed: say so on one line, never raise
            return raised(exc)
    if len(losses) > steps:
        return failed(f"your run computed the loss {len(losses)} times; it may train for {steps} steps only.")
    if not isinstance(preds, torch.Tensor) or preds.shape != val_labels.shape or preds.is_floating_point():
        got = tuple(preds.shape) if isinstance(preds, torch.Tensor) else type(preds).__name__
        return failed(
            f"return one predicted class index per validation image, a tensor of shape ({len(val_labels)},) "
            f"(outputs.argmax(dim=1)); got {got}."
        )
    acc = float((preds.to(val_labels.device) == val_labels).float().mean())
    if acc >= target - 1e-9:
        return passed(
            f"your run reached {acc:.1%} validation accuracy in {steps} steps (target {target:.0%})."
        )
    if losses and not all(math.isfinite(v) for v in losses):
        end = "its training loss became NaN or infinite"
    else:
        end = f"its training loss ended at {losses[-1]:.3f}" if losses else "it never called loss_fn"
    return failed(
        f"your run reached {acc:.1%} validation accuracy in {steps} steps, below the {target:.0%} target ({end}); "
        f"{_ROUTINE}."
    )
