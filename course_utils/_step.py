"""One batch through the model: device, memory layout, precision, and the checks on the first batch."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ._diagnose import check_images, check_labels, explain_model_errors
from .speed import bf16_supported


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in {"fp32", "bf16", "auto"}:
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto', got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's convolution weights are in channels-last layout (``model.to(memory_format=...)``)."""
    return any(
        p.ndim == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters()
    )


def forward(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    precision: str,
    channels_last: bool,
    *,
    first: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch to the device and run the model on it; explain a beginner's mistakes in plain words."""
    images = images.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    check_images(images)
    if channels_last:  # the batch follows the model's layout, so the convolutions need no conversion
        images = images.contiguous(memory_format=torch.channels_last)
    with explain_model_errors(model, images), autocast(device, precision):
        outputs = model(images)  # (batch, num_classes)
    if first:  # one check per pass: it reads labels.max(), a host sync
        check_labels(outputs, labels)
    return outputs, labels


def hits(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Correct predictions in a batch; labels are class indices, or class probabilities (batch, classes)."""
    targets = labels.argmax(dim=1) if labels.ndim == 2 else labels
    return (outputs.argmax(dim=1) == targets).sum()


def infer_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
