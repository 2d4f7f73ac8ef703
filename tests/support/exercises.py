"""Helpers for the exercise tests: a check must accept the solution and refuse placeholders and cheating attempts,
both as the learner sees it (one ✅/❌ line, a Verdict) and as nbgrader grades it (``grade`` raises or not)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import pytest

from course_machinery.checks._feedback import Verdict, grade


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
