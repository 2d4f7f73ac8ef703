"""Helpers for the exercise tests: a check must accept the solution and refuse placeholders and cheating attempts,
both as the learner sees it (one ✅/❌ line, a Verdict) and as nbgrader grades it (``grade`` raises or not)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from course_machinery.checks._feedback import Verdict, grade
from course_machinery.lessons import NOTEBOOKS

SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION[ \t]*$", re.M | re.S)


def answer_source(grade_id: str, *, student: bool = False) -> str:
    """The answer cell ``grade_id`` (``"06-e1-answer"``) of its lesson's notebook: as stored (the teacher's), or
    as nbgrader's student edition hands it out (the solution region replaced by ``# YOUR CODE HERE`` and ``...``)."""
    (path,) = NOTEBOOKS.glob(f"{grade_id[:2]}_*.ipynb")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    (source,) = [
        "".join(c["source"]) for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id
    ]
    if student:
        source = SOLUTION.sub(lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}...", source)
        assert "BEGIN SOLUTION" not in source
    return source


def _visible(check: Callable[..., Verdict], *args: Any, **kwargs: Any) -> tuple[bool, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        verdict = check(*args, **kwargs)
    assert isinstance(verdict, Verdict), f"{check.__name__} returned {verdict!r}, not a Verdict"
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1, f"{check.__name__} printed {len(lines)} lines, not one: {lines}"
    return bool(verdict), lines[0]


def accepted(check: Callable[..., Verdict], *args: Any, **kwargs: Any) -> str:
    """Assert that the visible check and the hidden (graded) one both pass; return the visible line."""
    ok, line = _visible(check, *args, **kwargs)
    assert ok and line.startswith("✅"), line
    grade(check, *args, **kwargs)  # raises AssertionError if the hidden inputs find a fault
    return line


def rejected(check: Callable[..., Verdict], *args: Any, **kwargs: Any) -> str:
    """Assert that the visible check says ❌ (without raising) and that grading scores it 0; return the line."""
    ok, line = _visible(check, *args, **kwargs)
    assert not ok and line.startswith("❌"), line
    with pytest.raises(AssertionError):
        grade(check, *args, **kwargs)
    return line


def in_ipython(*cells: str) -> str:
    """Run ``cells`` one after another in a fresh IPython shell (with its input history, as in Jupyter); return
    what the last one printed. For checks that read how an answer was typed (``typed_as_literal``)."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = (
        ":memory:"  # the input history lives in the shell, never in a shared file
    )
    shell = InteractiveShell.instance(config=config)
    shell.reset(new_session=True)
    buffer = io.StringIO()
    for i, cell in enumerate(cells):
        if i == len(cells) - 1:
            with contextlib.redirect_stdout(buffer):
                result = shell.run_cell(cell, store_history=True)
        else:
            result = shell.run_cell(cell, store_history=True)
        if result.error_in_exec is not None:
            raise result.error_in_exec
    return buffer.getvalue()
