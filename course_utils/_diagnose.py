"""Checks that turn deep PyTorch errors and silent training failures into messages a beginner can act on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = [
    "NonFiniteLossError",
    "non_finite_loss",
    "check_images",
    "explain_model_errors",
    "check_labels",
    "check_optimizer",
]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: training stopped rather than continuing on garbage."""


def non_finite_loss(epoch: int, step: int) -> NonFiniteLossError:
    """The error for a NaN/inf loss at ``step`` (1-based) of ``epoch``, raised before that step's update."""
    return NonFiniteLossError(
        f"the loss became NaN or infinite at epoch {epoch}, step {step}. Training stopped before that step "
        "changed the weights. Usual causes: a learning rate that is too high, unnormalised inputs, or a log of "
        "zero in a custom loss. Try a 10x smaller lr."
    )


def check_images(images: torch.Tensor) -> None:
    """Fail clearly on images that were never converted to floats (raw ``uint8`` pixels, say)."""
    if not images.is_floating_point():
        hint = " (raw pixel values 0-255?)" if images.dtype == torch.uint8 else ""
        raise ValueError(
            f"the images are a {images.dtype} tensor{hint}, but the model computes with floats. Convert them "
            "first: transforms.ToTensor() turns a PIL image into floats in [0, 1], or images.float() / 255 for "
            "a tensor; then normalise (transforms.Normalize(mean, std))."
        )


def first_conv_or_linear(model: nn.Module) -> nn.Module | None:
    """The model's first Conv2d or Linear layer: the one whose input shape an error message can name."""
    return next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)


_SHAPE_ERRORS = ("channels", "shapes cannot be multiplied", "size mismatch", "Expected", "expected input")


@contextlib.contextmanager
def explain_model_errors(model: nn.Module, images: torch.Tensor) -> Iterator[None]:
    """Turn an error raised inside the ``with`` block into a ValueError that says what to do.

    The diagnosis comes from facts, not from PyTorch's wording: images on another device than the weights,
    images of another float type than the weights, or (by the message) a shape that does not fit. Any other
    error passes through unchanged.
    """
    try:
        yield
    except RuntimeError as exc:
        text, name = str(exc), type(model).__name__
        weights = list(model.parameters())
        devices = sorted({str(p.device) for p in weights})
        dtypes = sorted({str(p.dtype) for p in weights})
        if weights and (len(devices) > 1 or str(images.device) != devices[0]):
            raise ValueError(
                f"the images are on {images.device}, but {name}'s weights are on {', '.join(devices)}: a model "
                f"computes only on data on its own device. Move both to one device: model.to(device) and "
                f"images.to(device).\nPyTorch said: {text}"
            ) from exc
        if weights and str(images.dtype) not in dtypes and not torch.is_autocast_enabled(images.device.type):
            raise ValueError(
                f"the images are {images.dtype}, but {name}'s weights are {', '.join(dtypes)}: both must have "
                f"the same floating-point type. Use images.to({dtypes[0]}) (and autocast for lower precision)."
                f"\nPyTorch said: {text}"
            ) from exc
        if not any(s in text for s in _SHAPE_ERRORS):
            raise
        first = first_conv_or_linear(model)
        expects = ""
        if isinstance(first, nn.Conv2d):
            expects = f" Its first layer, {first}, expects {first.in_channels} input channel(s)."
        raise ValueError(
            f"{name} could not process a batch of images of shape {tuple(images.shape)} "
            f"(batch, channels, height, width).{expects} Check that the images have the number of channels and "
            f"the size the model was built for (e.g. 1x28x28 for MNIST, 3x224x224 for ResNet).\n"
            f"PyTorch said: {text}"
        ) from exc


def check_labels(outputs: torch.Tensor, labels: torch.Tensor) -> None:
    """Fail clearly when the labels do not fit a classifier's outputs (checked on the first batch).

    Class indices must be a 1-D integer tensor with one entry per image, each below the number of outputs;
    class probabilities (float, the same shape as the outputs) are accepted too.
    """
    if outputs.ndim != 2:
        raise ValueError(
            f"the model should output (batch, num_classes) scores, got shape {tuple(outputs.shape)}"
        )
    batch, classes = outputs.shape
    if labels.is_floating_point():
        if labels.shape == outputs.shape:
            return  # class probabilities, e.g. for mixup or label smoothing by hand
        raise ValueError(
            f"the labels are {labels.dtype} of shape {tuple(labels.shape)}, but class labels are integers: one "
            f"class index per image, shape ({batch},), dtype torch.long. Convert them with labels.long()."
        )
    if labels.ndim == 2 and labels.shape[1] == 1:
        raise ValueError(
            f"the labels have shape {tuple(labels.shape)}, but the loss needs one class index per image in a 1-D "
            f"tensor of shape ({batch},). Use labels.squeeze(1)."
        )
    if labels.ndim != 1 or labels.shape[0] != batch:
        raise ValueError(
            f"the labels have shape {tuple(labels.shape)}, but the model gave scores for {batch} images: one "
            f"class index per image is a tensor of shape ({batch},). Check that images and labels come from "
            f"the same batch (and that no view(-1, ...) changed the batch size)."
        )
    if labels.dtype != torch.long:
        raise ValueError(
            f"the labels are {labels.dtype}, but the loss needs torch.long class indices: use labels.long()."
        )
    low, top = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"the labels include {low}, but class indices start at 0.")
    if top >= classes:
        raise ValueError(
            f"the model outputs {classes} class scores, but the labels go up to {top}, so it needs at "
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
        raise ValueError(
            "the optimizer's parameters do not belong to this model; build the optimizer from "
            "model.parameters() after creating the model you pass to fit"
        )
    return trainable
