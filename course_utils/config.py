"""The course's configuration, read once from environment variables: where data lives and smoke mode."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["DATA_DIR", "SMOKE", "data_dir", "smoke_mode", "cache_dir"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def _checkout_root() -> Path | None:
    """The repository root when the package is imported from a checkout (editable install), else None."""
    root = _PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        return root
    return None


def _user_data_dir() -> Path:
    """A per-user folder for datasets when the package is installed outside a checkout (e.g. on Colab)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "cnn-course" / "data"


def data_dir() -> Path:
    """Where datasets are found and downloaded.

    Returns:
        ``$COURSE_DATA_DIR`` if set; otherwise the checkout's ``data/`` folder; otherwise a per-user folder.
    """
    env = os.environ.get("COURSE_DATA_DIR", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    root = _checkout_root()
    if root is not None:
        return root / "data"
    return _user_data_dir()


def cache_dir() -> Path:
    """Where the course writes caches and downloads when the data folder is read-only.

    Returns:
        ``$COURSE_CACHE_DIR`` if set, else ``~/.cache/cnn-course``.
    """
    env = os.environ.get("COURSE_CACHE_DIR", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cnn-course"


def smoke_mode() -> bool:
    """True when ``COURSE_SMOKE`` is set to 1/true/yes: small subsets and one short epoch everywhere."""
    return os.environ.get("COURSE_SMOKE", "").strip().lower() in {"1", "true", "yes", "on"}


# Read once at import so a notebook can show them in plain sight: ``EPOCHS = 1 if cu.SMOKE else 3``.
SMOKE: bool = smoke_mode()
DATA_DIR: Path = data_dir()
