"""Helpers used only by the tests (never shipped to learners): where the real datasets are, and the cells that
show an error on purpose."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from course_utils._setup import data_dir

# The data folder the run was started with. The root conftest.py may point COURSE_DATA_DIR at stand-ins for the
# notebooks of a smoke run; unit tests use the real data where present.
REAL_DATA = Path(os.environ.get("COURSE_REAL_DATA_DIR") or data_dir())


def has_real(name: str) -> bool:
    """Whether the real dataset ``name`` ("MNIST", "FashionMNIST", "hymenoptera") is in the data folder."""
    from course_utils.data import dataset_status

    return dataset_status(REAL_DATA).get(name, False)


# A cell that shows an error on purpose catches it and prints it (no front end's `raises-exception` tag: Colab and
# VS Code stop "Run all" at the first error whatever the tags say). Such a cell is tagged `shows-error` and says, in
# its metadata (`course.error_says`), a piece of the message it must print; a run's output must hold that line, so a
# demonstration that stops failing, or fails for another reason (a device mix-up inside the same `try`), is noticed.
SHOWS_ERROR = "shows-error"
_CAUGHT = re.compile(r"^except (\w+) as error:", re.MULTILINE)


def shown_error(cell: Mapping[str, Any]) -> str | None:
    """The name of the error a ``shows-error`` cell catches and prints (None for any other cell).

    Raises:
        ValueError: The cell is tagged but does not catch one named error in the course's way, or does not say
            what the message must contain.
    """
    if SHOWS_ERROR not in cell.get("metadata", {}).get("tags", []):
        return None
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    names = _CAUGHT.findall(source)
    if len(names) != 1 or f'print(f"{names[0]}: {{error}}")' not in source:
        raise ValueError(f"a {SHOWS_ERROR} cell must catch one named error and print it, got:\n{source}")
    if not error_says(cell):
        raise ValueError(
            f"a {SHOWS_ERROR} cell must say in metadata course.error_says what it prints:\n{source}"
        )
    return names[0]


def error_says(cell: Mapping[str, Any]) -> str:
    """The piece of the message a ``shows-error`` cell must print ("" if it says none)."""
    return cell.get("metadata", {}).get("course", {}).get("error_says", "")


def missing_error_line(cell: Mapping[str, Any], text: str) -> str | None:
    """Why ``text`` (a run's output of ``cell``) lacks the error the cell shows; None if it is there or not due."""
    name = shown_error(cell)
    if name is None or re.search(rf"^{name}: .*{re.escape(error_says(cell))}", text, re.MULTILINE):
        return None
    return (
        f"the cell should print the {name} it demonstrates, with {error_says(cell)!r}, but printed:\n"
        f"{text[-500:] or '(nothing)'}"
    )
