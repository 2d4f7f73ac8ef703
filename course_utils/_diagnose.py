"""Checks that turn deep PyTorch errors and silent training failures into messages a beginner can act on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["NonFiniteLossError", "raise_if_bad", "explain_shape_errors", "check_classes", "check_optimizer"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: training stopped rather than continuing on garbage."""


def raise_if_bad(first_bad: torch.Tensor, epoch: int) -> None:
    """Raise NonFiniteLossError if ``first_bad`` (the first step with a NaN/inf loss, or -1) is set."""
    step = int(first_bad)
    if step >= 0:
        raise NonFiniteLossError(
            f"the loss became NaN or infinite at epoch {epoch}, step {step + 1}. Training stopped. Usual causes: "
            "a learning rate that is too high, unnormalised inputs, or a log of zero in a custom loss. Try a "
            "10x smaller lr."
        )


def first_conv_or_linear(model: nn.Module) -> nn.Module | None:
    """The model's first Conv2d or Linear layer: the one whose input shape an error message can name."""
    return next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)


@contextlib.contextmanager
def explain_shape_errors(model: nn.Module, images: torch.Tensor) -> Iterator[None]:
    """Turn a shape error raised inside the ``with`` block into a ValueError that names the batch and the model."""
    try:
        yield
    except RuntimeError as exc:
        text = str(exc)
        if not any(s in text for s in ("channels", "shapes cannot be multiplied", "size mismatch", "Expected")):
            raise
        first = first_conv_or_linear(model)
        expects = ""
        if isinstance(first, nn.Conv2d):
            expects = f" Its first layer, {first}, expects {first.in_channels} input channel(s)."
        raise ValueError(
            f"{type(model).__name__} could not process a batch of images of shape {tuple(images.shape)} "
            f"(batch, channels, height, width).{expects} Check that the images have the number of channels and "
            f"the size the model was built for (e.g. 1x28x28 for MNIST, 3x224x224 for ResNet).\n"
            f"PyTorch said: {text}"
        ) from exc


def check_classes(outputs: torch.Tensor, labels: torch.Tensor) -> None:
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


def check_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Fail clearly when the optimizer has nothing to train or belongs to another model; return the count."""
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
