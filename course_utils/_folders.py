"""Folders of images: any ImageFolder-layout folder, and the ants/bees set of PyTorch's tutorial (``cu.data``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms

from . import _setup
from ._files import DatasetNotFoundError, DownloadError, download_file, safe_extract_zip
from .data import IMAGENET_MEAN, IMAGENET_STD, DataBundle, _dataloader, _source, _split

__all__ = ["image_folder", "hymenoptera", "default_transforms"]

HYMENOPTERA_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
HYMENOPTERA_MD5 = "5f8c32a6554f6acb4d649776e7735e48"
HYMENOPTERA_DIR = "hymenoptera_data"  # what the zip unpacks to: train/{ants,bees}, val/{ants,bees}
SMOKE_IMAGES = 32  # images per split in smoke mode


def _readable_image(path: str) -> bool:
    """ImageFolder's file filter: a known image extension and a file PIL can read; warn on others."""
    if not path.lower().endswith(datasets.folder.IMG_EXTENSIONS):
        return False
    try:
        with Image.open(path) as img:
            img.verify()
    except (OSError, SyntaxError) as exc:  # PIL's UnidentifiedImageError is an OSError
        warnings.warn(f"skipping unreadable image {path}: {exc}", stacklevel=2)
        return False
    return True


def _check_split(folder: Path, root: Path) -> list[str]:
    """The class folders of one split, sorted as ImageFolder numbers them; clear errors for a wrong layout."""
    layout = f"expected {root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg (one folder per class)"
    if not folder.is_dir():
        raise DatasetNotFoundError(f"image folder {folder} does not exist; {layout}")
    classes = [d for d in folder.iterdir() if d.is_dir()]
    if not classes:
        raise DatasetNotFoundError(f"{folder} has no class folders; {layout}")
    empty = [d.name for d in classes if not any(f.is_file() for f in d.iterdir())]
    if empty:
        raise DatasetNotFoundError(f"class folder(s) {empty} in {folder} hold no files; {layout}")
    return sorted(d.name for d in classes)


def default_transforms(size: int = 224) -> tuple[Any, Any]:
    """ImageNet-style transforms: for training a random resized crop and flip, for evaluation a centre crop.

    Args:
        size: The side of the square images they produce.

    Returns:
        ``(train, eval)`` transforms, both ending in ``ToTensor`` and ImageNet normalisation.
    """
    train = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
    evaluate = [transforms.Resize(int(size * 256 / 224)), transforms.CenterCrop(size)]
    last = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return transforms.Compose(train + last), transforms.Compose(evaluate + last)


def _normalisation(transform: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std a transform normalises with (for un-normalising plots); ImageNet's if it does not say."""
    steps = transform.transforms if isinstance(transform, transforms.Compose) else [transform]
    for step in steps:  # a Normalize, or torchvision's weights.transforms() (ImageClassification)
        if getattr(step, "mean", None) is not None and getattr(step, "std", None) is not None:
            return tuple(step.mean), tuple(step.std)
    return IMAGENET_MEAN, IMAGENET_STD


def image_folder(
    root: str | Path,
    *,
    batch_size: int = 32,
    transform: Any = None,
    train_transform: Any = None,
    val_fraction: float = 0.0,
    subset: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
) -> DataBundle:
    """Any folder in ImageFolder layout: ``root/train/<class>/...`` and ``root/val/<class>/...``.

    Args:
        root: The folder holding ``train/`` and ``val/`` (or ``test/``).
        batch_size: Images per batch.
        transform: Per-image transform for every split, as in :func:`cu.data.mnist` (e.g.
            ``weights.transforms()``); default: resize to 256, centre-crop 224, ImageNet normalisation, with the
            ImageNet-style random crop and flip for training.
        train_transform: A different transform for the training images only (e.g. with augmentation).
        val_fraction: Part of ``train/`` held out as ``.val``; ``root/val`` is the ``.test`` split.
        subset: Use only this many images of each split (handy for quick runs).
        seed: Seed for the split, the subset and shuffling.
        num_workers: DataLoader worker processes; 0 is safe in notebooks on every OS.

    Returns:
        A DataBundle; unreadable image files are skipped with a warning naming each.
    """
    root = Path(root)
    test_dir = root / "val" if (root / "val").is_dir() or not (root / "test").is_dir() else root / "test"
    classes, other = _check_split(root / "train", root), _check_split(test_dir, root)
    if classes != other:
        sides = {"missing there": set(classes) - set(other), "only there": set(other) - set(classes)}
        differ = "; ".join(f"{side}: {sorted(names)}" for side, names in sides.items() if names)
        raise ValueError(
            f"train/ has the classes {classes}, but {test_dir.name}/ has {other} ({differ}). ImageFolder "
            "numbers each folder's classes on its own, so a label would mean different classes in the "
            f"splits. Give {test_dir} the same class folders as train/ (add an image or remove the class)."
        )
    default_train, default_eval = default_transforms()
    eval_tf, train_tf = transform or default_eval, train_transform or transform or default_train
    if _setup.smoke_mode():
        subset = min(subset or SMOKE_IMAGES, SMOKE_IMAGES)
    train_ds = datasets.ImageFolder(root / "train", transform=train_tf, is_valid_file=_readable_image)
    readable = {path for path, _ in train_ds.samples}  # the same files again, not checked again
    train_eval_ds = datasets.ImageFolder(root / "train", eval_tf, is_valid_file=readable.__contains__)
    test_ds = datasets.ImageFolder(test_dir, transform=eval_tf, is_valid_file=_readable_image)
    train_idx, val_idx = _split(len(train_ds), val_fraction, subset, seed)
    test_idx = torch.randperm(len(test_ds), generator=torch.Generator().manual_seed(seed))[:subset]

    def loader(ds: Dataset, idx: torch.Tensor, shuffle: bool) -> DataLoader:
        return _dataloader(ds, sorted(idx.tolist()), batch_size, shuffle, seed, num_workers)

    train, test = loader(train_ds, train_idx, True), loader(test_ds, test_idx, False)
    val = loader(train_eval_ds, val_idx, False) if len(val_idx) else None
    mean, std = _normalisation(eval_tf)
    return DataBundle(train, val, test, list(train_ds.classes), mean, std, _source("an image folder", root))


def hymenoptera(
    *,
    batch_size: int = 32,
    transform: Any = None,
    train_transform: Any = None,
    val_fraction: float = 0.0,
    subset: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
    data_dir: str | Path | None = None,
    download: bool = True,
) -> DataBundle:
    """The ants/bees images of PyTorch's transfer-learning tutorial (244 train, 153 val, 2 classes).

    Looks for ``hymenoptera_data/{train,val}/{ants,bees}`` under the data folder; if absent, downloads the zip
    (checksum-verified) and extracts it safely. Its ``val/`` folder is the ``.test`` split here.

    Args:
        batch_size: Images per batch.
        transform: Evaluation transform, e.g. ``ResNet18_Weights.DEFAULT.transforms()``.
        train_transform: Training transform; see :func:`image_folder`.
        val_fraction: Part of ``train/`` held out as ``.val``.
        subset: Use only this many images of each split.
        seed: Seed for splits and shuffling.
        num_workers: DataLoader worker processes.
        data_dir: Where to look; default ``COURSE_DATA_DIR``.
        download: Download the zip if the folder is missing.

    Returns:
        A DataBundle with classes ``["ants", "bees"]``.
    """
    root = Path(data_dir) if data_dir is not None else _setup.data_dir()
    folder = root / HYMENOPTERA_DIR
    if not (folder / "train").is_dir():
        hint = (
            f"The ants/bees set was not found in {folder}.\nDownload {HYMENOPTERA_URL} and unzip it in "
            f"{root} (it unpacks to hymenoptera_data/train and hymenoptera_data/val), or set COURSE_DATA_DIR."
        )
        try:
            if not download:
                raise DatasetNotFoundError(hint + "\nDownloading is switched off (download=False).")
            archive = download_file([HYMENOPTERA_URL], root / "hymenoptera_data.zip", md5=HYMENOPTERA_MD5)
            safe_extract_zip(archive, root, HYMENOPTERA_DIR)
            archive.unlink()
        except (DownloadError, PermissionError) as exc:
            raise DatasetNotFoundError(f"{hint}\nDownloading failed (no network?):\n{exc}") from exc
    options = dict(batch_size=batch_size, transform=transform, train_transform=train_transform, seed=seed)
    return image_folder(folder, val_fraction=val_fraction, subset=subset, num_workers=num_workers, **options)
