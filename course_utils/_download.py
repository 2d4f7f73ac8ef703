"""Downloads that fail fast and leave nothing half-written: timeouts, checksums, safe zip extraction."""

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

__all__ = ["DownloadError", "download_file", "file_digest", "safe_extract_zip", "gunzip"]

TIMEOUT_S = 10.0  # per connection attempt; torchvision's own urlopen has none and can hang for minutes
_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed: no network, wrong checksum or a truncated file. Nothing was left behind."""


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """The hex digest of a file (MD5 unless another ``hashlib`` algorithm is named), read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    urls: Sequence[str],
    dest: Path,
    *,
    md5: str | None = None,
    sha256_prefix: str | None = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download the first URL that answers into ``dest``, atomically and checksum-verified.

    The file is written to a temporary name beside ``dest`` and renamed only once complete and verified, so an
    interrupted or failed download never leaves a file that could later be mistaken for data.

    Args:
        urls: Mirrors to try in order.
        dest: Final path of the file.
        md5: Expected MD5 digest; a mismatch is an error.
        sha256_prefix: Expected start of the SHA-256 digest (torch's weight files carry one in their name).
        timeout: Seconds to wait for each connection and each read.

    Returns:
        ``dest``.

    Raises:
        DownloadError: No mirror answered in time, or the file was truncated or corrupt.
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
            size = tmp.stat().st_size
            if expected is not None and size != int(expected):
                raise DownloadError(f"{url}: truncated download ({size} of {expected} bytes)")
            if md5 is not None and (got := file_digest(tmp)) != md5:
                raise DownloadError(
                    f"{url}: checksum mismatch (MD5 {got}, expected {md5}); the file is corrupt"
                )
            if sha256_prefix is not None and not (got := file_digest(tmp, "sha256")).startswith(
                sha256_prefix
            ):
                raise DownloadError(
                    f"{url}: checksum mismatch (SHA-256 {got[:12]}..., expected "
                    f"{sha256_prefix}...); the file is corrupt"
                )
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
    """Extract a zip whose content sits under ``top/`` into ``dest_parent/top``, safely and atomically.

    Members with absolute paths or ``..`` are refused (zip-slip). The archive is extracted into a temporary
    folder and moved into place only when complete.

    Args:
        archive: The zip file.
        dest_parent: The folder that will hold ``top``.
        top: The archive's top-level folder name.

    Returns:
        The extracted folder ``dest_parent / top``.
    """
    dest_parent = Path(dest_parent)
    with tempfile.TemporaryDirectory(dir=dest_parent, prefix=f".{top}.") as tmp_dir:
        tmp = Path(tmp_dir).resolve()
        try:
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    target = (tmp / member).resolve()
                    if not target.is_relative_to(tmp):
                        raise DownloadError(
                            f"{archive} holds an unsafe path {member!r}; refusing to extract it"
                        )
                zf.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise DownloadError(
                f"{archive} is not a valid zip file ({exc}); delete it and try again"
            ) from exc
        if not (tmp / top).is_dir():
            raise DownloadError(f"{archive} does not contain the expected folder {top!r}")
        final = dest_parent / top
        (tmp / top).replace(final)
    return final
