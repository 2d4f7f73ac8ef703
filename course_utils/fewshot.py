"""Few-shot transfer on digits: learn new classes from a few labelled images, from scratch or from a pretrained CNN."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from .engine import evaluate, fit
from .models import SimpleCNN
from .tensorloader import TensorLoader

__all__ = ["STRATEGIES", "select_classes", "sample_per_class", "transfer_model", "train_few_shot"]

STRATEGIES = ("from scratch", "feature extraction", "fine-tuning")


def select_classes(
    images: torch.Tensor, labels: torch.Tensor, classes: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the images of ``classes`` and relabel them ``0 .. len(classes) - 1`` in that order.

    Args:
        images: Images ``(N, ...)``.
        labels: Labels ``(N,)``.
        classes: The labels to keep, e.g. ``[5, 6, 7, 8, 9]`` (which become 0 to 4).

    Returns:
        ``(images, new_labels)`` of the kept images, in their original order.
    """
    new_labels = torch.full_like(labels, -1)
    for new, old in enumerate(classes):
        new_labels[labels == old] = new
    keep = new_labels >= 0
    return images[keep], new_labels[keep]


def sample_per_class(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of ``per_class`` randomly chosen examples of every class in ``labels``.

    Args:
        labels: Labels ``(N,)``.
        per_class: Examples to take from each class.
        seed: Seed of the draw (a different seed gives a different sample).

    Returns:
        The indices, class by class.
    """
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in labels.unique().tolist():
        members = torch.nonzero(labels == c)[:, 0]
        if len(members) < per_class:
            raise ValueError(f"class {c} has only {len(members)} examples, fewer than per_class={per_class}")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen)


def transfer_model(strategy: str, pretrained: SimpleCNN, num_classes: int, seed: int) -> SimpleCNN:
    """A SimpleCNN for the new task, built for one of :data:`STRATEGIES`.

    Args:
        strategy: ``"from scratch"`` (random weights, all trainable), ``"feature extraction"`` (a copy of
            ``pretrained`` with every layer frozen, then a new trainable ``fc``) or ``"fine-tuning"`` (a copy of
            ``pretrained``, all trainable, with a new ``fc``).
        pretrained: The network trained on the source task (not modified).
        num_classes: Classes of the new task.
        seed: Seed for the new random weights (the whole model from scratch, or the new head).

    Returns:
        The model.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    torch.manual_seed(seed)
    if strategy == "from scratch":
        return SimpleCNN(num_classes, pretrained.in_channels, pretrained.image_size)
    model = copy.deepcopy(pretrained)
    if strategy == "feature extraction":
        model.requires_grad_(False)  # 1. freeze everything that exists now...
    model.fc = nn.Linear(model.fc.in_features, num_classes)  # 2. ...then add the new head: trainable
    return model


def train_few_shot(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    max_shift: int,
    mean: Sequence[float],
    std: Sequence[float],
    seed: int,
    device: torch.device | str = "cpu",
    eval_images: torch.Tensor | None = None,
    eval_labels: torch.Tensor | None = None,
) -> float | None:
    """Train ``model`` with Adam for exactly ``steps`` optimizer steps; optionally return an accuracy.

    Every strategy gets the same steps, batch size, augmentation and batch order (same ``seed``), so the
    starting weights and what is trainable are the only differences.

    Args:
        model: Modified in place; only parameters with ``requires_grad`` are given to the optimizer.
        images: uint8 training images ``(N, 1, H, W)``.
        labels: Their labels ``(N,)``.
        steps: Optimizer steps; must be a multiple of the batches per pass over ``images``.
        batch_size: Images per step.
        lr: Adam's learning rate.
        max_shift: Random shifts of up to this many pixels (augmentation); 0 for none.
        mean: Normalisation mean.
        std: Normalisation standard deviation.
        seed: Seed of the shuffling and the shifts.
        device: Where to train.
        eval_images: uint8 images to score afterwards (validation or test), or None.
        eval_labels: Their labels.

    Returns:
        The accuracy on ``eval_images``, or None when none were given.
    """
    loader = TensorLoader(
        images,
        labels,
        batch_size=batch_size,
        shuffle=True,
        mean=mean,
        std=std,
        max_shift=max_shift,
        device=device,
        seed=seed,
    )
    if steps % len(loader):
        raise ValueError(f"steps={steps} is not a multiple of the {len(loader)} batches per pass")
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    fit(
        model,
        loader,
        epochs=steps // len(loader),
        optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(),
        device=device,
        verbose=False,
    )
    if eval_images is None or eval_labels is None:
        return None
    eval_loader = TensorLoader(eval_images, eval_labels, batch_size=1000, mean=mean, std=std, device=device)
    return evaluate(model, eval_loader)["acc"]
