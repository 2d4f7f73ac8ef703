"""Checks that turn deep PyTorch errors and silent training failures into messages a beginner can act on."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch
from torch import nn

from ._setup import eval_mode


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: training stopped rather than continuing on garbage."""


def non_finite_loss(epoch: int, steps: tuple[int, int]) -> NonFiniteLossError:
    """The error for a NaN/inf loss seen in steps ``steps[0] + 1`` to ``steps[1]`` (1-based) of ``epoch``."""
    first, last = steps[0] + 1, steps[1]
    where = f"step {last}" if first == last else f"steps {first}-{last}"
    return NonFiniteLossError(
        f"the loss became NaN or infinite in epoch {epoch}, {where}. Usual causes: a learning rate that is too "
        "high, unnormalised inputs, or a log of zero in a custom loss. Try a 10x smaller lr."
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


# What PyTorch's messages say about an input of the wrong shape (the last: a view or reshape).
_SHAPE_ERRORS = re.compile(
    "channels|shapes cannot be multiplied|size mismatch|Expected|expected input|is invalid for input of size"
)


@contextlib.contextmanager
def explain_model_errors(model: nn.Module, images: torch.Tensor) -> Iterator[None]:
    """Turn an error in the block into a ValueError that says what to do: by facts (images on another device
    or float type than the weights), else by the message (a shape); other errors pass through unchanged."""
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
                f"the images are {images.dtype}, but {name}'s weights are {', '.join(dtypes)}: use one "
                f"float type, images.to({dtypes[0]}) (autocast for lower precision).\nPyTorch said: {text}"
            ) from exc
        if not _SHAPE_ERRORS.search(text):
            raise
        layer = _failing_layer(model, images)
        if layer is not None:
            raise ValueError(f"{layer}\nPyTorch said: {text}") from exc
        first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
        conv = isinstance(first, nn.Conv2d)  # (a first Linear layer says nothing about channels)
        expects = f" Its first layer, {first}, expects {first.in_channels} input channel(s)." if conv else ""
        raise ValueError(
            f"{name} could not process a batch of images of shape {tuple(images.shape)} (batch, channels, "
            f"height, width).{expects} Check that the images have the channels and size the model was built "
            f"for (e.g. 1x28x28 for MNIST, 3x224x224 for ResNet).\nPyTorch said: {text}"
        ) from exc


def _failing_layer(model: nn.Module, images: torch.Tensor) -> str | None:
    """Where a shape error arose, past the first layer: the layer, the shape it expects and what it got. Runs
    the batch again with hooks that follow the running layers; only after an error, so free otherwise."""
    names = {module: name for name, module in model.named_modules()}
    running: list[tuple[str, nn.Module, tuple[int, ...]]] = []  # (name, module, input shape) of open calls
    done: list[tuple[str, tuple[int, ...]]] = []  # (name, output shape) of finished leaf layers

    def enter(module: nn.Module, args: tuple) -> None:
        shape = tuple(args[0].shape) if args and isinstance(args[0], torch.Tensor) else ()
        running.append((names.get(module, "?"), module, shape))

    def leave(module: nn.Module, args: tuple, output: object) -> None:
        name, _, _ = running.pop()
        if isinstance(output, torch.Tensor) and not list(module.children()):
            done.append((name, tuple(output.shape)))

    hooks = [m.register_forward_pre_hook(enter) for m in model.modules()]
    hooks += [m.register_forward_hook(leave) for m in model.modules()]
    try:  # eval mode and no gradients, so that no statistic changes
        with torch.no_grad(), eval_mode(model), contextlib.suppress(RuntimeError):
            model(images)
            return None  # it ran this time: no layer to blame
    finally:
        for hook in hooks:
            hook.remove()
    if not done:  # the first layer failed: a problem with the images, said by the caller
        return None
    name, module, shape = running[-1]
    if module is model:  # the model's own forward code (a view, say) failed after its last finished layer
        last, out = done[-1]
        return (
            f"{type(model).__name__}'s forward failed after layer {last!r}, whose output has shape {out}: "
            "the code that follows it (a view, reshape or flatten, say) expects another shape."
        )
    expected = "another input shape"
    if isinstance(module, nn.Linear):
        expected = f"inputs whose last dimension is in_features={module.in_features}"
    elif isinstance(module, nn.Conv2d):
        expected = f"inputs (batch, {module.in_channels}, height, width): in_channels={module.in_channels}"
    return (
        f"layer {name!r} of {type(model).__name__}, {module}, expects {expected}, but the layers before it "
        f"gave shape {shape}. Either the images, of shape {tuple(images.shape)}, are not the size the model "
        "was built for, or this layer does not fit the layers before it: make it fit their output."
    )


def check_labels(outputs: torch.Tensor, labels: torch.Tensor) -> None:
    """Fail clearly unless the labels are class indices (1-D, long, below the outputs) or probabilities."""
    if outputs.ndim != 2:
        raise ValueError(f"the model should output (batch, num_classes) scores, got {tuple(outputs.shape)}")
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
            f"the labels have shape {tuple(labels.shape)}, but the model gave scores for {batch} images (one "
            f"class index each: shape ({batch},)). Check that images and labels come from the same batch and "
            "that no view(-1, ...) changed the batch size."
        )
    if labels.dtype != torch.long:
        raise ValueError(f"the labels are {labels.dtype}, but the loss needs torch.long: use labels.long().")
    low, top = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"the labels include {low}, but class indices start at 0.")
    if top >= classes:
        raise ValueError(
            f"the model outputs {classes} class scores, but the labels go up to {top}, so it needs at least "
            f"{top + 1}. Make its last layer's out_features the number of classes: nn.Linear(..., {top + 1})."
        )


def check_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Fail clearly when the optimizer has nothing to train or belongs to another model; return the count."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    trainable = sum(p.numel() for p in params if p.requires_grad)
    if trainable == 0:
        raise ValueError(
            "the optimizer has no trainable parameter: all it was given have requires_grad=False. A common "
            "cause: replacing the head (model.fc = ...) and *then* freezing every parameter, which freezes the "
            "new head too. Freeze the backbone first, then add the head (new layers are trainable), and build "
            "the optimizer from [p for p in model.parameters() if p.requires_grad]."
        )
    if not {id(p) for p in model.parameters()} & {id(p) for p in params}:
        raise ValueError(
            "the optimizer's parameters do not belong to this model; build the optimizer from "
            "model.parameters() after creating the model you pass to fit"
        )
    return trainable
