"""Dataset files: downloads that fail fast and leave nothing half-written, and MNIST-style idx files."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision import datasets

__all__ = [
    "DatasetNotFoundError",
    "DownloadError",
    "download_file",
    "file_digest",
    "safe_extract_zip",
    "gunzip",
]

TIMEOUT_S = 10.0  # per connection attempt; torchvision's own urlopen has none and can hang for minutes
_CHUNK = 1 << 20


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not where the course looks, and could not be downloaded."""


class DownloadError(RuntimeError):
    """A download failed: no network, wrong checksum or a truncated file. Nothing was left behind."""


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """The hex digest of a file (MD5 unless another ``hashlib`` algorithm is named), read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def download_file(
    urls: Sequence[str],
    dest: Path,
    *,
    md5: str | None = None,
    sha256_prefix: str | None = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download the first of ``urls`` (mirrors) that answers into ``dest``, atomically and checksum-verified.

    A temporary file is renamed only once complete and verified: a failed download leaves nothing that could
    be mistaken for data. ``sha256_prefix``: the digest's start (torch's weight files carry it in their name).
    """
    dest = Path(dest)
    if dest.is_file() and (md5 is None or file_digest(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with open(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                expected = response.headers.get("Content-Length")
                shutil.copyfileobj(response, out, _CHUNK)
            if expected is not None and (size := tmp.stat().st_size) != int(expected):
                raise DownloadError(f"{url}: truncated download ({size} of {expected} bytes)")
            for algorithm, want in (("md5", md5), ("sha256", sha256_prefix)):
                if want is not None and not (got := file_digest(tmp, algorithm)).startswith(want):
                    raise DownloadError(f"{url}: checksum mismatch ({algorithm} {got}, expected {want})")
            tmp.replace(dest)
            return dest
        except (OSError, urllib.error.URLError, DownloadError) as exc:  # URLError, timeouts, resets
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DownloadError("could not download " + dest.name + ":\n  " + "\n  ".join(errors))


def gunzip(src: Path, dest: Path) -> Path:
    """Decompress ``src`` (.gz) to ``dest`` atomically; a corrupt archive raises DownloadError."""
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
        tmp.replace(dest)
    except (OSError, EOFError) as exc:
        raise DownloadError(f"{src} is not a valid gzip file ({exc}); delete it and try again") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def safe_extract_zip(archive: Path, dest_parent: Path, top: str) -> Path:
    """Extract a zip holding ``top/`` into ``dest_parent/top``; members outside it (zip-slip) are refused.

    It goes to a temporary folder that is moved into place only when complete. Returns ``dest_parent / top``.
    """
    dest_parent = Path(dest_parent)
    with tempfile.TemporaryDirectory(dir=dest_parent, prefix=f".{top}.") as tmp_dir:
        tmp = Path(tmp_dir).resolve()
        try:
            with zipfile.ZipFile(archive) as zf:
                unsafe = [m for m in zf.namelist() if not (tmp / m).resolve().is_relative_to(tmp)]  # zip-slip
                if unsafe:
                    raise DownloadError(f"{archive} holds unsafe paths {unsafe}; refusing to extract it")
                zf.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise DownloadError(f"{archive} is not a valid zip file ({exc}); delete it and retry") from exc
        if not (tmp / top).is_dir():
            raise DownloadError(f"{archive} does not contain the expected folder {top!r}")
        (tmp / top).replace(dest_parent / top)
    return dest_parent / top


# --- MNIST-style idx files in torchvision's layout -------------------------------------------------------
def ensure_idx(cls: type[datasets.MNIST], root: Path, download: bool) -> None:
    """Make sure ``root/<Name>/raw`` holds the four idx files, downloading them if allowed."""
    raw = root / cls.__name__ / "raw"
    missing = [(gz, md5) for gz, md5 in cls.resources if not (raw / gz.removesuffix(".gz")).is_file()]
    files = "\n".join(f"    {gz}" for gz, _ in missing)
    hint = (
        f"{cls.__name__} was not found in {raw}.\n"
        f"Expected these files there (the .gz or the extracted file):\n{files}\n"
        f"from {cls.mirrors[0]}. Put them in that folder, or point COURSE_DATA_DIR at a folder that holds "
        f"{cls.__name__}/raw/ (torchvision's layout)."
    )
    try:
        for gz, md5 in missing:  # cls.resources: (file name.gz, MD5 of the .gz)
            if not (raw / gz).is_file():
                if not download:
                    raise DatasetNotFoundError(hint + "\nDownloading is switched off (download=False).")
                download_file([m + gz for m in cls.mirrors], raw / gz, md5=md5)
            gunzip(raw / gz, raw / gz.removesuffix(".gz"))
    except DownloadError as exc:
        raise DatasetNotFoundError(f"{hint}\nDownloading failed (no network?):\n{exc}") from exc
    except PermissionError as exc:
        raise DatasetNotFoundError(f"{hint}\nThe folder is read-only: {exc}") from exc


def load_idx(cls: type[datasets.MNIST], root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (uint8, (n, 28, 28)) and labels of one split, read with torchvision's own dataset class."""
    try:
        ds = cls(str(root), train=train, download=False)
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise DatasetNotFoundError(
            f"The {cls.__name__} files in {root / cls.__name__ / 'raw'} could not be read ({exc}). "
            "They may be truncated or corrupt: delete them and run again to download fresh copies."
        ) from exc
    return ds.data, ds.targets
