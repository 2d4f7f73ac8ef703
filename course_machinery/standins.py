"""Synthetic stand-in datasets, written by the course's test set-up where the real ones are absent.

A fresh machine without the datasets and without network must still run every notebook (in smoke mode). The
test set-up (``conftest.py``) calls :func:`write_standins`: it makes a data folder in which each real dataset
present is linked and each missing one is replaced by a small synthetic stand-in in the same layout, marked by a
``STAND-IN.txt`` file that the course's loaders print loudly. The loaders themselves know nothing of this.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["rendered_digits", "random_images", "write_idx_dataset", "write_standins"]

STAND_IN = "STAND-IN.txt"  # the marker the loaders look for (course_utils/data.py)

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


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with open(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_idx_dataset(raw: Path, n_train: int, n_test: int, *, seed: int = 0) -> Path:
    """Write rendered digits as the four idx files of torchvision's MNIST layout into the folder ``raw``.

    Every code path that reads MNIST files (``torchvision.datasets.MNIST`` included) then works on them, so a
    notebook runs unchanged in smoke mode on a machine without the real data. Files that already exist with
    the requested number of images are kept; each file is written atomically.

    Args:
        raw: The ``<root>/<Name>/raw`` folder to write into (created if missing).
        n_train: Training images.
        n_test: Test images.
        seed: Seed for the rendering (the test images use ``seed + 1``).

    Returns:
        The folder ``raw``.
    """
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, 1)):
        images_file, labels_file = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
        if labels_file.is_file() and labels_file.stat().st_size == 8 + n and images_file.is_file():
            continue
        images, labels = rendered_digits(n, seed=seed + offset)  # (n, 28, 28) uint8, (n,)
        # idx format: a big-endian magic number (0x0803: unsigned bytes, 3 dimensions), the sizes, the bytes.
        _write_atomic(images_file, struct.pack(">IIII", 0x0803, n, 28, 28) + images.numpy().tobytes())
        _write_atomic(labels_file, struct.pack(">II", 0x0801, n) + labels.to(torch.uint8).numpy().tobytes())
    return raw


def _mark(folder: Path, what: str) -> None:
    (folder / STAND_IN).write_text(
        f"SYNTHETIC {what}, written by the course's test set-up because the real dataset is missing here. "
        "Numbers from this run say nothing about the real dataset.\n"
    )


def write_standins(
    real: Path, into: Path, *, n_train: int = 2048, n_test: int = 1024, images: int = 32
) -> list[str]:
    """A data folder for smoke runs: the real datasets found in ``real`` linked, stand-ins for the others.

    Args:
        real: The data folder that may hold the real datasets (torchvision's layout).
        into: The folder to fill (created if missing); point ``COURSE_DATA_DIR`` at it.
        n_train: Training images of each MNIST-like stand-in.
        n_test: Test images of each MNIST-like stand-in.
        images: Images per class and split of the ants/bees stand-in.

    Returns:
        The names of the datasets that are stand-ins in ``into``.
    """
    from PIL import Image

    from course_utils.data import dataset_status

    into.mkdir(parents=True, exist_ok=True)
    present = dataset_status(real) if real.is_dir() else {}
    folders = {"MNIST": "MNIST", "FashionMNIST": "FashionMNIST", "hymenoptera": "hymenoptera_data"}
    made = []
    for name, folder in folders.items():
        target = into / folder
        if target.exists() or target.is_symlink():  # from an earlier run
            made += [name] if (target / STAND_IN).is_file() else []
            continue
        if present.get(name):
            target.symlink_to((real / folder).resolve(), target_is_directory=True)
            continue
        made.append(name)
        if name == "hymenoptera":  # coloured noise whose class sets the brightness, as JPEG files
            for split, seed in (("train", 0), ("val", 1)):
                pictures, labels = random_images(2 * images, size=64, seed=seed)
                for i, (picture, label) in enumerate(zip(pictures, labels, strict=True)):
                    path = target / split / ("ants", "bees")[int(label)] / f"{i:03d}.jpg"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(picture.permute(1, 2, 0).numpy()).save(path)
                for cls in ("ants", "bees"):  # every class needs an image in every split
                    if not (target / split / cls).is_dir():
                        (target / split / cls).mkdir(parents=True)
                        Image.fromarray(pictures[0].permute(1, 2, 0).numpy()).save(
                            target / split / cls / "x.jpg"
                        )
            _mark(target, "coloured noise standing in for the ants/bees images")
        else:
            write_idx_dataset(target / "raw", n_train, n_test, seed=0 if name == "MNIST" else 7)
            _mark(target, f"rendered digits standing in for {name}")
    return made
