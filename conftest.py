"""pytest's set-up for the whole repository: smoke runs get a data folder with a stand-in for each missing dataset.

``python3 course.py test`` runs every notebook in smoke mode (``COURSE_SMOKE=1``). On a machine without the
datasets and without network (a fresh clone, CI's newcomer pass) the notebooks must still run: here, before any
notebook starts, the datasets that are missing get small synthetic stand-ins in a temporary data folder (the
real ones present are linked into it), and ``COURSE_DATA_DIR`` points there for the notebooks' kernels. Each
stand-in carries a ``STAND-IN.txt`` that the course's loaders print in capitals. The loaders know nothing of it.

Smoke runs also start every notebook kernel on a simulated accelerator (``tests/support/device_audit.py``), so
a cell that would mix devices on a GPU runtime fails on this CPU too; and a cell that shows an error on purpose
must print it (``tests/support``, ``shown_error``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))  # the test-only helpers: `support`

# Tests that `python3 course.py test` leaves to `--all` and CI: they build or drive whole tools (minutes each).
EXTENDED = {
    "test_browser.py",
    "test_site.py",
    "test_student_edition.py",
    "test_grading.py",
    "test_benchmarks.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in EXTENDED or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.extended)


def pytest_configure(config: pytest.Config) -> None:
    from course_utils._setup import data_dir, smoke_mode
    from course_utils.data import dataset_status

    if smoke_mode() and os.environ.get("COURSE_DEVICE_AUDIT", "1") != "0":
        # Every notebook kernel runs on a simulated accelerator, so a cell that would mix the GPU and the CPU on
        # a GPU runtime (Colab's) fails here too (tests/support/device_audit.py; COURSE_DEVICE_AUDIT=0: off).
        from support import device_audit

        profile = Path(tempfile.mkdtemp(prefix="course-ipython-"))
        os.environ.update(device_audit.kernel_startup(profile))
        config.add_cleanup(lambda: shutil.rmtree(profile, ignore_errors=True))
    if not smoke_mode() or all(dataset_status().values()):
        return
    from course_machinery.standins import write_standins

    folder = Path(tempfile.mkdtemp(prefix="course-data-"))
    made = write_standins(data_dir(), folder)
    os.environ["COURSE_REAL_DATA_DIR"] = str(data_dir())  # for the unit tests, which choose their own data
    os.environ["COURSE_DATA_DIR"] = str(folder)
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    print(f"\n!!! SMOKE MODE: SYNTHETIC stand-ins for {', '.join(made)} (missing here) in {folder} !!!")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """After nbval runs a cell tagged ``shows-error``, require the error line the cell prints (see tests/support)."""
    result = yield
    cell = getattr(item, "cell", None)  # nbval's notebook cell items; None for other tests
    if cell is not None:
        from support import missing_error_line

        text = "".join(o.get("text", "") for o in item.test_outputs or [] if o.get("output_type") == "stream")
        if problem := missing_error_line(cell, text):
            raise AssertionError(f"{item.name}: {problem}")
    return result
