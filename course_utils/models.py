"""Models of the course: SimpleCNN, ImprovedCNN and a ResNet18 transfer helper, plus parameter counting."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights, resnet18
from torchvision.ops.misc import FrozenBatchNorm2d

from ._download import download_file

__all__ = [
    "SimpleCNN",
    "ImprovedCNN",
    "resnet18_transfer",
    "freeze_batchnorm",
    "count_parameters",
    "trainable_summary",
    "WeightsUnavailableError",
    "conv_output_size",
]


def conv_output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Output length of a convolution along one dimension (the formula in the PyTorch ``Conv2d`` docs).

    Args:
        size: Input height or width.
        kernel_size: Kernel height or width.
        stride: Step between kernel positions.
        padding: Zeros added on each side.
        dilation: Spacing between kernel taps.

    Returns:
        ``floor((size + 2*padding - dilation*(kernel_size-1) - 1) / stride) + 1``.
    """
    return math.floor((size + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1


def _fix_hint(x: torch.Tensor) -> str:
    if x.ndim == 3:
        return "For a single image, add a batch dimension with x.unsqueeze(0)."
    if x.ndim != 4:
        return "Pass a batch of images: (batch, channels, height, width)."
    size = f"{x.shape[2]}" if x.shape[2] == x.shape[3] else "... (square images only)"
    return f"If your images really are like this, create the model with in_channels={x.shape[1]}, image_size={size}."


def _check_input(model: nn.Module, x: torch.Tensor, channels: int, size: int) -> None:
    """Fail with a clear message before a shape error turns up deep inside a layer."""
    if x.ndim != 4 or x.shape[1] != channels or tuple(x.shape[2:]) != (size, size):
        raise ValueError(
            f"{type(model).__name__} expects images of shape (batch, {channels}, {size}, {size}), got "
            f"{tuple(x.shape)}. " + _fix_hint(x)
        )


class SimpleCNN(nn.Module):
    """The source's simple CNN: two conv+pool blocks and one fully connected layer (50,186 parameters).

    ``(batch, 1, 28, 28) -> conv 3x3 (32) -> ReLU -> pool -> conv 3x3 (64) -> ReLU -> pool -> flatten
    -> Linear(7*7*64, num_classes)``.
    Two changes from the source, neither of which changes what it computes: the flatten is
    ``torch.flatten(x, 1)`` with the linear layer's size computed from ``image_size``, instead of the source's
    ``x.view(-1, 7*7*64)``, which silently folds a wrong shape into the batch; and ReLU runs after pooling
    (the same numbers, see :meth:`forward`).

    Args:
        num_classes: Number of output scores.
        in_channels: Channels of the input images (1 for MNIST).
        image_size: Side of the square input images (must be divisible by 4).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two 2x2 poolings), got {image_size}")
        self.in_channels, self.image_size = in_channels, image_size
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(64 * (image_size // 4) ** 2, num_classes)  # Linear(7*7*64, 10) for MNIST

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x, self.in_channels, self.image_size)
        # ReLU after pooling gives exactly the numbers of the source's pool(relu(conv(x))): ReLU never changes
        # which value is largest, so the two commute. It runs ReLU on 4x fewer values (notebook 05 measures it).
        x = F.relu(self.pool(self.conv1(x)))  # (batch, 32, 14, 14)
        x = F.relu(self.pool(self.conv2(x)))  # (batch, 64, 7, 7)
        x = torch.flatten(x, 1)  # (batch, 3136): keeps the batch dimension, whatever the rest is
        return self.fc(x)  # (batch, num_classes)


class ImprovedCNN(nn.Module):
    """The source's improved CNN: SimpleCNN with BatchNorm after each convolution and dropout on the
    flattened features before the same single linear layer (50,378 parameters).

    ``conv -> BatchNorm -> ReLU -> pool`` twice, then ``flatten -> Dropout(0.5) -> Linear(7*7*64, num_classes)``.

    Args:
        num_classes: Number of output scores.
        in_channels: Channels of the input images.
        image_size: Side of the square input images (must be divisible by 4).
        dropout: Probability of zeroing each of the flattened features during training (0 disables dropout).
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, dropout: float = 0.5
    ) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two 2x2 poolings), got {image_size}")
        self.in_channels, self.image_size = in_channels, image_size
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(64 * (image_size // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x, self.in_channels, self.image_size)
        x = F.relu(
            self.pool(self.bn1(self.conv1(x)))
        )  # (batch, 32, 14, 14); ReLU after pooling, as in SimpleCNN
        x = F.relu(self.pool(self.bn2(self.conv2(x))))  # (batch, 64, 7, 7)
        x = self.dropout(torch.flatten(x, 1))  # (batch, 3136); dropout acts only in train mode
        return self.fc(x)  # (batch, num_classes)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (scalars) in ``model``.

    Args:
        model: Any module.
        trainable_only: Count only parameters with ``requires_grad=True``.

    Returns:
        The count.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def trainable_summary(model: nn.Module) -> str:
    """A table of the model's top-level blocks: parameters, and how many of them are trainable.

    Args:
        model: Any module.

    Returns:
        The table as text (print it).
    """
    rows = [("block", "parameters", "trainable")]
    for name, child in model.named_children():
        total = count_parameters(child)
        if total:
            rows.append((name, f"{total:,}", f"{count_parameters(child, trainable_only=True):,}"))
    rows.append(
        ("total", f"{count_parameters(model):,}", f"{count_parameters(model, trainable_only=True):,}")
    )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}" for r in rows)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by a ``FrozenBatchNorm2d`` with the same statistics.

    A frozen backbone's BatchNorm layers would still update their running mean and variance in train mode;
    frozen, they behave the same in ``train()`` and ``eval()``, so the backbone is a fixed function.

    Args:
        module: Modified in place.

    Returns:
        The same module.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be loaded (no network, no cached copy)."""


def _fetch_weights(weights: ResNet18_Weights) -> Path:
    """Download the weights file into torch's cache, where torchvision looks first; nothing if already there.

    Our own download has a timeout and writes atomically, so a missing network fails within seconds and no
    process-wide setting (such as the default socket timeout) is changed.
    """
    file = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    if not file.is_file():
        prefix = re.search(
            r"-([a-f0-9]{6,})\.", file.name
        )  # torchvision names files <name>-<sha256 prefix>.pth
        print(f"Downloading {file.name} ({weights.meta.get('_file_size', '?')} MB) into {file.parent} ...")
        download_file([weights.url], file, sha256_prefix=prefix.group(1) if prefix else None)
    return file


def _load_resnet18(
    weights: ResNet18_Weights | None, allow_random: bool, progress: bool
) -> tuple[ResNet, bool]:
    if weights is None:
        return resnet18(weights=None), False
    file = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    try:
        _fetch_weights(weights)
        return resnet18(weights=weights, progress=progress), True
    except (OSError, RuntimeError, EOFError) as exc:  # DownloadError is a RuntimeError; corrupt files too
        message = (
            f"Could not load the pretrained {weights} weights ({type(exc).__name__}: {exc}).\n"
            f"They download from {weights.url} into {file}. Without network access, download that file "
            "elsewhere and copy it to that path (or set TORCH_HOME)."
        )
        if not allow_random:
            raise WeightsUnavailableError(message) from exc
        warnings.warn(
            message + "\nCONTINUING WITH RANDOM WEIGHTS: this model is NOT pretrained.", stacklevel=3
        )
        print(
            "!!! RANDOM WEIGHTS: the pretrained weights are unavailable; results below are not transfer learning !!!"
        )
        return resnet18(weights=None), False


def resnet18_transfer(
    num_classes: int,
    *,
    weights: ResNet18_Weights | str | None = "DEFAULT",
    freeze_backbone: bool = True,
    unfreeze: Sequence[str] = (),
    allow_random: bool = False,
    progress: bool = True,
    verbose: bool = True,
) -> ResNet:
    """A ResNet18 ready for transfer learning: pretrained backbone, new head for ``num_classes``.

    The order matters: the backbone is frozen *first*, then the new head is created, so the head is the
    one part left trainable (freezing after replacing the head freezes it too and ``backward()`` fails).

    Args:
        num_classes: Classes of the new task.
        weights: ``"DEFAULT"``, a ``ResNet18_Weights`` member, or None for random initialisation (training
            from scratch). Use ``weights.transforms()`` for the matching preprocessing.
        freeze_backbone: Make the pretrained layers non-trainable (feature extraction); their BatchNorm
            layers are frozen too (see :func:`freeze_batchnorm`).
        unfreeze: Names of blocks to keep trainable despite ``freeze_backbone``, e.g. ``("layer4",)`` for
            fine-tuning the last block.
        allow_random: If the weights cannot be downloaded, continue with random weights (loudly labelled)
            instead of raising. Meant for smoke tests without network.
        progress: Show the download progress bar.
        verbose: Print what was built and how many parameters are trainable.

    Returns:
        The model; ``model.pretrained`` says whether pretrained weights were loaded.

    Raises:
        WeightsUnavailableError: The weights could not be loaded and ``allow_random`` is False.
    """
    weights_enum = ResNet18_Weights.verify(weights)
    model, pretrained = _load_resnet18(weights_enum, allow_random, progress)
    names = {name for name, _ in model.named_children()}
    unknown = set(unfreeze) - names
    if unknown:
        raise ValueError(f"unfreeze names unknown blocks {sorted(unknown)}; ResNet18 has {sorted(names)}")
    if freeze_backbone:
        for name, child in model.named_children():  # 1. freeze the backbone...
            if name not in unfreeze:
                child.requires_grad_(False)
                freeze_batchnorm(child)
                if isinstance(child, nn.BatchNorm2d):  # the stem's bn1 is a direct child
                    setattr(model, name, freeze_batchnorm(nn.Sequential(child))[0])
    model.fc = nn.Linear(model.fc.in_features, num_classes)  # 2. ...then add the new head (trainable)
    model.pretrained = pretrained
    if verbose:
        origin = f"pretrained {weights_enum}" if pretrained else "random weights (NOT pretrained)"
        print(
            f"ResNet18 with {origin}, new head for {num_classes} classes: "
            f"{count_parameters(model, trainable_only=True):,} of {count_parameters(model):,} parameters trainable."
        )
    return model
