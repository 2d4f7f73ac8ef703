"""Synthetic rendered digits: a stand-in for MNIST in smoke mode when the real files are absent."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["rendered_digits", "random_images"]

# A 5x7 bitmap font for the digits 0-9 ("#" = ink).
_GLYPHS = [
    [" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "],
    ["  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
    [" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"],
    ["#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "],
    ["   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "],
    ["#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "],
    ["  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "],
    ["#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "],
    [" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "],
    [" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "],
]


def _glyph_tensor() -> torch.Tensor:
    rows = [[[1.0 if ch == "#" else 0.0 for ch in line] for line in glyph] for glyph in _GLYPHS]
    return torch.tensor(rows)  # (10, 7, 5)


def rendered_digits(n: int, *, size: int = 28, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``n`` digit images with random scale, position, slant and noise, like tiny MNIST digits.

    Args:
        n: Number of images.
        size: Side of the square images in pixels.
        seed: Seed for the generator, so the same call gives the same images.

    Returns:
        ``(images, labels)``: uint8 images of shape ``(n, size, size)`` and int64 labels in 0-9.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=gen)
    glyphs = _glyph_tensor()[labels].unsqueeze(1)  # (n, 1, 7, 5)
    glyphs = F.pad(glyphs, (1, 1, 1, 1))  # (n, 1, 9, 7): room for the sampler to blur edges
    # A random affine map per image: scale, slant and shift, applied with grid_sample.
    scale = 0.55 + 0.2 * torch.rand(n, generator=gen)
    shear = 0.3 * (torch.rand(n, generator=gen) - 0.5)
    shift = 0.25 * (torch.rand(n, 2, generator=gen) - 0.5)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = 1 / scale * 7 / 9
    theta[:, 0, 1] = shear
    theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    images = F.grid_sample(glyphs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    images = images + 0.08 * torch.rand(images.shape, generator=gen)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return images.squeeze(1), labels


def random_images(n: int, *, channels: int = 3, size: int = 64, num_classes: int = 2, seed: int = 0):
    """Random coloured images whose class sets the mean colour: a stand-in for a photo folder in tests.

    Args:
        n: Number of images.
        channels: Colour channels.
        size: Side of the square images.
        num_classes: Number of classes.
        seed: Seed for the generator.

    Returns:
        ``(images, labels)``: uint8 images ``(n, channels, size, size)`` and int64 labels.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    base = (labels.float() + 0.5) / num_classes  # class-dependent brightness
    noise = torch.rand(n, channels, size, size, generator=gen)
    images = 0.6 * base.view(n, 1, 1, 1) + 0.4 * noise
    return (images * 255).round().to(torch.uint8), labels
