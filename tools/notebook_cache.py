"""Executed notebooks kept in a jupyter-cache, one cache per mode and environment: run a notebook once, reuse it.

jupyter-cache (the cache MyST-NB uses) matches a notebook by its code cells alone: markdown cells do not count,
so the student edition (the same code cells, no solution cells) finds the run of the full notebook and vice
versa. What the code cells compute also depends on what is around them: smoke or full mode, the installed
packages, ``course_utils`` and ``course_machinery`` themselves, which datasets are present and whether the pretrained ResNet18 weights are.
All of that goes into the cache's folder name (:func:`fingerprint`), so a change there means a new cache and a
fresh run, never a page that shows numbers from another setup.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import time
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CACHE_ROOT = ROOT / "build" / "cache"
MODES = ("smoke", "full")
CELL_TIMEOUT = 1800  # seconds per cell; full-mode training cells take minutes on a 2-core CPU


def notebooks() -> list[Path]:
    """Every lesson, ``notebooks/NN_*.ipynb``, in course order (nothing hard-coded: new lessons join by name)."""
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _data_dir() -> Path:
    value = os.environ.get("COURSE_DATA_DIR", "").strip()
    return Path(value).expanduser().resolve() if value else ROOT / "data"


def _weights_files() -> list[str]:
    """The pretrained ResNet18 files in torch's cache (notebook 04 uses them when present)."""
    home = os.environ.get("TORCH_HOME") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    )
    folder = Path(home) / "hub" / "checkpoints"
    return sorted(p.name for p in folder.glob("resnet18-*.pth")) if folder.is_dir() else []


def fingerprint(mode: str) -> str:
    """A short hash of everything besides the code cells that decides what the notebooks print.

    Args:
        mode: ``"smoke"`` or ``"full"``.

    Returns:
        12 hex digits.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    parts = [mode, platform.python_version(), platform.machine()]
    if os.environ.get("COURSE_DEVICE_AUDIT") == "1":  # the tests' simulated accelerator: other outputs
        parts.append("device audit")
    # The packages the notebooks run on (pyproject's dependencies) and the kernel; not the site's own tools.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in [*project["dependencies"], "ipykernel"]:
        name = re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0]
        try:
            parts.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} absent")
    for path in sorted([*(ROOT / "course_utils").rglob("*.py"), *(ROOT / "course_machinery").rglob("*.py")]):
        parts.append(f"{path.relative_to(ROOT)}:{hashlib.sha256(path.read_bytes()).hexdigest()}")
    data = _data_dir()
    parts.append(f"data {data}: {sorted(p.name for p in data.iterdir()) if data.is_dir() else 'absent'}")
    parts.append(f"weights: {_weights_files()}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def cache_dir(mode: str) -> Path:
    """The jupyter-cache folder for ``mode`` in this environment: ``build/cache/<mode>-<fingerprint>``."""
    return CACHE_ROOT / f"{mode}-{fingerprint(mode)}"


def prune(mode: str) -> list[Path]:
    """Delete the caches of ``mode`` made for other environments; return what was deleted."""
    import shutil

    keep = cache_dir(mode)
    stale = [p for p in CACHE_ROOT.glob(f"{mode}-*") if p.is_dir() and p != keep]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def cached(path: Path, cache: Path) -> bool:
    """Whether the jupyter-cache folder ``cache`` holds a run of the notebook's code cells as they are now."""
    from jupyter_cache import get_cache

    try:
        return get_cache(cache).match_cache_notebook(nbformat.read(path, as_version=4)) is not None
    except KeyError:
        return False


def cell_seconds(nb: nbformat.NotebookNode) -> dict[str, float]:
    """Seconds each code cell ran (``{"cell index": seconds}``), from the time stamps nbclient's ``record_timing``
    put in the cells' metadata; the time stamps are removed, so the notebook is cached as it was given."""
    from datetime import datetime

    found = {}
    for index, cell in enumerate(nb.cells):
        stamps = cell.get("metadata", {}).pop("execution", None)
        if cell.cell_type != "code" or not stamps:
            continue
        began, ended = stamps.get("iopub.execute_input"), stamps.get("shell.execute_reply")
        if began and ended:
            took = datetime.fromisoformat(ended.replace("Z", "+00:00")) - datetime.fromisoformat(
                began.replace("Z", "+00:00")
            )
            found[str(index)] = round(took.total_seconds(), 2)
    return found


def run_record(path: Path, cache: Path) -> dict | None:
    """What the cache keeps about the run of the notebook at ``path`` as it is now: ``execution_seconds``,
    ``cell_seconds`` (from runs made by :func:`execute`) and the executed notebook (``nb``); None when not cached."""
    from jupyter_cache import get_cache

    store = get_cache(cache)
    nb = nbformat.read(path, as_version=4)
    try:
        record = store.match_cache_notebook(nb)
    except KeyError:
        return None
    if record is None:
        return None
    # The cache keeps the code cells only; merged into the notebook, its cell indices are the notebook's.
    _, merged = store.merge_match_into_notebook(nb)
    return {**record.data, "nb": merged}


def execute(path: Path, mode: str, cwd: Path) -> tuple[nbformat.NotebookNode, float, bool]:
    """The notebook at ``path`` with outputs: from the cache when its code cells ran before, else run now.

    A run that ends in an error is not cached (no cell may raise: those that show an error print it).

    Args:
        path: The notebook file.
        mode: ``"smoke"`` or ``"full"``; the kernel gets ``COURSE_SMOKE`` to match.
        cwd: Folder the kernel runs in (notebooks may write files there).

    Returns:
        (executed notebook, seconds the run took, whether it came from the cache).

    Raises:
        RuntimeError: A cell raised; the message holds the traceback.
    """
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from jupyter_cache.executors.utils import single_nb_execution

    nb = nbformat.read(path, as_version=4)
    cache = get_cache(cache_dir(mode))
    try:
        record = cache.match_cache_notebook(nb)
    except KeyError:
        record = None
    if record is not None:
        _, merged = cache.merge_match_into_notebook(nb)
        return merged, float(record.data.get("execution_seconds") or 0.0), True
    previous = os.environ.get("COURSE_SMOKE")
    os.environ["COURSE_SMOKE"] = "1" if mode == "smoke" else "0"
    os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")  # this environment's kernel, not a user's
    try:
        start = time.monotonic()
        result = single_nb_execution(
            nb, cwd=str(cwd), timeout=CELL_TIMEOUT, allow_errors=False, record_timing=True
        )
        seconds = time.monotonic() - start
    finally:
        if previous is None:
            os.environ.pop("COURSE_SMOKE", None)
        else:
            os.environ["COURSE_SMOKE"] = previous
    if result.err is not None:
        raise RuntimeError(f"{path.name} failed in {mode} mode:\n{result.exc_string}")
    cells = cell_seconds(
        nb
    )  # also removes nbclient's time stamps: the cache matches cells by their metadata too
    cache.cache_notebook_bundle(
        CacheBundleIn(nb, str(path), data={"execution_seconds": seconds, "cell_seconds": cells}),
        check_validity=False,
        overwrite=True,
    )
    return nb, seconds, False
