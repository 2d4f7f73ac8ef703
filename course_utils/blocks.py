"""Building blocks of modern CNNs (notebook 06): an MLP baseline, the residual block, plain and residual
networks of a given depth, a small ResNet with a global-average-pooling head, and image shifts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MLP", "ResidualBlock", "SmallResNet", "make_net", "shift_images"]


class MLP(nn.Module):
    """A dense baseline: flatten the image, then fully connected layers with ReLU between them.

    ``(batch, C, H, W) -> flatten -> Linear -> ReLU -> ... -> Linear(num_classes)``. Every input pixel has its
    own weight to every hidden unit: nothing is shared between positions, nothing assumes that neighbouring
    pixels belong together.

    Args:
        hidden: Widths of the hidden layers, e.g. ``(256, 128)``; empty for a linear classifier.
        num_classes: Number of output scores.
        in_channels: Channels of the input images.
        image_size: Side of the square input images (the first layer's size depends on it).
    """

    def __init__(
        self,
        hidden: Sequence[int] = (256, 128),
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        self.in_shape = (in_channels, image_size, image_size)
        sizes = [in_channels * image_size * image_size, *hidden]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"MLP expects images of shape (batch, {', '.join(map(str, self.in_shape))}), got "
                f"{tuple(x.shape)}. A dense network has one weight per input pixel, so it only takes the image "
                "size it was built for: create it with the right in_channels and image_size."
            )
        return self.layers(torch.flatten(x, 1))  # (batch, C*H*W) -> (batch, num_classes)


class ResidualBlock(nn.Module):
    """ResNet's basic block (He et al., 2016; torchvision's ``BasicBlock``): ``relu(F(x) + shortcut(x))``.

    ``F`` is ``conv 3x3 (stride) -> BN -> ReLU -> conv 3x3 -> BN``. The shortcut is the identity when the
    shapes agree, and a *projection* (1x1 convolution with the same stride, then BN) only when the block
    changes the number of channels or the resolution, so that the two branches can be added.

    Args:
        in_channels: Channels of the input.
        out_channels: Channels of the output.
        stride: 2 halves the height and width (in the first convolution and in the projection).
        residual: False drops the shortcut: the "plain" block that He et al. compare with.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, *, residual: bool = True
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        # No conv biases: the BatchNorm right after each convolution has its own shift (beta).
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.residual = residual
        self.shortcut: nn.Module | None = None
        if residual and (stride != 1 or in_channels != out_channels):
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        elif residual:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (batch, out_channels, H/stride, W/stride)
        out = self.bn2(self.conv2(out))  # same shape
        if self.shortcut is not None:
            out = out + self.shortcut(x)  # the gradient reaches x through this sum unchanged
        return F.relu(out)


class SmallResNet(nn.Module):
    """A small ResNet for 28x28 grey images: stem, three stages of residual blocks, global average pooling.

    ``stem (conv 3x3 -> BN -> ReLU -> max pool 2x2) -> stage 1 -> stage 2 (stride 2) -> stage 3 (stride 2)
    -> global average pooling -> Linear``: torchvision's ResNet18 layout (stem, ``layer1``..``layer4``,
    ``avgpool``, ``fc``) with three stages and a small stem. The head averages each channel over all
    positions, so the same network accepts any image size (28x28, 56x56, ...): the linear layer sees
    ``widths[-1]`` numbers whatever the input size. It has ``1 + 6 * blocks_per_stage`` convolutions
    (not counting the 1x1 projections) and one linear layer.

    Args:
        widths: Channels of the three stages.
        blocks_per_stage: Residual blocks in each stage.
        num_classes: Number of output scores.
        in_channels: Channels of the input images.
        residual: False builds the same network without shortcuts (a "plain" network).
        stem_pool: End the stem with a 2x2 max pooling, so the stages work at 14x14, 7x7 and 4x4 for a
            28x28 input: about 4x less computation than at full resolution.
    """

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128),
        blocks_per_stage: int = 1,
        num_classes: int = 10,
        in_channels: int = 1,
        *,
        residual: bool = True,
        stem_pool: bool = True,
    ) -> None:
        super().__init__()
        if len(widths) != 3 or blocks_per_stage < 1:
            raise ValueError(
                f"expected three stage widths and blocks_per_stage >= 1, got {widths} and {blocks_per_stage}"
            )
        self.in_channels = in_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
            *([nn.MaxPool2d(2)] if stem_pool else []),
        )
        stages, channels = [], widths[0]
        for i, width in enumerate(widths):
            blocks = []
            for j in range(blocks_per_stage):
                stride = 2 if i > 0 and j == 0 else 1  # each later stage starts by halving the resolution
                blocks.append(ResidualBlock(channels, width, stride, residual=residual))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)  # global average pooling: (batch, C, H, W) -> (batch, C, 1, 1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SmallResNet expects images of shape (batch, {self.in_channels}, height, width), got "
                f"{tuple(x.shape)}. For a single image add a batch dimension with x.unsqueeze(0)."
            )
        x = self.stem(x)  # (batch, 32, 14, 14) for a 28x28 input and the default widths
        x = self.stage3(self.stage2(self.stage1(x)))  # (batch, 128, 4, 4)
        return self.fc(torch.flatten(self.pool(x), 1))  # (batch, 128) -> (batch, num_classes)


def make_net(
    depth: int, *, residual: bool, widths: Sequence[int] = (16, 32, 64), num_classes: int = 10
) -> SmallResNet:
    """A network with ``depth`` weighted layers, with or without shortcuts, as in He et al.'s comparison.

    ``depth = 6n + 2``: the stem convolution, ``n`` blocks of two convolutions in each of three stages, and
    the final linear layer (20 gives ResNet-20's layout). The plain and residual networks of one depth have
    the same layers; the residual one adds the shortcuts (and a 1x1 projection where a stage begins).

    Args:
        depth: Weighted layers: 8, 14, 20, 26, 32, ...
        residual: With shortcuts (a ResNet) or without (a plain network).
        widths: Channels of the three stages.
        num_classes: Number of output scores.

    Returns:
        A :class:`SmallResNet`.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 26, ...), got {depth}")
    return SmallResNet(widths, (depth - 2) // 6, num_classes, residual=residual)


def shift_images(images: torch.Tensor, dx: int, dy: int, fill: float = 0.0) -> torch.Tensor:
    """Shift a batch of images by whole pixels, filling the uncovered border with ``fill``.

    Args:
        images: A batch ``(batch, C, H, W)``.
        dx: Pixels to the right (negative: to the left).
        dy: Pixels down (negative: up).
        fill: Value of the uncovered pixels. For normalised images use the normalised value of a black
            pixel, ``(0 - mean) / std``, so the border looks like the background.

    Returns:
        The shifted batch, same shape and dtype as ``images``.
    """
    if images.ndim != 4:
        raise ValueError(f"expected a batch (batch, C, H, W), got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if abs(dx) >= w or abs(dy) >= h:
        raise ValueError(f"a shift of ({dx}, {dy}) pixels moves a {h}x{w} image out of the frame")
    out = torch.full_like(images, fill)
    # Source and target windows: the part of the image that stays inside the frame.
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out
