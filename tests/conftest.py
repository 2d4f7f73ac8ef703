"""Shared fixtures: a fast synthetic dataset, smoke mode off by default, and the real-data location."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # tests draw figures without a screen

from course_utils import config  # noqa: E402
from course_utils.synthetic import rendered_digits  # noqa: E402
from course_utils.tensorloader import TensorLoader  # noqa: E402

REAL_DATA = config.data_dir()


def has_real(name: str) -> bool:
    """Whether COURSE_DATA_DIR holds the real dataset ``name`` (torchvision's layout)."""
    from course_utils.data import dataset_status

    return dataset_status(REAL_DATA).get(name, False)


@pytest.fixture(autouse=True)
def _no_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests run in normal mode; the test command sets COURSE_SMOKE=1 for the notebooks only."""
    monkeypatch.setattr(config, "SMOKE", False)


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
