"""Helpers used only by the tests (never shipped to learners): where the real datasets are, and whether."""

from __future__ import annotations

import os
from pathlib import Path

from course_utils._setup import data_dir

# The data folder the run was started with. The root conftest.py may point COURSE_DATA_DIR at stand-ins for the
# notebooks of a smoke run; unit tests use the real data where present.
REAL_DATA = Path(os.environ.get("COURSE_REAL_DATA_DIR") or data_dir())


def has_real(name: str) -> bool:
    """Whether the real dataset ``name`` ("MNIST", "FashionMNIST", "hymenoptera") is in the data folder."""
    from course_utils.data import dataset_status

    return dataset_status(REAL_DATA).get(name, False)
