"""Models of the course: SimpleCNN, ImprovedCNN and a ResNet18 transfer helper, plus parameter counting."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights, resnet18
from torchvision.ops.misc import FrozenBatchNorm2d

from ._files import download_file

__all__ = ["SimpleCNN", "ImprovedCNN", "resnet18_transfer", "count_parameters", "trainable_summary"]


def _check_input(model: nn.Module, x: torch.Tensor, channels: int, size: int) -> None:
    """Fail with a clear message before a shape error turns up deep inside a layer."""
    if x.ndim == 4 and x.shape[1] == channels and tuple(x.shape[2:]) == (size, size):
        return
    if x.ndim == 3:
        hint = "For a single image, add a batch dimension with x.unsqueeze(0)."
    elif x.ndim != 4:
        hint = "Pass a batch of images: (batch, channels, height, width)."
    else:
        side = f"{x.shape[2]}" if x.shape[2] == x.shape[3] else "... (square images only)"
        hint = f"If these are your images, create the model with in_channels={x.shape[1]}, image_size={side}."
    raise ValueError(
        f"{type(model).__name__} expects images of shape (batch, {channels}, {size}, {size}), got "
        f"{tuple(x.shape)}. {hint}"
    )


class SimpleCNN(nn.Module):
    """The source's simple CNN: two conv+pool blocks and one fully connected layer (50,186 parameters).

    ``(batch, 1, 28, 28) -> [conv 3x3 -> ReLU -> pool] x 2 (32, 64 channels) -> Linear(7*7*64, num_classes)``.
    Two changes, same numbers: ``torch.flatten(x, 1)``, not the source's ``x.view(-1, 7*7*64)`` (which
    silently folds a wrong shape into the batch), and ReLU after pooling.

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
        # which value is largest, so the two commute. It runs ReLU on 4x fewer values (notebook 05 times it).
        x = F.relu(self.pool(self.conv1(x)))  # (batch, 32, 14, 14)
        x = F.relu(self.pool(self.conv2(x)))  # (batch, 64, 7, 7)
        x = torch.flatten(x, 1)  # (batch, 3136): keeps the batch dimension, whatever the rest is
        return self.fc(x)  # (batch, num_classes)


class ImprovedCNN(nn.Module):
    """The source's improved CNN: SimpleCNN with BatchNorm after each conv and dropout (50,378 parameters).

    ``conv -> BatchNorm -> ReLU -> pool`` twice, then ``flatten -> Dropout -> Linear(7*7*64, num_classes)``.

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
        x = F.relu(self.pool(self.bn1(self.conv1(x))))  # (batch, 32, 14, 14); ReLU after pooling, as above
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
    for name, child in [*model.named_children(), ("total", model)]:
        total, trainable = count_parameters(child), count_parameters(child, trainable_only=True)
        if total or child is model:  # blocks without parameters (ReLU, pooling) are left out
            rows.append((name, f"{total:,}", f"{trainable:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}" for r in rows)


def _freeze_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with each BatchNorm2d in it (itself included) replaced by an equal FrozenBatchNorm2d."""
    # Else a frozen backbone's BatchNorm would still update its running statistics in train mode.
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(frozen, key).copy_(getattr(module, key).detach())
        return frozen
    for name, child in module.named_children():
        setattr(module, name, _freeze_batchnorm(child))
    return module


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be loaded (no network, no cached copy)."""


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

    The backbone is frozen *before* the new head is created, so the head is the one part left trainable
    (freezing after replacing the head freezes it too, and ``backward()`` fails).

    Args:
        num_classes: Classes of the new task.
        weights: ``"DEFAULT"``, a ``ResNet18_Weights`` member, or None for random initialisation (training
            from scratch). Use ``weights.transforms()`` for the matching preprocessing.
        freeze_backbone: Freeze the pretrained layers, their BatchNorm statistics too (``FrozenBatchNorm2d``).
        unfreeze: Blocks to keep trainable despite ``freeze_backbone``, e.g. ``("layer4",)`` to fine-tune it.
        allow_random: Without the weights, go on with random ones (loudly labelled) instead of raising.
        progress: Show the download progress bar.
        verbose: Print what was built and how many parameters are trainable.

    Returns:
        The model; ``model.pretrained`` says whether pretrained weights were loaded.

    Raises:
        WeightsUnavailableError: The weights could not be loaded and ``allow_random`` is False.
    """
    weights_enum, model = ResNet18_Weights.verify(weights), None
    if weights_enum is not None:
        file = Path(torch.hub.get_dir()) / "checkpoints" / weights_enum.url.rsplit("/", 1)[-1]
        try:
            # Our download into the cache torchvision reads has a timeout and changes no process-wide setting
            if not file.is_file():
                prefix = re.search(r"-([a-f0-9]{6,})\.", file.name)  # files are <name>-<sha256 prefix>.pth
                print(f"Downloading {file.name} ({weights_enum.meta['_file_size']} MB) into {file.parent}")
                download_file([weights_enum.url], file, sha256_prefix=prefix.group(1) if prefix else None)
            model = resnet18(weights=weights_enum, progress=progress)
        except (OSError, RuntimeError, EOFError) as exc:  # DownloadError is a RuntimeError; corrupt files too
            message = (
                f"Could not load the pretrained {weights_enum} weights ({type(exc).__name__}: {exc}).\n"
                f"They download from {weights_enum.url} into {file}. Without network access, download that "
                "file elsewhere and copy it to that path (or set TORCH_HOME)."
            )
            if not allow_random:
                raise WeightsUnavailableError(message) from exc
            warnings.warn(f"{message}\nCONTINUING WITH RANDOM WEIGHTS: NOT pretrained.", stacklevel=2)
            print("!!! RANDOM WEIGHTS: no pretrained weights; what follows is not transfer learning !!!")
    model, pretrained = (model, True) if model is not None else (resnet18(weights=None), False)
    names = {name for name, _ in model.named_children()}
    if unknown := set(unfreeze) - names:
        raise ValueError(f"unfreeze names unknown blocks {sorted(unknown)}; ResNet18 has {sorted(names)}")
    for name, child in model.named_children():  # 1. freeze the backbone...
        if freeze_backbone and name not in unfreeze:
            setattr(model, name, _freeze_batchnorm(child.requires_grad_(False)))
    model.fc = nn.Linear(model.fc.in_features, num_classes)  # 2. ...then add the new head (trainable)
    model.pretrained = pretrained
    if verbose:
        origin = f"pretrained {weights_enum}" if pretrained else "random weights (NOT pretrained)"
        counts = f"{count_parameters(model, trainable_only=True):,} of {count_parameters(model):,}"
        print(f"ResNet18 with {origin}, new head for {num_classes} classes: {counts} parameters trainable.")
    return model
