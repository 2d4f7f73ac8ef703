"""Shared fixtures: a fast synthetic dataset, normal mode for unit tests, and the real-data location."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # tests draw figures without a screen

from support import REAL_DATA  # noqa: E402

from course_machinery.standins import rendered_digits  # noqa: E402
from course_utils.data import TensorLoader  # noqa: E402


@pytest.fixture(autouse=True)
def _no_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests run in normal mode on the real data folder; the test command's smoke mode is for notebooks."""
    monkeypatch.delenv("COURSE_SMOKE", raising=False)
    monkeypatch.setenv("COURSE_DATA_DIR", str(REAL_DATA))


@pytest.fixture
def digits() -> tuple[TensorLoader, TensorLoader]:
    """Small synthetic digit loaders (train, test): a few hundred 28x28 images, learnable in seconds."""
    x_train, y_train = rendered_digits(768, seed=0)
    x_test, y_test = rendered_digits(256, seed=1)
    mean, std = (0.1,), (0.25,)
    return (
        TensorLoader(x_train, y_train, batch_size=64, shuffle=True, mean=mean, std=std, seed=0),
        TensorLoader(x_test, y_test, batch_size=128, mean=mean, std=std),
    )


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every download fails at once, as on a machine without network."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def tmp_data(tmp_path: Path) -> Path:
    """An empty data folder."""
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture(autouse=True)
def _threads() -> None:
    # Keep per-test thread use predictable on small CI machines.
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every figure a test drew, so figures do not pile up across tests."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
