"""MNIST-style idx files: finding them in torchvision's layout, downloading what is missing, reading them."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets

from ._bundle import DatasetNotFoundError
from ._download import DownloadError, download_file, gunzip


def idx_files(cls: type[datasets.MNIST]) -> list[tuple[str, str]]:
    """The idx files of a torchvision MNIST-style dataset: (filename.gz, md5 of the .gz)."""
    return [(name, md5) for name, md5 in cls.resources]  # (filename.gz, md5 of the .gz)


def ensure_idx(cls: type[datasets.MNIST], root: Path, download: bool) -> None:
    """Make sure ``root/<Name>/raw`` holds the four idx files, downloading them if allowed."""
    raw = root / cls.__name__ / "raw"
    missing = [gz for gz, _ in idx_files(cls) if not (raw / gz.removesuffix(".gz")).is_file()]
    if not missing:
        return
    files = "\n".join(f"    {gz}" for gz in missing)
    hint = (
        f"{cls.__name__} was not found in {raw}.\n"
        f"Expected these files there (the .gz or the extracted file):\n{files}\n"
        f"from {cls.mirrors[0]}. Put them in that folder, or point COURSE_DATA_DIR at a folder that holds "
        f"{cls.__name__}/raw/ (torchvision's layout)."
    )
    try:
        for gz, md5 in idx_files(cls):
            target = raw / gz.removesuffix(".gz")
            if target.is_file():
                continue
            if not (raw / gz).is_file():
                if not download:
                    raise DatasetNotFoundError(hint + "\nDownloading is switched off (download=False).")
                download_file([m + gz for m in cls.mirrors], raw / gz, md5=md5)
            gunzip(raw / gz, target)
    except DownloadError as exc:
        raise DatasetNotFoundError(f"{hint}\nDownloading failed (no network?):\n{exc}") from exc
    except PermissionError as exc:
        raise DatasetNotFoundError(f"{hint}\nThe folder is read-only: {exc}") from exc


def load_idx(cls: type[datasets.MNIST], root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        ds = cls(str(root), train=train, download=False)
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise DatasetNotFoundError(
            f"The {cls.__name__} files in {root / cls.__name__ / 'raw'} could not be read ({exc}). "
            "They may be truncated or corrupt: delete them and run again to download fresh copies."
        ) from exc
    return ds.data, ds.targets
